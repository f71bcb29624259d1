//! Any store, watched: a failure counts in `state_errors_total`, turns `state_up` to 0 and is
//! logged once per outage, and once more when the store answers again. The delivery rules then
//! send without the store instead of losing the page. A store that may evict keys under memory
//! pressure is reported too: it would forget sent SMS without failing any operation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::FutureExt;
use tokio::time::{Instant, timeout_at};

use super::{
    Answer, Begin, Eviction, GiveBack, Keep, Record, Settle, Start, StateError, StateStore, Swap,
};
use crate::clock::Millis;
use crate::metrics::{Metrics, StateOperation};
use crate::model::content_key::ContentKey;

#[derive(Debug)]
pub struct Monitored {
    store: Arc<dyn StateStore>,
    metrics: Metrics,
    /// Set while the store fails, so that the happy path needs no lock.
    down: AtomicBool,
    /// Since when, which operation found it out, and what it takes to end it.
    outage: Mutex<Option<Outage>>,
    eviction: Mutex<Option<EvictionSeen>>,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    began: Instant,
    found_by: StateOperation,
    proof: Proof,
}

/// What a successful operation proves about the store, weakest first. An outage ends only with
/// a success that proves at least as much as the failure that began it, so that a store that
/// answers reads but refuses writes (a Redis out of memory) stays down instead of flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proof {
    Read,
    Write,
    /// The store's own health check, which writes (Redis) or reports the writes behind (file).
    Ping,
}

/// Evictions are logged at most this often, with the count since the last line.
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(600);

impl Monitored {
    pub fn new(store: Arc<dyn StateStore>, metrics: Metrics) -> Self {
        metrics.state_up(true);
        Monitored {
            store,
            metrics,
            down: AtomicBool::new(false),
            outage: Mutex::new(None),
            eviction: Mutex::new(None),
        }
    }

    /// Runs `operation` of the store (`call`), and records what its answer proves.
    fn watched<'a, T: Send + 'a>(
        &'a self,
        operation: StateOperation,
        proof: Proof,
        call: impl FnOnce() -> Answer<'a, T> + Send + 'a,
    ) -> Answer<'a, T> {
        async move { self.record(operation, proof, call().await) }.boxed()
    }

    fn record<T>(
        &self,
        operation: StateOperation,
        proof: Proof,
        result: Result<T, StateError>,
    ) -> Result<T, StateError> {
        match &result {
            Ok(_) if self.down.load(Ordering::Acquire) => self.recovered(proof),
            Ok(_) => {}
            Err(e) => self.failed(operation, proof, e),
        }
        result
    }

    /// A claim (`begin`), cut off at `answer_by` so that the SMS still goes out in time.
    fn in_time<'a, T: Send + 'a>(
        &'a self,
        answer_by: Instant,
        call: Answer<'a, T>,
    ) -> Answer<'a, T> {
        async move {
            match timeout_at(answer_by, call).await {
                Ok(result) => self.record(StateOperation::Begin, Proof::Write, result),
                // Our time ran out, not necessarily the store's (its own timeout fits in the
                // budget): counted, but an outage is for the store's own answers to tell.
                Err(_) => {
                    self.metrics.state_error(StateOperation::Begin);
                    Err(StateError::Unavailable(
                        "no answer while there was time left to send inside \
                         delivery.response_deadline"
                            .to_string(),
                    ))
                }
            }
        }
        .boxed()
    }

    fn failed(&self, operation: StateOperation, proof: Proof, error: &StateError) {
        self.metrics.state_error(operation);
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(outage) = outage.as_mut() {
            // A failed write during an outage a read began needs a write to end it, too.
            outage.proof = outage.proof.max(proof);
        } else {
            *outage = Some(Outage {
                began: Instant::now(),
                found_by: operation,
                proof,
            });
            self.down.store(true, Ordering::Release);
            self.metrics.state_up(false);
            tracing::error!(
                store = self.store.name(),
                operation = operation.as_str(),
                // A remote store's error may quote what it was sent or holds.
                error = %crate::redact::phone_numbers(&error.to_string()),
                effect = self.store.when_down(),
                "state store unavailable"
            );
        }
    }

    /// Ends the outage when `proof` shows at least what failed.
    fn recovered(&self, proof: Proof) {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = *outage
            && proof >= o.proof
        {
            *outage = None;
            self.down.store(false, Ordering::Release);
            self.metrics.state_up(true);
            tracing::info!(
                store = self.store.name(),
                found_by = o.found_by.as_str(),
                outage_s = o.began.elapsed().as_secs(),
                "state store answers again"
            );
        }
    }

    /// Reports how the store may evict keys: a warning when it may evict the service's
    /// (again when that changes), and the keys it evicted, logged at most every ten minutes.
    fn watch_eviction(&self, now: Eviction) {
        self.metrics.state_evictable(now.evictable);
        let mut guard = self.eviction.lock().unwrap_or_else(|p| p.into_inner());
        let changed = guard.as_ref().is_none_or(|seen| {
            seen.last.evictable != now.evictable || seen.last.policy != now.policy
        });
        if changed && now.evictable {
            tracing::warn!(
                store = self.store.name(),
                maxmemory_policy = %now.policy,
                "the state store may evict the keys of this service when it is full: it would then \
                 forget which SMS went out and send them again; set maxmemory-policy noeviction \
                 with enough maxmemory, or give the service a Redis of its own"
            );
        } else if changed && guard.as_ref().is_some_and(|seen| seen.last.evictable) {
            tracing::info!(
                store = self.store.name(),
                maxmemory_policy = %now.policy,
                "the state store no longer evicts keys"
            );
        }
        let Some(seen) = guard.as_mut() else {
            *guard = Some(EvictionSeen {
                last: now,
                unlogged: 0,
                logged_at: None,
            });
            return;
        };
        // Another server (a restart, a failover) has a count of its own: it is the start of a
        // new count, not evictions seen.
        let new = if now.server == seen.last.server {
            now.evicted_keys.saturating_sub(seen.last.evicted_keys)
        } else {
            0
        };
        self.metrics.state_evicted_keys(new);
        seen.unlogged += new;
        seen.last = now;
        if seen.unlogged > 0
            && seen
                .logged_at
                .is_none_or(|at| at.elapsed() >= EVICTION_LOG_INTERVAL)
        {
            tracing::warn!(
                store = self.store.name(),
                evicted_keys = seen.unlogged,
                maxmemory_policy = %seen.last.policy,
                "the state store evicted keys for memory; SMS it forgot may be sent again"
            );
            seen.unlogged = 0;
            seen.logged_at = Some(Instant::now());
        }
    }
}

/// The eviction setup seen at the last ping, and the evictions not logged yet.
#[derive(Debug)]
struct EvictionSeen {
    last: Eviction,
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl StateStore for Monitored {
    fn name(&self) -> &'static str {
        self.store.name()
    }

    fn begin<'a>(&'a self, request: Begin<'a>) -> Answer<'a, Start> {
        let answer_by = request.answer_by;
        self.in_time(answer_by, self.store.begin(request))
    }

    fn begin_all<'a>(&'a self, requests: Vec<Begin<'a>>) -> Answer<'a, Vec<Start>> {
        let Some(answer_by) = requests.iter().map(|r| r.answer_by).min() else {
            return std::future::ready(Ok(Vec::new())).boxed();
        };
        self.in_time(answer_by, self.store.begin_all(requests))
    }

    fn settle(&self, request: Settle) -> Answer<'_, ()> {
        self.watched(StateOperation::Settle, Proof::Write, move || {
            self.store.settle(request)
        })
    }

    fn settle_all(&self, requests: Vec<Settle>) -> Answer<'_, ()> {
        self.watched(StateOperation::Settle, Proof::Write, move || {
            self.store.settle_all(requests)
        })
    }

    fn give_back<'a>(&'a self, request: GiveBack<'a>) -> Answer<'a, ()> {
        self.watched(StateOperation::GiveBack, Proof::Write, move || {
            self.store.give_back(request)
        })
    }

    fn wait_for(&self, key: ContentKey, until: Instant) -> Answer<'_, bool> {
        async move {
            // A store that stalls must not keep the caller past `until` either; running out of
            // time proves nothing about the store.
            match timeout_at(until, self.store.wait_for(key, until)).await {
                Ok(result) => self.record(StateOperation::Wait, Proof::Read, result),
                Err(_) => Ok(false),
            }
        }
        .boxed()
    }

    fn claim_once<'a>(&'a self, event: &'a str, ttl: Duration) -> Answer<'a, bool> {
        self.watched(StateOperation::ClaimOnce, Proof::Write, move || {
            self.store.claim_once(event, ttl)
        })
    }

    fn mark<'a>(&'a self, name: &'a str, at: Millis, keep: Keep) -> Answer<'a, ()> {
        self.watched(StateOperation::Mark, Proof::Write, move || {
            self.store.mark(name, at, keep)
        })
    }

    fn marked<'a>(&'a self, name: &'a str) -> Answer<'a, Option<Millis>> {
        self.watched(StateOperation::Mark, Proof::Read, move || {
            self.store.marked(name)
        })
    }

    fn incident<'a>(&'a self, key: &'a str) -> Answer<'a, Option<Record>> {
        self.watched(StateOperation::Incident, Proof::Read, move || {
            self.store.incident(key)
        })
    }

    fn swap_incident<'a>(&'a self, request: Swap<'a>) -> Answer<'a, Option<u64>> {
        self.watched(StateOperation::Incident, Proof::Write, move || {
            self.store.swap_incident(request)
        })
    }

    fn open_incidents(&self) -> Answer<'_, Vec<String>> {
        self.watched(StateOperation::Incident, Proof::Read, move || {
            self.store.open_incidents()
        })
    }

    fn ping(&self) -> Answer<'_, ()> {
        async move {
            let result = self.store.ping().await;
            if result.is_ok()
                && let Some(eviction) = self.store.eviction()
            {
                self.watch_eviction(eviction);
            }
            self.record(StateOperation::Ping, Proof::Ping, result)
        }
        .boxed()
    }

    fn when_down(&self) -> &'static str {
        self.store.when_down()
    }

    fn eviction(&self) -> Option<Eviction> {
        self.store.eviction()
    }

    fn close(&self) -> Answer<'_, ()> {
        self.store.close()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::state::MemoryStore;
    use crate::state::faulty::{Faulty, Op};

    /// Which kinds of operation fail while set: reads, writes, pings.
    #[derive(Debug, Default)]
    struct Told {
        reads: AtomicBool,
        writes: AtomicBool,
        pings: AtomicBool,
    }

    #[tokio::test]
    async fn an_outage_ends_only_with_a_success_that_proves_as_much_as_the_failure() {
        let failing = Arc::new(Told::default());
        let told = failing.clone();
        let faulty = Faulty::new(
            MemoryStore::new(10, Arc::new(crate::clock::TokioClock::new())),
            move |op| {
                let fails = match op {
                    Op::Begin | Op::Mark => &told.writes,
                    Op::Marked => &told.reads,
                    Op::Ping => &told.pings,
                    _ => return std::future::ready(Ok(())).boxed(),
                };
                let answer = if fails.load(Ordering::Relaxed) {
                    Err(StateError::Unavailable("told to fail".to_string()))
                } else {
                    Ok(())
                };
                std::future::ready(answer).boxed()
            },
        );
        let store = Monitored::new(Arc::new(faulty), Metrics::new().unwrap());
        let up = || !store.down.load(Ordering::Acquire);
        let set = |flag: &AtomicBool, fails: bool| flag.store(fails, Ordering::Relaxed);

        // Writes refused (a Redis out of memory): reads do not end it, a write does.
        set(&failing.writes, true);
        assert!(store.mark("m", 1, Keep::Latest).await.is_err());
        assert!(!up());
        assert!(store.marked("m").await.is_ok());
        assert!(!up(), "a read proves nothing about writes");
        set(&failing.writes, false);
        assert!(store.mark("m", 2, Keep::Latest).await.is_ok());
        assert!(up());

        // A failed read ends with a read, or anything stronger.
        set(&failing.reads, true);
        assert!(store.marked("m").await.is_err());
        assert!(!up());
        set(&failing.reads, false);
        assert!(store.mark("m", 3, Keep::Latest).await.is_ok());
        assert!(up(), "a write proves reads too");

        // A failed write after a failed read needs a write.
        set(&failing.reads, true);
        set(&failing.writes, true);
        assert!(store.marked("m").await.is_err());
        assert!(store.mark("m", 4, Keep::Latest).await.is_err());
        set(&failing.reads, false);
        assert!(store.marked("m").await.is_ok());
        assert!(!up());

        // A ping, which writes (Redis) or reports the writes behind (file), ends any outage,
        // and only a ping ends one a ping found.
        set(&failing.writes, false);
        assert!(store.ping().await.is_ok());
        assert!(up());
        set(&failing.pings, true);
        assert!(store.ping().await.is_err());
        assert!(store.mark("m", 5, Keep::Latest).await.is_ok());
        assert!(!up(), "the writes behind may still fail");
        set(&failing.pings, false);
        assert!(store.ping().await.is_ok());
        assert!(up());
    }
}
