//! The command line: serving, and the tools beside it (check-config, render, oncall, test-sms,
//! healthcheck, completion, man). Each subcommand lives in a file of its own; this one defines the
//! flags, which `--help`, the completions and the man pages all come from.

mod check_config;
mod completion;
pub mod healthcheck;
mod oncall;
mod render;
mod serve;
pub mod test_sms;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError};
use crate::text::sms::MAX_SEGMENTS_CAP;
use crate::version;

/// What `--help` says about the environment. Values are never shown: they are secrets.
const ENVIRONMENT: &str = "\
Environment:
  SIPGATE_TOKEN_ID  Sipgate token id; overrides sipgate.token_id in the config file
  SIPGATE_TOKEN     Sipgate personal access token; overrides sipgate.token and sipgate.token_file
  SIPGATE_API_URL   Sipgate API base URL (a fake or a proxy); overrides sipgate.api_url

Without a Sipgate token the service runs in dry-run mode: every SMS is logged, none is sent.";

/// Receives Prometheus Alertmanager webhooks and sends them as SMS through the Sipgate REST API.
#[derive(Parser)]
#[command(
    version = version::LONG_VERSION,
    about,
    long_about = None,
    after_help = ENVIRONMENT,
    // Each subcommand takes its own flags, so that `--help` of each lists only what it uses.
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    config: ConfigFile,

    /// Address to listen on for webhooks, metrics and health checks.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = ":9716"
    )]
    listen_address: String,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    log_format: LogFormat,

    /// Render and log every SMS instead of sending it.
    #[arg(long = "dry-run")]
    dry_run: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the Debian package and the systemd unit keep the config: a packaged binary runs
/// without flags.
const DEFAULT_CONFIG_FILE: &str = "/etc/alertmanager-sipgate/config.yml";

#[derive(Args)]
struct ConfigFile {
    /// Configuration file.
    #[arg(long = "config.file", value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
    path: PathBuf,
}

/// The instant a dry tool looks at.
#[derive(Args)]
struct At {
    /// The time to look at instead of now (RFC 3339, e.g. 2026-12-06T03:00:00+01:00): who is
    /// on call then, which routes are muted, who is in quiet hours.
    #[arg(long = "at", value_name = "TIME", value_parser = parse_at)]
    at: Option<DateTime<FixedOffset>>,
}

impl At {
    fn or_now(&self) -> DateTime<Utc> {
        self.at.map_or_else(Utc::now, |at| at.with_timezone(&Utc))
    }
}

/// Keeps the offset it was given, so that output echoes the time as the user wrote it.
fn parse_at(text: &str) -> Result<DateTime<FixedOffset>, String> {
    crate::oncall::parse_at(text)
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration file and its templates, then exit.
    #[command(after_help = ENVIRONMENT)]
    CheckConfig {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        at: At,
    },
    /// Print the SMS that an Alertmanager webhook body would produce, without sending anything.
    #[command(after_help = ENVIRONMENT)]
    Render {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        at: At,
        /// A webhook body as Alertmanager posts it (JSON); `-` reads it from standard input.
        payload: PathBuf,
    },
    /// Print who is on call in each schedule, until when, and the next handoffs.
    Oncall {
        #[command(flatten)]
        config: ConfigFile,
        #[command(flatten)]
        at: At,
        /// How many handoffs to list after the current shift (at most 100).
        #[arg(long, value_name = "N", default_value_t = 3,
              value_parser = clap::value_parser!(u16).range(0..=100))]
        next: u16,
    },
    /// Exit 0 when the service answers 200 at URL (for container health checks without curl).
    Healthcheck {
        /// What to ask.
        #[arg(long, default_value = "http://127.0.0.1:9716/-/healthy")]
        url: String,
    },
    /// Send one SMS now to check that Sipgate delivers it.
    ///
    /// --to names a recipient, a group (each member gets it) or a schedule (whoever is on call
    /// now). The SMS goes out once, without retries, through the configured Sipgate account,
    /// and what Sipgate answered is printed with what to do about it. Without Sipgate
    /// credentials, or with --dry-run, the SMS is only printed.
    ///
    /// It does not open the state store, so it runs beside the service (which may hold the
    /// state file's lock), and it is not counted against the rate limits; quiet hours and time
    /// intervals do not hold it back. Exit code: 0 sent (or printed), 1 not sent, 2 a wrong
    /// --to or --text.
    #[command(after_help = ENVIRONMENT)]
    TestSms(TestSms),
    /// Print a completion script for a shell, e.g. `completion bash`.
    ///
    /// The Debian package installs them for bash, zsh and fish. By hand, e.g.:
    /// alertmanager-sipgate completion bash > /etc/bash_completion.d/alertmanager-sipgate
    Completion {
        /// The shell that completes the command.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); with --out-dir, write one page per subcommand as well.
    #[command(hide = true)]
    Man {
        /// Where to write alertmanager-sipgate.1 and alertmanager-sipgate-SUBCOMMAND.1.
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct TestSms {
    #[command(flatten)]
    config: ConfigFile,
    /// Who gets it: a name from the config's recipients, groups or schedules.
    #[arg(long, value_name = "NAME")]
    to: String,
    /// The text, instead of one that says it is a test from this host.
    #[arg(long, value_name = "TEXT")]
    text: Option<String>,
    /// The most billed SMS parts the text may take, as a route's max_segments.
    #[arg(long = "max-segments", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=MAX_SEGMENTS_CAP as i64))]
    max_segments: u16,
    /// Print the SMS instead of sending it.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

/// Runs what the command line asks for; the exit code says how it went.
pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Some(Command::CheckConfig { config, at }) => check_config::check_config(&config.path, at),
        Some(Command::Render {
            config,
            at,
            payload,
        }) => render::render(&config.path, at, payload),
        Some(Command::Oncall { config, at, next }) => {
            oncall::oncall(&config.path, at.or_now(), usize::from(*next))
        }
        Some(Command::Healthcheck { url }) => {
            healthcheck::check(url, Duration::from_secs(3)).map_err(Into::into)
        }
        Some(Command::TestSms(args)) => return test_sms::run(args),
        Some(Command::Completion { shell }) => completion::completion(*shell),
        Some(Command::Man { out_dir }) => completion::man_pages(out_dir.as_deref()),
        None => {
            serve::init_logging(cli.log_level, cli.log_format);
            // The service reports through its log, once; a config it cannot start on is
            // listed one problem a line.
            return match serve::serve(&cli) {
                Ok(code) => code,
                Err(e) => {
                    match e.downcast_ref::<ConfigError>() {
                        Some(config) => serve::refuse_config(config, cli.log_format),
                        None => tracing::error!(error = format!("{e:#}"), "cannot serve"),
                    }
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config; when the default file is missing, says that it is the default and how to
/// name another.
fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| {
        let missing = matches!(&e, ConfigError::Read { cause, .. }
            if cause.kind() == std::io::ErrorKind::NotFound);
        if missing && path == Path::new(DEFAULT_CONFIG_FILE) {
            anyhow::anyhow!("{e}; it is the default: pass --config.file=FILE for another")
        } else {
            e.into()
        }
    })
}

/// A value of `subcommand`'s flags that cannot be used: clap's usage error, exit code 2.
fn usage_error(subcommand: &str, message: impl std::fmt::Display) -> ! {
    let mut command = Cli::command();
    command.build();
    let mut command = command
        .find_subcommand(subcommand)
        .cloned()
        .unwrap_or(command);
    command
        .error(clap::error::ErrorKind::InvalidValue, message)
        .exit()
}
