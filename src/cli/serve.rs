//! `alertmanager-sipgate` without a subcommand: the service itself, from the start's checks and
//! log line to the graceful stop on SIGTERM and the reload on SIGHUP.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use super::{Cli, LogFormat, LogLevel, load_config};
use crate::app::AppState;
use crate::clock::SystemClock;
use crate::config::ConfigError;
use crate::live::Live;
use crate::reload;
use crate::startup::{Options, Service};
use crate::text::plural::counted;
use crate::version;

/// Logs to standard error, at `level` for this crate and at warn for its dependencies.
pub(super) fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    // Our own level applies to this crate; dependencies only speak up when something is wrong.
    // The Redis client is silent: the state store logs an outage once, with the client's reason,
    // where the client would log every failed try of every node, with its address.
    let filter = EnvFilter::new(format!("warn,redis=off,alertmanager_sipgate={level}"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .with_span_name(false)
                    .with_span_path(false)
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

/// Where SMS go, for the start's log line: `dry-run`, or the API URL (which `SIPGATE_API_URL` may
/// have replaced; the config refuses one that carries credentials).
fn sends_to(live: &Live) -> &str {
    if live.is_dry_run() {
        "dry-run"
    } else {
        &live.config.sipgate.api_url
    }
}

/// Whether callers on other machines could post without credentials.
fn open_to_anyone(live: &Live, address: SocketAddr) -> bool {
    live.config.server.auth.is_none() && !address.ip().is_loopback()
}

/// Accepts Prometheus-style `:9716` (all interfaces) as well as `host:port`.
fn listen_address(text: &str) -> anyhow::Result<SocketAddr> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.to_socket_addrs()
        .with_context(|| format!("invalid --web.listen-address {text:?}"))?
        .next()
        .with_context(|| format!("--web.listen-address {text:?} resolves to no address"))
}

/// A config the service cannot start on, one problem a line: in logfmt, listed on standard error
/// as `check-config` lists them, with one log line that says so; in JSON, every line JSON, one
/// for each problem, so that a log shipper gets them all.
pub(super) fn refuse_config(error: &ConfigError, format: LogFormat) {
    let summary = match error {
        ConfigError::Invalid { problems, .. } => format!(
            "cannot start: {} in the config file",
            counted(problems.len(), "problem", "problems")
        ),
        ConfigError::Read { .. } => "cannot start: the config file cannot be read".to_string(),
    };
    match format {
        LogFormat::Logfmt => {
            eprintln!("error: {error}");
            let (ConfigError::Invalid { path, .. } | ConfigError::Read { path, .. }) = error;
            tracing::error!(config = %path.display(), "{summary}");
        }
        LogFormat::Json => error.log(&summary),
    }
}

/// Serves until a signal; fails (exit 1) also when the state could not be saved at the stop.
pub(super) fn serve(cli: &Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(&cli.config.path)?;
    // The longest a send can take once started: retries inside the deadline, then one request.
    let grace = config.delivery.response_deadline + config.sipgate.timeout;
    let sends = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sipgate-sender")
        .enable_all()
        .build()
        .context("cannot start the sender runtime")?;
    let service = Service::build(
        config,
        Options {
            force_dry_run: cli.dry_run,
            clock: Arc::new(SystemClock),
            runtime: sends.handle().clone(),
        },
    )?;
    let live = service.state.current();
    if live.is_dry_run() {
        let why = if cli.dry_run {
            "--dry-run is set"
        } else {
            "the config has no Sipgate credentials"
        };
        tracing::warn!(
            reason = why,
            "DRY-RUN MODE: no SMS will be sent; every SMS is only logged"
        );
    }
    let address = listen_address(&cli.listen_address)?;
    if open_to_anyone(&live, address) {
        tracing::warn!(
            address = %address,
            "inbound authentication is off: anyone who can reach this address can make the \
             service send SMS; set server.auth in the config (basic or bearer, as \
             Alertmanager's http_config sends it)"
        );
    }
    let listener =
        TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(
        address = %address,
        config = %cli.config.path.display(),
        version = version::VERSION,
        revision = version::REVISION,
        state = service.store.name(),
        sipgate = %sends_to(&live),
        "listening"
    );
    drop(live);
    service.run_in_background();
    let served =
        actix_web::rt::System::new().block_on(serve_until_signal(&service, listener, grace));
    // After the sends in flight settled: what the file store has not written yet goes out now.
    let saved = sends.block_on(service.store.close());
    if let Err(e) = &saved {
        tracing::error!(
            error = %e,
            "the state was not saved at shutdown: the next start forgets what changed since the \
             last write (SMS sent, rate limits), and may send those SMS again"
        );
    }
    served?;
    sends.shutdown_timeout(Duration::from_secs(1));
    Ok(if saved.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Serves until SIGTERM or SIGINT, then lets the requests and the SMS sends in flight finish
/// within `grace`.
async fn serve_until_signal(
    service: &Service,
    listener: TcpListener,
    grace: Duration,
) -> anyhow::Result<()> {
    let state = &service.state;
    let server = service.http_server(listener, grace)?;
    let handle = server.handle();
    // One deadline for the whole shutdown, counted from the signal: HTTP requests in flight
    // and the SMS sends behind them share it.
    let (stopping, mut stop_requested) = tokio::sync::oneshot::channel::<Instant>();
    actix_web::rt::spawn(reload_on_sighup(state.clone()));
    actix_web::rt::spawn(async move {
        let signal = shutdown_signal().await;
        let _ = stopping.send(Instant::now() + grace);
        tracing::info!(
            signal,
            "shutting down: no new requests; finishing those in flight"
        );
        handle.stop(true).await;
    });
    let served = server.await;
    let until = stop_requested
        .try_recv()
        .unwrap_or_else(|_| Instant::now() + grace);
    if state.deliverer.shutdown(until.into()).await {
        tracing::info!("all SMS in flight finished; bye");
    } else {
        tracing::error!(
            grace_s = grace.as_secs(),
            "SMS still in flight after the grace period; their outcome is unknown"
        );
    }
    served.context("HTTP server failed")
}

/// SIGHUP reloads config and templates, as in Prometheus and Alertmanager.
async fn reload_on_sighup(state: Arc<AppState>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; use POST /-/reload");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading config");
        // Failures are logged and counted by the reload itself.
        let _ = reload::reload_and_check(&state);
    }
}

/// SIGTERM (service managers, Kubernetes) and SIGINT (Ctrl-C) both stop the service gracefully.
async fn shutdown_signal() -> &'static str {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
