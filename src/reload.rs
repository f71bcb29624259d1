//! Reading the config file and templates again while the service runs (SIGHUP, `POST /-/reload`):
//! the next requests use the new config while those in flight finish on the old one, and a config
//! that cannot be used leaves the running one in place.

use std::sync::Arc;

use crate::app::AppState;
use crate::config::{Config, ConfigError};
use crate::health;
use crate::live::Live;
use crate::provider::sipgate::ClientError;

/// Why a reload kept the running config.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Provider(#[from] ClientError),
    /// The store is opened once, at start: a reload cannot move the ledger and the limits.
    #[error(
        "{field}: the state store changed ({before} before, {now} now); it is opened once, at \
         start: restart to apply it"
    )]
    StateStoreChanged {
        field: &'static str,
        before: &'static str,
        now: &'static str,
    },
}

impl ReloadError {
    /// One line for the failure and, for a config with problems, one line for each of them:
    /// escaped into a single field, a list of problems is a wall of `\n`.
    fn log(&self) {
        const FAILED: &str = "config reload failed; keeping the running config";
        match self {
            ReloadError::Config(config) => config.log(FAILED),
            other => tracing::error!(error = %other, "{FAILED}"),
        }
    }
}

/// Reloads and, on success, starts checking the new config's credentials with Sipgate.
pub fn reload_and_check(state: &Arc<AppState>) -> Result<(), ReloadError> {
    let live = reload(state)?;
    tokio::spawn(health::watch_credentials(state.clone(), live));
    Ok(())
}

/// Reads the config file and templates again. On success the next requests use them; on failure
/// the running config stays, and the failure is logged and counted. The caller starts the
/// credential check of the new config.
pub fn reload(state: &AppState) -> Result<Arc<Live>, ReloadError> {
    let _one_at_a_time = state.one_reload_at_a_time();
    let old = state.current();
    let live = match load(&old, state.force_dry_run()) {
        Ok(live) => Arc::new(live),
        Err(e) => {
            state.metrics.config_loaded(false);
            e.log();
            return Err(e);
        }
    };
    let (old_delivery, new_delivery) = (&old.config.delivery, &live.config.delivery);
    if (old_delivery.max_concurrency, old_delivery.max_pending)
        != (new_delivery.max_concurrency, new_delivery.max_pending)
    {
        tracing::warn!(
            "delivery.max_concurrency and delivery.max_pending take effect at the next start"
        );
    }
    if old.config.server.auth.is_some() && live.config.server.auth.is_none() {
        tracing::warn!(
            "the reloaded config has no server.auth: anyone who can reach the service can \
             make it send SMS"
        );
    }
    state
        .metrics
        .routes_changed(&old.config.routes, &live.config.routes);
    state
        .metrics
        .initialize_escalation(&live.config.escalation_policies);
    state.replace(live.clone());
    state.metrics.schedules_changed();
    // A permit, so that a job busy at this moment looks again right after.
    state.reloaded.notify_one();
    // A new token or account may have fixed what the hold-off waits for.
    state.deliverer.clear_holdoff();
    state.metrics.config_loaded(true);
    tracing::info!(
        config = %live.config.path.display(),
        routes = live.config.routes.len(),
        recipients = live.config.recipients.len(),
        "config reloaded"
    );
    Ok(live)
}

/// The config file of `old` as it is now, with its provider; the credential verdict of `old`
/// stands until the new config's own check answers.
fn load(old: &Live, force_dry_run: bool) -> Result<Live, ReloadError> {
    let live = Live::new(Config::load(&old.config.path)?, force_dry_run)?;
    let state = &live.config.state;
    if let Some(field) = state.changed_from(&old.config.state) {
        return Err(ReloadError::StateStoreChanged {
            field,
            before: old.config.state.backend(),
            now: state.backend(),
        });
    }
    live.credentials.carry_over(&old.credentials);
    Ok(live)
}
