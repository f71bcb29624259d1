//! The running service's state: the loaded config (`Live`), swapped as one unit on a reload
//! (`reload`), and what outlives a reload (the deliverer, the metrics, the heartbeats, how the
//! last reload went).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::clock::{Clock, Millis};
use crate::delivery::Deliverer;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::watchdog::heartbeat::Heartbeats;

pub struct AppState {
    live: ArcSwap<Live>,
    /// Whose time decides who is on call, what is muted and who is in quiet hours.
    pub clock: Arc<dyn Clock>,
    pub deliverer: Deliverer,
    pub metrics: Metrics,
    /// The last heartbeat, which the pipeline records and the watchdog's job reads.
    pub heartbeats: Arc<Heartbeats>,
    force_dry_run: bool,
    /// One reload at a time, so that two cannot interleave their swaps.
    reloading: Mutex<()>,
    /// Wakes the background jobs after a reload.
    pub reloaded: Arc<tokio::sync::Notify>,
    last_reload: Mutex<Option<LastReload>>,
}

/// The last reload (SIGHUP or `POST /-/reload`), for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReload {
    pub at: Millis,
    /// Why it kept the running config: the first line of what went wrong, numbers masked.
    pub failed: Option<String>,
}

impl AppState {
    pub fn new(
        live: Live,
        deliverer: Deliverer,
        metrics: Metrics,
        force_dry_run: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        metrics.initialize(&live.config.routes);
        metrics.initialize_escalation(&live.config.escalation_policies);
        let heartbeats = Arc::new(Heartbeats::new(deliverer.store().clone(), metrics.clone()));
        AppState {
            live: ArcSwap::from_pointee(live),
            clock,
            deliverer,
            metrics,
            heartbeats,
            force_dry_run,
            reloading: Mutex::new(()),
            reloaded: Default::default(),
            last_reload: Mutex::new(None),
        }
    }

    /// The config a request runs on from start to end, even if a reload swaps it meanwhile.
    pub fn current(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Whether `--dry-run` forces dry-run whatever the config says (also after a reload).
    pub fn force_dry_run(&self) -> bool {
        self.force_dry_run
    }

    /// Holds off any other reload until dropped, so that two cannot interleave their swaps.
    pub(crate) fn one_reload_at_a_time(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reloading.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `live` the config of the next requests; those in flight finish on theirs.
    pub(crate) fn replace(&self, live: Arc<Live>) {
        self.live.store(live);
    }

    /// Notes a reload now: `failed` says why it kept the running config. Only its first line
    /// is kept, and a number in it (a config problem may quote one) is masked.
    pub(crate) fn record_reload(&self, failed: Option<&str>) {
        let failed = failed.map(|why| {
            let first_line = why.lines().next().unwrap_or_default();
            crate::redact::phone_numbers(first_line).into_owned()
        });
        let record = LastReload {
            at: self.clock.now(),
            failed,
        };
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
    }

    /// The last reload since the start, if there was one.
    pub fn last_reload(&self) -> Option<LastReload> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::state::MemoryStore;
    use crate::testing::Fixture;

    #[tokio::test]
    async fn a_reload_is_remembered_with_the_first_line_of_its_failure_numbers_masked() {
        let store = MemoryStore::new(16, Arc::new(ManualClock::at(0)));
        let fixture = Fixture::on(
            "recipients: {alice: \"+4915228817386\"}\nroutes: [{name: r, to: [alice]}]\n",
            Arc::new(store),
        );
        let clock = Arc::new(ManualClock::at(1_000));
        let state = AppState::new(
            fixture.live,
            fixture.deliverer,
            fixture.metrics,
            false,
            clock.clone(),
        );
        assert_eq!(state.last_reload(), None);
        state.record_reload(Some(
            "line 2: recipients.alice: invalid phone number, e.g. \"+4915228817386\"\n  and more",
        ));
        assert_eq!(
            state.last_reload(),
            Some(LastReload {
                at: 1_000,
                failed: Some(
                    "line 2: recipients.alice: invalid phone number, e.g. \"+49*********86\""
                        .to_string()
                ),
            })
        );
        clock.advance(Duration::from_secs(5));
        state.record_reload(None);
        assert_eq!(
            state.last_reload(),
            Some(LastReload {
                at: 6_000,
                failed: None
            })
        );
    }
}
