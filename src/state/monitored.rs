//! Any store, watched: a failure counts in `state_errors_total`, turns `state_up` to 0 and is
//! logged once per outage, and once more when the store answers again. The delivery rules then
//! send without the store instead of losing the page.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use tokio::time::Instant;

use super::{Begin, ClaimId, ContentKey, Settlement, Start, StateError, StateStore, Taken};
use crate::clock::Millis;
use crate::metrics::{Metrics, StateOperation};

#[derive(Debug)]
pub struct Monitored {
    store: Arc<dyn StateStore>,
    metrics: Metrics,
    /// Set while the store fails, so that the happy path needs no lock.
    down: AtomicBool,
    /// Since when, and which operation found it out.
    outage: Mutex<Option<(Instant, StateOperation)>>,
}

impl Monitored {
    pub fn new(store: Arc<dyn StateStore>, metrics: Metrics) -> Self {
        metrics.state_up(true);
        Monitored {
            store,
            metrics,
            down: AtomicBool::new(false),
            outage: Mutex::new(None),
        }
    }

    fn record<T>(
        &self,
        operation: StateOperation,
        result: Result<T, StateError>,
    ) -> Result<T, StateError> {
        match &result {
            Ok(_) if self.down.load(Ordering::Acquire) => self.recovered(operation),
            Ok(_) => {}
            Err(e) => self.failed(operation, e),
        }
        result
    }

    fn failed(&self, operation: StateOperation, error: &StateError) {
        self.metrics.state_error(operation);
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if outage.is_none() {
            *outage = Some((Instant::now(), operation));
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

    /// An outage found by a ping (the file store's writes) ends only with a ping that passes;
    /// any other ends with any answer.
    fn recovered(&self, operation: StateOperation) {
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((began, found_by)) = *outage
            && (found_by != StateOperation::Ping || operation == StateOperation::Ping)
        {
            *outage = None;
            self.down.store(false, Ordering::Release);
            self.metrics.state_up(true);
            tracing::info!(
                store = self.store.name(),
                outage_s = began.elapsed().as_secs(),
                "state store answers again"
            );
        }
    }
}

impl StateStore for Monitored {
    fn name(&self) -> &'static str {
        self.store.name()
    }

    fn begin<'a>(&'a self, request: Begin<'a>) -> BoxFuture<'a, Result<Start, StateError>> {
        async move {
            let result = self.store.begin(request).await;
            self.record(StateOperation::Begin, result)
        }
        .boxed()
    }

    fn settle(
        &self,
        key: ContentKey,
        claim: ClaimId,
        settlement: Settlement,
        window: Duration,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        async move {
            let result = self.store.settle(key, claim, settlement, window).await;
            self.record(StateOperation::Settle, result)
        }
        .boxed()
    }

    fn give_back<'a>(
        &'a self,
        key: ContentKey,
        recipient: &'a str,
        taken: Taken,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            let result = self.store.give_back(key, recipient, taken).await;
            self.record(StateOperation::GiveBack, result)
        }
        .boxed()
    }

    fn wait_for(&self, key: ContentKey, until: Instant) -> BoxFuture<'_, Result<bool, StateError>> {
        async move {
            let result = self.store.wait_for(key, until).await;
            self.record(StateOperation::Wait, result)
        }
        .boxed()
    }

    fn claim_once<'a>(
        &'a self,
        event: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        async move {
            let result = self.store.claim_once(event, ttl).await;
            self.record(StateOperation::ClaimOnce, result)
        }
        .boxed()
    }

    fn mark<'a>(
        &'a self,
        name: &'a str,
        at: Millis,
        keep: super::Keep,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            let result = self.store.mark(name, at, keep).await;
            self.record(StateOperation::Mark, result)
        }
        .boxed()
    }

    fn marked<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Millis>, StateError>> {
        async move {
            let result = self.store.marked(name).await;
            self.record(StateOperation::Mark, result)
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        async move {
            let result = self.store.ping().await;
            self.record(StateOperation::Ping, result)
        }
        .boxed()
    }

    fn when_down(&self) -> &'static str {
        self.store.when_down()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StateError>> {
        self.store.close()
    }
}
