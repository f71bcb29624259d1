//! The escalation job: on every replica, looks at the open incidents in the state store, pages
//! the steps that are due, and (with `alertmanager.urls`) watches their alerts. Replicas share
//! the work without a claim: the engine's compare-and-swap and ledger keys page each step once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::clock::millis_at;
use crate::config::Config;
use crate::escalation::Escalation;
use crate::jobs::{Job, Tick};
use crate::model::outcome::Outcome;

pub const JOB: &str = "escalation";

/// The longest and shortest time between two looks.
const LONGEST: Duration = Duration::from_secs(15);
const SHORTEST: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct EscalationJob;

impl Job for EscalationJob {
    fn name(&self) -> &'static str {
        JOB
    }

    /// A quarter of the shortest wait of any policy, between 1 and 15 seconds: a step that
    /// another replica's incident made due is paged here at most that late, should that replica
    /// be gone.
    fn period(&self, config: &Config) -> Duration {
        config
            .escalation_policies
            .values()
            .flat_map(|p| p.steps.iter().filter_map(|s| s.wait))
            .min()
            .map_or(LONGEST, |wait| (wait / 4).clamp(SHORTEST, LONGEST))
    }

    fn tick<'a>(&'a mut self, tick: &'a Tick<'_>) -> BoxFuture<'a, DateTime<Utc>> {
        async move {
            let period =
                chrono::Duration::from_std(self.period(&tick.live.config)).unwrap_or_default();
            look(tick)
                .await
                .unwrap_or(tick.now + period)
                .min(tick.now + period)
        }
        .boxed()
    }
}

/// Pages what is due; when to look again, if sooner than a period.
async fn look(tick: &Tick<'_>) -> Option<DateTime<Utc>> {
    let live = tick.live;
    if live.config.escalation_policies.is_empty() {
        tick.metrics.incidents_open(&live.config.routes, &[]);
        return None;
    }
    let escalation = Escalation::at(live, tick.deliverer, tick.metrics, tick.now);
    let incidents = match escalation.open_incidents().await {
        Ok(incidents) => incidents,
        Err(e) => {
            tracing::warn!(error = %e, "open incidents not read; their next steps wait until the state store answers");
            return None;
        }
    };
    let routes: Vec<&str> = incidents.iter().map(|i| i.route.as_str()).collect();
    tick.metrics.incidents_open(&live.config.routes, &routes);
    let now = millis_at(tick.now);
    let mut wake: Option<u64> = None;
    for incident in &incidents {
        escalation.watch(incident).await;
        let next = match incident.due(now) {
            Some(_) => match escalation.page_due(&incident.id).await {
                // A page that failed is tried again a period later, not at once.
                Ok(reports) if reports.iter().any(|r| r.outcome == Outcome::Failed) => None,
                // Its next step is known only after the write: look again soon.
                Ok(_) => Some(now),
                Err(e) => {
                    tracing::warn!(incident = %incident.id, error = %e, "due step not paged; tried again at the next look");
                    None
                }
            },
            None => incident.next.map(|n| n.due),
        };
        wake = match (wake, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    wake.and_then(|at| DateTime::from_timestamp_millis(i64::try_from(at).ok()?))
}
