//! The escalation job: on every replica, looks at the open incidents in the state store, pages
//! the steps that are due, and (with `alertmanager.urls`) watches their alerts. Replicas share
//! the work without a claim: the engine's compare-and-swap and ledger keys page each step once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};

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

/// Pages what is due, then asks Alertmanager about every open incident; when to look again, if
/// sooner than a period.
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
    // Pages first: a stalled Alertmanager holds each request up to alertmanager.timeout, which
    // must neither delay a due page nor eat the delivery deadline counted from this look.
    for incident in &incidents {
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
    // All at once, so that a stalled Alertmanager holds the look up for its timeout, not for
    // its timeout once per incident.
    join_all(incidents.iter().map(|incident| escalation.watch(incident))).await;
    wake.and_then(|at| DateTime::from_timestamp_millis(i64::try_from(at).ok()?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio::time::Instant;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::clock::TokioClock;
    use crate::jobs::test_runner;
    use crate::state::memory::DEFAULT_CAPACITY;
    use crate::state::{MemoryStore, StateStore};
    use crate::testing::Fixture;

    const BOB: &str = "+4915254599371";
    const T0: &str = "2026-11-25T10:00:00Z";

    /// Two steps, alice then bob after 10 minutes, and an Alertmanager at `am` that may take 5 s.
    fn config(am: &str) -> String {
        format!(
            r#"
recipients: {{alice: "+4915228817386", bob: "+4915254599371"}}
web: {{external_url: "https://pager.example.com"}}
alertmanager: {{urls: ["{am}"], timeout: 5s}}
escalation_policies:
  critical:
    steps:
      - {{to: [alice], wait: 10m}}
      - {{to: [bob]}}
routes:
  - name: critical
    matchers: ['severity="critical"']
    escalation: critical
"#
        )
    }

    /// A group of one firing `alertname` alert, as Alertmanager posts it.
    fn firing(alertname: &str) -> String {
        json!({
            "status": "firing",
            "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
            "groupLabels": {"alertname": alertname},
            "commonLabels": {"alertname": alertname, "severity": "critical"},
            "alerts": [{
                "status": "firing",
                "fingerprint": format!("f-{alertname}"),
                "startsAt": "2026-11-25T09:55:00Z",
                "labels": {"alertname": alertname, "instance": "db1", "severity": "critical"},
            }],
        })
        .to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_alertmanager_neither_fails_nor_delays_the_due_pages() {
        let am = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!([]))
                    .set_delay(Duration::from_secs(3600)),
            )
            .mount(&am)
            .await;
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new(
            DEFAULT_CAPACITY,
            Arc::new(TokioClock::new()),
        ));
        let f = Fixture::on(&config(&am.uri()), store.clone());
        f.run(&firing("DiskFull"), T0).await;
        f.run(&firing("InodesFull"), T0).await;
        assert_eq!(f.provider.sent().len(), 2, "alice, for each incident");
        let (runner, metrics) = test_runner(store, Arc::new(TokioClock::new()));
        let mut runner = runner.with(EscalationJob);
        let ten_minutes_later =
            T0.parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(10);
        let started = Instant::now();
        runner.tick(JOB, &f.live, ten_minutes_later).await;
        let took = started.elapsed();
        let paged: Vec<String> = f.provider.sent()[2..]
            .iter()
            .map(|(number, _)| number.clone())
            .collect();
        assert_eq!(paged, [BOB, BOB], "step 2 of each incident");
        // Both incidents asked at once: one timeout for the look, not one per incident.
        assert_eq!(took, Duration::from_secs(5));
        assert!(
            metrics
                .render()
                .contains("alertmanager_sipgate_alertmanager_errors_total{operation=\"alerts\"} 2")
        );
    }
}
