//! For unit tests: a memory store whose operations a test makes fail or stall, one seam for
//! every fault of a store (an outage, a refused write, a stall until the client gives up).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{
    Begin, ClaimId, ContentKey, Keep, MemoryStore, Settlement, Start, StateError, StateStore, Taken,
};
use crate::clock::Millis;

/// An operation of the store's contract, as a test names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Begin,
    Settle,
    GiveBack,
    Wait,
    ClaimOnce,
    Mark,
    Marked,
    Ping,
}

type Fault = Box<dyn Fn(Op) -> BoxFuture<'static, Result<(), StateError>> + Send + Sync>;

/// Asks `fault` before each operation: `Ok` goes on to the memory store, an error is the answer;
/// the future may take its time, as a stalled store does.
pub struct Faulty {
    memory: MemoryStore,
    fault: Fault,
    asked: Mutex<Vec<(Op, Instant)>>,
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Faulty")
    }
}

impl Faulty {
    pub fn new(
        memory: MemoryStore,
        fault: impl Fn(Op) -> BoxFuture<'static, Result<(), StateError>> + Send + Sync + 'static,
    ) -> Self {
        Faulty {
            memory,
            fault: Box::new(fault),
            asked: Mutex::default(),
        }
    }

    /// When `op` was asked for, in order.
    pub fn asked(&self, op: Op) -> Vec<Instant> {
        let asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        asked
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, at)| *at)
            .collect()
    }

    async fn ask(&self, op: Op) -> Result<(), StateError> {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((op, Instant::now()));
        (self.fault)(op).await
    }
}

impl StateStore for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn begin<'a>(&'a self, request: Begin<'a>) -> BoxFuture<'a, Result<Start, StateError>> {
        async move {
            self.ask(Op::Begin).await?;
            self.memory.begin(request).await
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
            self.ask(Op::Settle).await?;
            self.memory.settle(key, claim, settlement, window).await
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
            self.ask(Op::GiveBack).await?;
            self.memory.give_back(key, recipient, taken).await
        }
        .boxed()
    }
    fn wait_for(&self, key: ContentKey, until: Instant) -> BoxFuture<'_, Result<bool, StateError>> {
        async move {
            self.ask(Op::Wait).await?;
            self.memory.wait_for(key, until).await
        }
        .boxed()
    }
    fn claim_once<'a>(
        &'a self,
        event: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        async move {
            self.ask(Op::ClaimOnce).await?;
            self.memory.claim_once(event, ttl).await
        }
        .boxed()
    }
    fn mark<'a>(
        &'a self,
        name: &'a str,
        at: Millis,
        keep: Keep,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        async move {
            self.ask(Op::Mark).await?;
            self.memory.mark(name, at, keep).await
        }
        .boxed()
    }
    fn marked<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Millis>, StateError>> {
        async move {
            self.ask(Op::Marked).await?;
            self.memory.marked(name).await
        }
        .boxed()
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
        async move {
            self.ask(Op::Ping).await?;
            self.memory.ping().await
        }
        .boxed()
    }
}
