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
    /// What went wrong in one line: a config's first problem, and how many more there are.
    fn headline(&self) -> String {
        match self {
            ReloadError::Config(ConfigError::Invalid { problems, .. }) => match problems.as_slice()
            {
                [] => self.to_string(),
                [only] => only.to_string(),
                [first, more @ ..] => format!(
                    "{first} (and {})",
                    crate::text::plural::counted(more.len(), "more problem", "more problems")
                ),
            },
            other => other.to_string(),
        }
    }

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
/// the running config stays, and the failure is logged, counted and noted for the status page.
/// The caller starts the credential check of the new config.
pub fn reload(state: &AppState) -> Result<Arc<Live>, ReloadError> {
    let _one_at_a_time = state.one_reload_at_a_time();
    let reloaded = swap(state);
    state.record_reload(
        reloaded
            .as_ref()
            .err()
            .map(ReloadError::headline)
            .as_deref(),
    );
    reloaded
}

/// Makes the config file as it is now the running config, if it can be used.
fn swap(state: &AppState) -> Result<Arc<Live>, ReloadError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::state::MemoryStore;
    use crate::testing::Fixture;

    const CONFIG: &str =
        "recipients: {alice: \"+4915228817386\"}\nroutes: [{name: r, to: [alice]}]\n";

    /// The service on `CONFIG`, read from a file in `dir`.
    fn state_in(dir: &std::path::Path) -> AppState {
        let path = dir.join("config.yml");
        std::fs::write(&path, CONFIG).unwrap();
        let store = MemoryStore::new(16, Arc::new(ManualClock::at(0)));
        let mut fixture = Fixture::on(CONFIG, Arc::new(store));
        fixture.live.config = Config::load_with_env(&path, &|_| None).unwrap();
        AppState::new(
            fixture.live,
            fixture.deliverer,
            fixture.metrics,
            true,
            Arc::new(ManualClock::at(1_000)),
        )
    }

    #[tokio::test]
    async fn every_reload_is_recorded_and_a_failed_one_by_its_first_problem() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(dir.path());
        let path = dir.path().join("config.yml");
        std::fs::write(
            &path,
            "recipients: {alice: \"+49 1522 8817386 x\"}\nroutes: [{name: r, to: [carol]}]\n",
        )
        .unwrap();
        assert!(reload(&state).is_err());
        let failed = state.last_reload().unwrap().failed.unwrap();
        assert_eq!(
            failed,
            "line 1: recipients.alice: invalid phone number: must be + followed by 7 to 15 digits \
             (country code first, no leading 0), e.g. \"+49*********86\" (and 1 more problem)"
        );

        std::fs::remove_file(&path).unwrap();
        assert!(reload(&state).is_err());
        let failed = state.last_reload().unwrap().failed.unwrap();
        assert!(
            failed.starts_with(&format!("cannot read config file {}: ", path.display())),
            "{failed}"
        );

        std::fs::write(&path, CONFIG).unwrap();
        assert!(reload(&state).is_ok());
        assert_eq!(state.last_reload().unwrap().failed, None);
    }
}
