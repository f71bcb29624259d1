//! The service's binary, as `cargo test` builds it, run as operators run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::app::{
    get_authorized, get_text, post_alerts, post_alerts_authorized, post_like_alertmanager,
    post_reload,
};
use super::config::write_config;
use super::programs::{ChildGuard, free_port};
use super::wait::wait_until_ok;

/// The service's binary (as `cargo test` builds it), run as operators run it, on loopback,
/// logging to a file.
pub struct Service {
    pub child: ChildGuard,
    pub url: String,
    pub config: PathBuf,
    pub log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Service {
    /// Writes `yaml` to a config file of its own and runs the service on it.
    pub async fn start(yaml: &str) -> Service {
        Service::start_with_flags(yaml, &[]).await
    }

    /// As `start`, with these extra flags (e.g. `--log.format=json`).
    pub async fn start_with_flags(yaml: &str, args: &[&str]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), yaml);
        let mut service = Service::start_with(&config, args, &[]).await;
        service._dir = Some(dir);
        service
    }

    /// As `start`, for a config that names the service's own address (`web.external_url`, so
    /// that the links in its SMS lead back to it): `yaml` gets that URL.
    pub async fn start_at_its_url(yaml: impl FnOnce(&str) -> String) -> Service {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &yaml(&format!("http://127.0.0.1:{port}")));
        let mut service = Service::start_at("127.0.0.1", port, &config, &[], &[]).await;
        service._dir = Some(dir);
        service
    }

    /// Stops it as a service manager does (SIGTERM); how it exited.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        self.child.terminate();
        self.child.wait_for_exit(Duration::from_secs(15)).await
    }

    /// As `stop`, and returns everything it logged.
    pub async fn stop_and_read_log(&mut self) -> String {
        self.stop().await;
        self.log()
    }

    /// Runs the service on a config file that stays where it is, with these extra flags and
    /// environment variables (the Sipgate token variables are otherwise removed).
    pub async fn start_with(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        Service::start_on("127.0.0.1", config, args, env).await
    }

    /// As `start_with`, listening on `host` (e.g. `0.0.0.0`); tests still call it on loopback.
    pub async fn start_on(
        host: &str,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        Service::start_at(host, free_port(), config, args, env).await
    }

    /// As `start_on`, on a `port` chosen before (for peers configured before it starts).
    pub async fn start_at(
        host: &str,
        port: u16,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        let log = config.with_extension("log");
        let child = ChildGuard::spawn(&mut Service::command(host, port, config, args, env, &log));
        let url = format!("http://127.0.0.1:{port}");
        wait_until_ok(
            &format!("{url}/-/healthy"),
            Duration::from_secs(10),
            "the service",
        )
        .await;
        Service {
            child,
            url,
            config: config.to_path_buf(),
            log,
            _dir: None,
        }
    }

    /// Runs the service on `config`, which it must refuse: how it exited, and what it wrote to
    /// standard error (in a log file of its own, beside that of a service running on `config`).
    pub async fn refusing(config: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
        let log = config.with_extension("refused.log");
        let mut child = ChildGuard::spawn(&mut Service::command(
            "127.0.0.1",
            free_port(),
            config,
            args,
            &[],
            &log,
        ));
        let status = child.wait_for_exit(Duration::from_secs(10)).await;
        (status, std::fs::read_to_string(&log).unwrap())
    }

    /// The binary with these flags and environment variables (the Sipgate variables are
    /// otherwise removed), its standard error to `log`.
    fn command(
        host: &str,
        port: u16,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Command {
        let mut command = service_binary();
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={host}:{port}"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        command
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    pub async fn post_alerts(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        post_alerts(&reqwest::Client::new(), &self.url, body).await
    }

    /// Posts like Alertmanager does (`post_like_alertmanager`); the status of each attempt.
    pub async fn post_like_alertmanager(&self, body: &[u8], tries: usize) -> Vec<u16> {
        post_like_alertmanager(&reqwest::Client::new(), &self.url, body, tries).await
    }

    /// Posts a notification with the credentials of `TestConfig::with_basic_auth`.
    pub async fn post_alerts_authorized(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        post_alerts_authorized(&reqwest::Client::new(), &self.url, body).await
    }

    /// `GET path`: its status and text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        get_text(&reqwest::Client::new(), &self.url, path).await
    }

    /// Asks it to reload its config (`POST /-/reload`): its status and answer.
    pub async fn reload(&self) -> (u16, String) {
        post_reload(&reqwest::Client::new(), &self.url).await
    }

    /// `GET path` with the credentials of `TestConfig::with_basic_auth`: its status and text.
    pub async fn get_authorized(&self, path: &str) -> (u16, String) {
        get_authorized(&reqwest::Client::new(), &self.url, path).await
    }
}

/// The service's binary as `cargo test` builds it, without the Sipgate variables of the
/// environment the tests run in: they would override the config under test.
pub fn service_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alertmanager-sipgate"));
    command
        .env_remove("SIPGATE_TOKEN")
        .env_remove("SIPGATE_TOKEN_ID")
        .env_remove("SIPGATE_API_URL");
    command
}
