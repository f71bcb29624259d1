#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use alertmanager_sipgate::app::{AppState, Live};
use alertmanager_sipgate::clock::SystemClock;
use alertmanager_sipgate::config::{Config, ConfigError};
use alertmanager_sipgate::delivery::Deliverer;
use alertmanager_sipgate::http;
use alertmanager_sipgate::ingest;
use alertmanager_sipgate::metrics::Metrics;
use alertmanager_sipgate::model::outcome::SuppressReason;
use alertmanager_sipgate::oncall::ShowYear;
use alertmanager_sipgate::oncall::shifts;
use alertmanager_sipgate::provider::{self, SendError};
use alertmanager_sipgate::state;
use alertmanager_sipgate::test_sms::{self, Person, Sent};
use alertmanager_sipgate::text::compose;
use alertmanager_sipgate::text::plural::counted;
use alertmanager_sipgate::text::sms::MAX_SEGMENTS_CAP;
use alertmanager_sipgate::version;
use alertmanager_sipgate::{health, probe, watchdog};
use chrono::{DateTime, FixedOffset, Utc};

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
struct Cli {
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
    alertmanager_sipgate::oncall::parse_at(text)
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

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    // Our own level applies to this crate; dependencies only speak up when something is wrong.
    let filter = EnvFilter::new(format!("warn,alertmanager_sipgate={level}"));
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::CheckConfig { config, at }) => check_config(&config.path, at),
        Some(Command::Render {
            config,
            at,
            payload,
        }) => render(&config.path, at, payload),
        Some(Command::Oncall { config, at, next }) => {
            oncall(&config.path, at.or_now(), usize::from(*next))
        }
        Some(Command::Healthcheck { url }) => {
            probe::check(url, Duration::from_secs(3)).map_err(Into::into)
        }
        Some(Command::TestSms(args)) => return send_test_sms(args),
        Some(Command::Completion { shell }) => completion(*shell),
        Some(Command::Man { out_dir }) => man_pages(out_dir.as_deref()),
        None => {
            init_logging(cli.log_level, cli.log_format);
            // The service reports through its log, once; a config it cannot start on is
            // listed one problem a line.
            return match serve(&cli) {
                Ok(code) => code,
                Err(e) => {
                    match e.downcast_ref::<ConfigError>() {
                        Some(config) => refuse_config(config, cli.log_format),
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

/// A config the service cannot start on, one problem a line: in logfmt, listed on standard error
/// as `check-config` lists them, with one log line that says so; in JSON, every line JSON, one
/// for each problem, so that a log shipper gets them all.
fn refuse_config(error: &ConfigError, format: LogFormat) {
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

fn check_config(path: &Path, at: &At) -> anyhow::Result<()> {
    let config = load_config(path)?;
    println!(
        "{}: OK ({}, {}, schedules: {}, templates: {}, state: {})",
        path.display(),
        counted(config.recipients.len(), "recipient", "recipients"),
        counted(config.routes.len(), "route", "routes"),
        if config.schedules.is_empty() {
            "none".to_string()
        } else {
            config
                .schedules
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        },
        config.templates.names().join(", "),
        config.state.backend()
    );
    if config.dry_run() {
        println!("no Sipgate credentials: the service would run in dry-run mode and send nothing");
    }
    if let Some(given) = at.at {
        println!("at {}:", given.to_rfc3339());
        let when = given.with_timezone(&Utc);
        for route in &config.routes {
            let state = if config.muted_at(route, when) {
                "muted".to_string()
            } else {
                let quiet: Vec<&str> = config
                    .recipients_at(route, when)
                    .into_iter()
                    .filter(|r| !route.ignore_quiet_hours && config.in_quiet_hours(r, when))
                    .collect();
                let texts = config.recipients_at(route, when).join(", ");
                if quiet.is_empty() {
                    format!("texts {texts}")
                } else {
                    format!("texts {texts} (in quiet hours: {})", quiet.join(", "))
                }
            };
            println!("  route {}: {state}", route.name);
        }
    }
    Ok(())
}

/// Who is on call in each schedule at `at`, and the next `next` handoffs, in the schedule's zone.
fn oncall(path: &Path, at: DateTime<Utc>, next: usize) -> anyhow::Result<()> {
    let config = load_config(path)?;
    if config.schedules.is_empty() {
        println!("{}: no schedules", path.display());
    }
    let year = ShowYear::OutsideYearOf(at);
    for schedule in config.schedules.values() {
        let view = schedule.view(at, next);
        println!("{} ({})", view.schedule, view.time_zone);
        println!(
            "  on call: {:<12} since {}  until {}",
            view.on_call,
            schedule.local(Some(view.since), year),
            schedule.local(view.until, year)
        );
        for handoff in &view.next {
            println!(
                "  then:    {:<12} from  {}  until {}",
                handoff.who,
                schedule.local(Some(handoff.at), year),
                schedule.local(handoff.until, year)
            );
        }
    }
    Ok(())
}

fn render(config_path: &Path, at: &At, payload_path: &Path) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let body = if payload_path == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("cannot read the payload from standard input")?;
        body
    } else {
        std::fs::read(payload_path)
            .with_context(|| format!("cannot read {}", payload_path.display()))?
    };
    let notification = ingest::parse_alertmanager(&body)
        .with_context(|| format!("in {}", payload_path.display()))?;
    let plan = compose::plan(&config, &notification, at.or_now());
    for sms in &plan.messages {
        println!(
            "route: {}  recipient: {}  encoding: {}  characters: {}  segments: {}",
            sms.route, sms.recipient, sms.size.encoding, sms.size.chars, sms.size.segments
        );
        if sms.quiet {
            println!("held back: the recipient's quiet hours; counted for their next SMS");
        }
        println!("{}\n", sms.text);
    }
    for held in &plan.held {
        let why = match held.reason {
            SuppressReason::Muted => "the route is muted at this time (time intervals)",
            SuppressReason::SendResolved => "route does not send resolved alerts",
            other => other.as_str(),
        };
        println!(
            "route: {}  recipient: {}  held back: {why}\n",
            held.route, held.recipient
        );
    }
    if plan.unrouted > 0 {
        println!(
            "{} would not be sent: no route matches",
            counted(plan.unrouted, "alert", "alerts")
        );
    }
    if plan.messages.is_empty() && plan.held.is_empty() && plan.unrouted == 0 {
        println!("no SMS: the notification has no alerts");
    }
    Ok(())
}

/// Serves until a signal; fails (exit 1) also when the state could not be saved at the stop.
fn serve(cli: &Cli) -> anyhow::Result<ExitCode> {
    let metrics = Metrics::new()?;
    let config = load_config(&cli.config.path)?;
    metrics.config_loaded(true);
    // The longest a send can take once started: retries inside the deadline, then one request.
    let grace = config.delivery.response_deadline + config.sipgate.timeout;
    // Sends run on their own runtime, which outlives the HTTP workers, so that a graceful
    // shutdown can let every SMS in flight finish.
    let sends = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sipgate-sender")
        .enable_all()
        .build()
        .context("cannot start the sender runtime")?;
    let store = {
        let _on_the_sender_runtime = sends.enter();
        state::open(
            &config.state,
            Arc::new(SystemClock),
            sends.handle(),
            metrics.clone(),
        )?
    };
    let deliverer = Deliverer::new(
        store.clone(),
        config.delivery.max_concurrency,
        config.delivery.max_pending,
        sends.handle().clone(),
        metrics.clone(),
    );
    let live = Live::new(config, cli.dry_run)?;
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
        state = store.name(),
        sipgate = %sends_to(&live),
        "listening"
    );
    let state = Arc::new(AppState::new(
        live,
        deliverer,
        metrics,
        cli.dry_run,
        Arc::new(SystemClock),
    ));
    sends.spawn(health::watch_credentials(state.clone(), state.current()));
    sends.spawn(health::watch_state(store.clone()));
    sends.spawn(shifts::follow(state.clone()));
    sends.spawn(watchdog::follow(state.clone()));
    let served = actix_web::rt::System::new().block_on(serve_until_signal(state, listener, grace));
    // After the sends in flight settled: what the file store has not written yet goes out now.
    let saved = sends.block_on(store.close());
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
    state: Arc<AppState>,
    listener: TcpListener,
    grace: Duration,
) -> anyhow::Result<()> {
    let server = http::build(state.clone(), listener, grace)?;
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
        let _ = health::reload_and_check(&state);
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

/// `test-sms`: exit 0 when every SMS was sent (or, in dry-run, printed), 1 when one was not or
/// the config cannot be used, 2 for a `--to` or `--text` that cannot be sent.
fn send_test_sms(args: &TestSms) -> ExitCode {
    match test_sms_outcome(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether every SMS went out (or was only printed, in dry-run).
fn test_sms_outcome(args: &TestSms) -> anyhow::Result<bool> {
    let config = load_config(&args.config.path)?;
    let text = match &args.text {
        Some(text) => text.clone(),
        None => test_sms::default_text(test_sms::host_name().as_deref()),
    };
    let to = test_sms::addressees(&config, &args.to, Utc::now())
        .unwrap_or_else(|e| usage_error("test-sms", e));
    let (text, size) = test_sms::checked_text(&text, usize::from(args.max_segments))
        .unwrap_or_else(|e| usage_error("test-sms", e));
    let provider = provider::from_config(&config.sipgate, args.dry_run)?;
    println!("to: {to}");
    println!(
        "encoding: {}  characters: {}  segments: {}",
        size.encoding, size.chars, size.segments
    );
    println!("{text}\n");
    let outcomes = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(test_sms::send(&provider, &to.people, &text));
    let mut all_sent = true;
    let mut printed_only = false;
    for (person, outcome) in to.people.iter().zip(outcomes) {
        match outcome {
            Ok(Sent::Accepted) => println!("sent to {person}"),
            Ok(Sent::DryRun) => printed_only = true,
            Err(e) => {
                all_sent = false;
                report_not_sent(person, &e);
            }
        }
    }
    if printed_only {
        let why = if args.dry_run {
            "--dry-run is set"
        } else {
            "the config has no Sipgate credentials"
        };
        println!("dry-run: nothing was sent ({why})");
    }
    Ok(all_sent)
}

/// What the provider answered, on standard error: its status and the reason class as the
/// service logs them, the start of its answer (numbers masked) and what to do about it.
fn report_not_sent(person: &Person, error: &SendError) {
    let what = match error {
        SendError::Rejected {
            provider,
            status,
            reason,
            ..
        } => format!("{provider} answered HTTP {status} ({})", reason.as_str()),
        other => format!("{other} ({})", other.reason().as_str()),
    };
    eprintln!("error: not sent to {person}: {what}");
    if !error.body().is_empty() {
        eprintln!("  {}'s answer: {}", error.provider(), error.body());
    }
    eprintln!(
        "  what to do: {}",
        provider::sipgate::operator_hint(error.reason())
    );
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

/// The command line as completions offer it: without the hidden subcommands (`man`, which only
/// the packaging runs), which clap_complete would offer like any other.
fn completable() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|subcommand| !subcommand.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new(env!("CARGO_PKG_NAME"))
        .version(version::LONG_VERSION)
        .args(full.get_arguments().cloned())
        .subcommands(visible)
        .args_conflicts_with_subcommands(true)
}

/// Completions from the same definition as `--help`; a failed write is an error, not a panic.
fn completion(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut completable(),
        env!("CARGO_PKG_NAME"),
        &mut script,
    );
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completion script")
}

/// The man pages, from the same definition as `--help`: the main page on standard output, or
/// it and one page per subcommand written to `out_dir` (the Debian package ships those).
fn man_pages(out_dir: Option<&Path>) -> anyhow::Result<()> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let source = format!("{} {}", env!("CARGO_PKG_NAME"), version::VERSION);
    let Some(dir) = out_dir else {
        return clap_mangen::Man::new(command)
            .source(source)
            .render(&mut std::io::stdout())
            .context("cannot write the man page");
    };
    let subcommands: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    for page in std::iter::once(command).chain(subcommands) {
        let man = clap_mangen::Man::new(page).source(source.clone());
        let file = dir.join(man.get_filename());
        man.generate_to(dir)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}
