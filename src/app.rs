//! The running service's state: the loaded config (`Live`), swapped as one unit on a reload
//! (`reload`), and what outlives a reload (the deliverer, the metrics, the heartbeats).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::clock::Clock;
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
}
