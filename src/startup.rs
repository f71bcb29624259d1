//! The one wiring of the running service: from a loaded `Config` and a clock to the state store,
//! the deliverer, the provider, the background tasks and the HTTP server. The binary, the
//! integration tests and the benchmarks all start the service through here, so that what they
//! run is what ships.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::app::AppState;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::Deliverer;
use crate::escalation::job::EscalationJob;
use crate::jobs::Runner;
use crate::jobs::shift_notices::ShiftJob;
use crate::live::Live;
use crate::metrics::{Metrics, MetricsError};
use crate::provider::sipgate::ClientError;
use crate::state::{self, OpenError, StateStore};
use crate::watchdog::WatchdogJob;
use crate::{health, http};

/// Why the service cannot be built from a config that loaded.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    State(#[from] OpenError),
    #[error(transparent)]
    Provider(#[from] ClientError),
}

/// How to run what the config describes.
pub struct Options {
    /// `--dry-run`: every SMS is logged instead of sent, whatever the config holds, also after a
    /// reload.
    pub force_dry_run: bool,
    /// Whose time decides who is on call, what is muted and who is in quiet hours (a test moves
    /// it by hand). Leases and timeouts in the state store always run on the system clock.
    pub clock: Arc<dyn Clock>,
    /// The runtime the SMS sends, the state store and the background tasks run on: it outlives
    /// the HTTP workers, so that a graceful shutdown can let every SMS in flight finish.
    pub runtime: Handle,
}

/// The service, built and not yet serving.
pub struct Service {
    pub state: Arc<AppState>,
    pub store: Arc<dyn StateStore>,
    runtime: Handle,
}

impl Service {
    /// Opens the state store and builds the deliverer and the provider of `config`.
    pub fn build(config: Config, options: Options) -> Result<Service, StartupError> {
        let metrics = Metrics::new()?;
        metrics.config_loaded(true);
        let store = {
            let _on_the_runtime = options.runtime.enter();
            state::open(
                &config.state,
                Arc::new(SystemClock),
                &options.runtime,
                metrics.clone(),
            )?
        };
        let deliverer = Deliverer::new(
            store.clone(),
            config.delivery.max_concurrency,
            config.delivery.max_pending,
            options.runtime.clone(),
            metrics.clone(),
            options.clock.clone(),
        );
        let live = Live::new(config, options.force_dry_run)?;
        let state = Arc::new(AppState::new(
            live,
            deliverer,
            metrics,
            options.force_dry_run,
            options.clock,
        ));
        Ok(Service {
            state,
            store,
            runtime: options.runtime,
        })
    }

    /// Checks the loaded config's Sipgate credentials until Sipgate answers, for `/-/ready`.
    pub fn check_credentials(&self) {
        let state = self.state.clone();
        self.runtime
            .spawn(health::watch_credentials(state.clone(), state.current()));
    }

    /// Everything that runs beside the requests for as long as the service does: the credential
    /// check, the state store's health and the background jobs.
    pub fn run_in_background(&self) {
        self.check_credentials();
        self.runtime.spawn(health::watch_state(self.store.clone()));
        let state = self.state.clone();
        let current = move || state.current();
        self.runtime
            .spawn(self.jobs().run(current, self.state.reloaded.clone()));
    }

    /// The background jobs, each with its own memory: the shift notices and the watchdog. Not
    /// running: `run_in_background` runs them, and a test runs their ticks at instants it picks.
    pub fn jobs(&self) -> Runner {
        let state = &self.state;
        Runner::new(
            state.deliverer.clone(),
            state.metrics.clone(),
            state.clock.clone(),
        )
        .with(ShiftJob::default())
        .with(WatchdogJob::new(state.heartbeats.clone()))
        .with(EscalationJob)
    }

    /// The HTTP server on `listener`; a graceful stop lets requests in flight finish within
    /// `grace`.
    pub fn http_server(
        &self,
        listener: TcpListener,
        grace: Duration,
    ) -> std::io::Result<actix_web::dev::Server> {
        http::build(self.state.clone(), listener, grace)
    }
}
