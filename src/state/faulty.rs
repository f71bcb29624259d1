//! For unit tests: a memory store whose operations a test makes fail or stall, one seam for
//! every fault of a store (an outage, a refused write, a stall until the client gives up).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{
    Answer, Begin, ContentKey, GiveBack, Keep, MemoryStore, Record, Settle, Start, StateError,
    StateStore, Swap,
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
    Incident,
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

    /// Asks the fault about `op`, then, unless it failed, runs `op` on the memory store
    /// (`call`).
    fn after_asking<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        call: impl FnOnce() -> Answer<'a, T> + Send + 'a,
    ) -> Answer<'a, T> {
        async move {
            self.asked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((op, Instant::now()));
            (self.fault)(op).await?;
            call().await
        }
        .boxed()
    }
}

impl StateStore for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn begin<'a>(&'a self, request: Begin<'a>) -> Answer<'a, Start> {
        self.after_asking(Op::Begin, move || self.memory.begin(request))
    }
    fn begin_all<'a>(&'a self, requests: Vec<Begin<'a>>) -> Answer<'a, Vec<Start>> {
        self.after_asking(Op::Begin, move || self.memory.begin_all(requests))
    }
    fn settle(&self, request: Settle) -> Answer<'_, ()> {
        self.after_asking(Op::Settle, move || self.memory.settle(request))
    }
    fn settle_all(&self, requests: Vec<Settle>) -> Answer<'_, ()> {
        self.after_asking(Op::Settle, move || self.memory.settle_all(requests))
    }
    fn give_back<'a>(&'a self, request: GiveBack<'a>) -> Answer<'a, ()> {
        self.after_asking(Op::GiveBack, move || self.memory.give_back(request))
    }
    fn wait_for(&self, key: ContentKey, until: Instant) -> Answer<'_, bool> {
        self.after_asking(Op::Wait, move || self.memory.wait_for(key, until))
    }
    fn claim_once<'a>(&'a self, event: &'a str, ttl: Duration) -> Answer<'a, bool> {
        self.after_asking(Op::ClaimOnce, move || self.memory.claim_once(event, ttl))
    }
    fn mark<'a>(&'a self, name: &'a str, at: Millis, keep: Keep) -> Answer<'a, ()> {
        self.after_asking(Op::Mark, move || self.memory.mark(name, at, keep))
    }
    fn marked<'a>(&'a self, name: &'a str) -> Answer<'a, Option<Millis>> {
        self.after_asking(Op::Marked, move || self.memory.marked(name))
    }
    fn incident<'a>(&'a self, key: &'a str) -> Answer<'a, Option<Record>> {
        self.after_asking(Op::Incident, move || self.memory.incident(key))
    }
    fn swap_incident<'a>(&'a self, request: Swap<'a>) -> Answer<'a, Option<u64>> {
        self.after_asking(Op::Incident, move || self.memory.swap_incident(request))
    }
    fn open_incidents(&self) -> Answer<'_, Vec<String>> {
        self.after_asking(Op::Incident, move || self.memory.open_incidents())
    }
    fn ping(&self) -> Answer<'_, ()> {
        self.after_asking(Op::Ping, move || self.memory.ping())
    }
}
