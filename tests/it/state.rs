//! The state store contract, one suite run against every backend: memory, file and a real
//! `redis-server`. Time is a `ManualClock` that the suite moves; nothing waits for leases or
//! windows to pass.

use std::sync::Arc;
use std::time::Duration;

use alertmanager_sipgate::clock::ManualClock;
use alertmanager_sipgate::config::{ClusterConfig, RedisConfig, StateConfig};
use alertmanager_sipgate::metrics::Metrics;
use alertmanager_sipgate::model::content_key::ContentKey;
use alertmanager_sipgate::ratelimit::{Limits, Rate};
use alertmanager_sipgate::state::{
    self, Begin, ClaimId, FileStore, GiveBack, Keep, MemoryStore, Record, RedisStore, Settle,
    Settlement, Start, StateStore, Swap, Taken,
};
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::harness::*;

const LEASE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(600);
const HOUR: Duration = Duration::from_secs(3600);
/// 2023-11-14T22:13:20Z: any fixed start will do.
const T0: u64 = 1_700_000_000_000;

fn key(n: u8) -> ContentKey {
    ContentKey::from_bytes([n; 32])
}

fn begin(key: ContentKey, recipient: &str, limits: Limits) -> Begin<'_> {
    Begin {
        key,
        claim: ClaimId::random(),
        recipient,
        lease: LEASE,
        window: WINDOW,
        limits,
        hold: false,
        answer_by: Instant::now() + Duration::from_secs(60),
    }
}

/// `key`, sent under `claim`: not to be sent again for the window.
fn sent(key: ContentKey, claim: ClaimId) -> Settle {
    Settle {
        key,
        claim,
        settlement: Settlement::Sent,
        window: WINDOW,
    }
}

/// What `begin` took for `key`, given back: it was not sent.
fn not_sent(key: ContentKey, recipient: &str, taken: Taken) -> GiveBack<'_> {
    GiveBack {
        key,
        recipient,
        taken,
    }
}

fn per_recipient(count: usize) -> Limits {
    Limits {
        per_recipient: Some(Rate {
            count,
            period: HOUR,
        }),
        total: None,
    }
}

async fn claimed(store: &dyn StateStore, request: Begin<'_>) -> Taken {
    match store.begin(request).await.unwrap() {
        Start::Claimed(taken) => taken,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// Every promise of `StateStore`, in order; `clock` is the store's.
async fn contract(store: &dyn StateStore, clock: &ManualClock) {
    let none = Limits::default();

    // A claim is exclusive until settled; settled means "sent" for the window, then it is over.
    let first = claimed(store, begin(key(1), "alice", none)).await;
    assert_eq!((first.reservation, first.held), (None, 0));
    assert_eq!(
        store.begin(begin(key(1), "alice", none)).await.unwrap(),
        Start::InFlight
    );
    store.settle(sent(key(1), first.claim)).await.unwrap();
    assert_eq!(
        store.begin(begin(key(1), "alice", none)).await.unwrap(),
        Start::Settled(Settlement::Sent)
    );
    clock.advance(WINDOW - Duration::from_millis(1));
    assert_eq!(
        store.begin(begin(key(1), "alice", none)).await.unwrap(),
        Start::Settled(Settlement::Sent)
    );
    clock.advance(Duration::from_millis(1));
    let again = claimed(store, begin(key(1), "alice", none)).await;
    assert_ne!(again.claim, first.claim);

    // Given back, the next request claims it; a stale holder cannot release someone else's.
    let taken = claimed(store, begin(key(2), "alice", none)).await;
    store
        .give_back(not_sent(key(2), "alice", taken))
        .await
        .unwrap();
    let retry = claimed(store, begin(key(2), "alice", none)).await;
    store
        .give_back(not_sent(key(2), "alice", taken))
        .await
        .unwrap();
    assert_eq!(
        store.begin(begin(key(2), "alice", none)).await.unwrap(),
        Start::InFlight,
        "the first holder's give-back must not end the retry's claim"
    );

    // A holder that died: its lease ends and the next claim wins; it cannot settle late.
    clock.advance(LEASE);
    let successor = claimed(store, begin(key(2), "alice", none)).await;
    store.settle(sent(key(2), retry.claim)).await.unwrap();
    assert_eq!(
        store.begin(begin(key(2), "alice", none)).await.unwrap(),
        Start::InFlight,
        "the late holder's settle must not overwrite the successor's claim"
    );
    store.settle(sent(key(2), successor.claim)).await.unwrap();
    // Once the successor's lease is over too, a late settle counts: the SMS did go out.
    let late = claimed(store, begin(key(5), "alice", none)).await;
    clock.advance(LEASE);
    let _ = claimed(store, begin(key(5), "alice", none)).await;
    clock.advance(LEASE);
    store.settle(sent(key(5), late.claim)).await.unwrap();
    assert_eq!(
        store.begin(begin(key(5), "alice", none)).await.unwrap(),
        Start::Settled(Settlement::Sent)
    );
    // A claim whose answer got lost: the caller settles it by its id, taken or not.
    let unanswered = ClaimId::random();
    store.settle(sent(key(6), unanswered)).await.unwrap();
    assert_eq!(
        store.begin(begin(key(6), "alice", none)).await.unwrap(),
        Start::Settled(Settlement::Sent)
    );

    // Waiting: a claim that ends in time, one whose lease is over, one that outlasts `until`.
    let holder = claimed(store, begin(key(3), "alice", none)).await;
    let (waited, ()) = tokio::join!(
        store.wait_for(key(3), Instant::now() + Duration::from_secs(5)),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            store.settle(sent(key(3), holder.claim)).await.unwrap();
        }
    );
    assert!(waited.unwrap(), "the holder settled");
    let _ = claimed(store, begin(key(4), "alice", none)).await;
    assert!(
        !store
            .wait_for(key(4), Instant::now() + Duration::from_millis(150))
            .await
            .unwrap(),
        "the deadline came first"
    );
    clock.advance(LEASE);
    assert!(
        store
            .wait_for(key(4), Instant::now() + Duration::from_secs(5))
            .await
            .unwrap(),
        "the lease is over"
    );

    // Rate limits: two per hour per recipient; the third is held back and counted, and the
    // next SMS after the window takes the count.
    let limits = per_recipient(2);
    for n in [10, 11] {
        let taken = claimed(store, begin(key(n), "carol", limits)).await;
        assert!(taken.reservation.is_some());
        store.settle(sent(key(n), taken.claim)).await.unwrap();
    }
    assert_eq!(
        store.begin(begin(key(12), "carol", limits)).await.unwrap(),
        Start::RateLimited
    );
    assert_eq!(
        store.begin(begin(key(12), "carol", limits)).await.unwrap(),
        Start::Settled(Settlement::RateLimited),
        "held back for the window, not counted twice"
    );
    assert_eq!(
        store.begin(begin(key(13), "carol", limits)).await.unwrap(),
        Start::RateLimited
    );
    let dave = claimed(store, begin(key(14), "dave", limits)).await;
    assert_eq!(dave.held, 0, "dave has his own budget");
    clock.advance(HOUR);
    let next = claimed(store, begin(key(15), "carol", limits)).await;
    assert_eq!(next.held, 2, "the two held back");

    // A slot and a count given back are there for the retry.
    store
        .give_back(not_sent(key(15), "carol", next))
        .await
        .unwrap();
    let retry = claimed(store, begin(key(15), "carol", limits)).await;
    assert_eq!(retry.held, 2);
    let _ = claimed(store, begin(key(16), "carol", limits)).await;
    assert_eq!(
        store.begin(begin(key(17), "carol", limits)).await.unwrap(),
        Start::RateLimited,
        "the refunded slot was taken again, so the limit is full"
    );

    // The total limit counts every recipient.
    let total = Limits {
        per_recipient: None,
        total: Some(Rate {
            count: 1,
            period: HOUR,
        }),
    };
    let _ = claimed(store, begin(key(20), "erin", total)).await;
    assert_eq!(
        store.begin(begin(key(21), "frank", total)).await.unwrap(),
        Start::RateLimited
    );

    // Held back on purpose (quiet hours): counted once however often it is asked, and reported
    // with the next SMS that goes out.
    let quiet = Begin {
        hold: true,
        ..begin(key(30), "grace", none)
    };
    assert_eq!(store.begin(quiet).await.unwrap(), Start::HeldBack);
    assert_eq!(
        store.begin(quiet).await.unwrap(),
        Start::Settled(Settlement::QuietHours)
    );
    let after = claimed(store, begin(key(31), "grace", none)).await;
    assert_eq!(after.held, 1);

    batches(store, clock).await;

    // Once-only events.
    let ttl = Duration::from_secs(3600);
    assert!(store.claim_once("shift:primary:1", ttl).await.unwrap());
    assert!(!store.claim_once("shift:primary:1", ttl).await.unwrap());
    assert!(store.claim_once("shift:primary:2", ttl).await.unwrap());
    clock.advance(ttl);
    assert!(store.claim_once("shift:primary:1", ttl).await.unwrap());

    // Marks: the latest or the earliest time stays.
    assert_eq!(store.marked("beat").await.unwrap(), None);
    for at in [T0 + 100, T0 + 50] {
        store.mark("beat", at, Keep::Latest).await.unwrap();
        store.mark("start", at, Keep::Earliest).await.unwrap();
    }
    assert_eq!(store.marked("beat").await.unwrap(), Some(T0 + 100));
    assert_eq!(store.marked("start").await.unwrap(), Some(T0 + 50));

    incidents(store, clock).await;

    store.ping().await.unwrap();
}

/// The SMS of one notification in one call: each answered as `begin` answers it alone, in order,
/// so that two of them to one recipient share its limit and one held-back count.
async fn batches(store: &dyn StateStore, clock: &ManualClock) {
    let limits = per_recipient(2);
    let quiet = Begin {
        hold: true,
        ..begin(key(40), "ivan", limits)
    };
    assert_eq!(store.begin(quiet).await.unwrap(), Start::HeldBack);
    let settled = claimed(store, begin(key(41), "judy", limits)).await;
    store.settle(sent(key(41), settled.claim)).await.unwrap();
    let held = claimed(store, begin(key(42), "judy", limits)).await;

    let asked = [
        begin(key(43), "ivan", limits),
        begin(key(44), "ivan", limits),
        begin(key(45), "ivan", limits),
        begin(key(43), "ivan", limits),
        begin(key(41), "judy", limits),
        begin(key(42), "judy", limits),
    ];
    let starts = store.begin_all(asked.to_vec()).await.unwrap();
    let taken = |n: usize| match starts[n] {
        Start::Claimed(taken) => taken,
        other => panic!("SMS {n}: expected a claim, got {other:?}"),
    };
    assert_eq!(
        taken(0).held,
        1,
        "the first to ivan reports what was held back"
    );
    assert_eq!(taken(1).held, 0, "and only the first");
    assert_eq!(
        starts[2..],
        [
            Start::RateLimited,
            Start::InFlight,
            Start::Settled(Settlement::Sent),
            Start::InFlight
        ]
    );
    assert_eq!(store.begin_all(Vec::new()).await.unwrap(), []);

    // Settled together, each under its own claim: a stale one does not overwrite.
    store
        .settle_all(vec![
            sent(key(43), taken(0).claim),
            sent(key(44), taken(1).claim),
            sent(key(42), ClaimId::random()),
        ])
        .await
        .unwrap();
    for n in [43, 44] {
        assert_eq!(
            store.begin(begin(key(n), "ivan", limits)).await.unwrap(),
            Start::Settled(Settlement::Sent)
        );
    }
    assert_eq!(
        store.begin(begin(key(42), "judy", limits)).await.unwrap(),
        Start::InFlight,
        "another holder's settlement must not end this claim"
    );
    store
        .settle_all(vec![sent(key(42), held.claim)])
        .await
        .unwrap();
    assert_eq!(
        store.begin(begin(key(42), "judy", limits)).await.unwrap(),
        Start::Settled(Settlement::Sent)
    );
    store.settle_all(Vec::new()).await.unwrap();
    clock.advance(HOUR);
}

/// A write of incident `key` that expects version `expected`, kept for an hour.
fn swap<'a>(key: &'a str, expected: Option<u64>, value: &'a [u8], open: bool) -> Swap<'a> {
    Swap {
        key,
        expected,
        value,
        ttl: HOUR,
        open,
    }
}

fn record(version: u64, value: &[u8]) -> Option<Record> {
    Some(Record {
        version,
        value: value.to_vec(),
    })
}

async fn open_incidents(store: &dyn StateStore) -> Vec<String> {
    let mut keys = store.open_incidents().await.unwrap();
    keys.sort_unstable();
    keys
}

/// The incidents of escalations: records changed by compare-and-swap, listed while open, gone
/// when their time to live since the last write is over.
async fn incidents(store: &dyn StateStore, clock: &ManualClock) {
    assert_eq!(store.incident("a").await.unwrap(), None);
    assert!(open_incidents(store).await.is_empty());

    // Created once: a second create finds it there and changes nothing.
    assert_eq!(
        store
            .swap_incident(swap("a", None, b"{\"step\":0}", true))
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store.incident("a").await.unwrap(),
        record(1, b"{\"step\":0}")
    );
    assert_eq!(
        store
            .swap_incident(swap("a", None, b"other", true))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.incident("a").await.unwrap(),
        record(1, b"{\"step\":0}")
    );

    // The version read wins once; a stale or a made-up one changes nothing.
    assert_eq!(
        store
            .swap_incident(swap("a", Some(1), b"{\"step\":1}", true))
            .await
            .unwrap(),
        Some(2)
    );
    for stale in [Some(0), Some(1), Some(3), Some(u64::MAX)] {
        assert_eq!(
            store
                .swap_incident(swap("a", stale, b"stale", false))
                .await
                .unwrap(),
            None,
            "expected {stale:?}"
        );
    }
    assert_eq!(
        store.incident("a").await.unwrap(),
        record(2, b"{\"step\":1}")
    );

    // Listed while its last write says open; a closed one is still there to read.
    assert_eq!(
        store
            .swap_incident(swap("b", None, b"b", false))
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(open_incidents(store).await, ["a"]);
    assert_eq!(
        store
            .swap_incident(swap("b", Some(1), b"b", true))
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(open_incidents(store).await, ["a", "b"]);
    assert_eq!(
        store
            .swap_incident(swap("a", Some(2), b"acked", false))
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(open_incidents(store).await, ["b"]);
    assert_eq!(store.incident("a").await.unwrap(), record(3, b"acked"));

    // Values are opaque bytes of some tens of kB, NUL and invalid UTF-8 included.
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 256) as u8).collect();
    assert_eq!(
        store
            .swap_incident(swap("big", None, &big, true))
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(store.incident("big").await.unwrap(), record(1, &big));

    // Kept for the time to live of the last write: "b" is written again just before the end.
    clock.advance(HOUR - Duration::from_millis(1));
    assert_eq!(store.incident("a").await.unwrap(), record(3, b"acked"));
    assert_eq!(open_incidents(store).await, ["b", "big"]);
    assert_eq!(
        store
            .swap_incident(swap("b", Some(2), b"b", true))
            .await
            .unwrap(),
        Some(3)
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(store.incident("a").await.unwrap(), None);
    assert_eq!(store.incident("big").await.unwrap(), None);
    assert_eq!(
        open_incidents(store).await,
        ["b"],
        "an expired one is not listed"
    );
    assert_eq!(
        store
            .swap_incident(swap("a", Some(3), b"late", true))
            .await
            .unwrap(),
        None,
        "an expired record has no version to match"
    );
    assert_eq!(
        store
            .swap_incident(swap("a", None, b"anew", false))
            .await
            .unwrap(),
        Some(1),
        "an expired record is created anew"
    );
    assert_eq!(store.incident("a").await.unwrap(), record(1, b"anew"));
    clock.advance(HOUR);
    assert_eq!(store.incident("b").await.unwrap(), None);
    assert!(open_incidents(store).await.is_empty());

    // Racing writers of the same version, and racing creators: exactly one wins each race.
    let values: Vec<Vec<u8>> = (0..32u8).map(|n| vec![n]).collect();
    let created = join_all(
        values
            .iter()
            .map(|value| store.swap_incident(swap("c", None, value, true))),
    )
    .await;
    let winners: Vec<usize> = (0..values.len())
        .filter(|n| created[*n].as_ref().unwrap().is_some())
        .collect();
    assert_eq!(winners.len(), 1, "{created:?}");
    assert_eq!(
        store.incident("c").await.unwrap(),
        record(1, &values[winners[0]])
    );
    let swapped = join_all(
        values
            .iter()
            .map(|value| store.swap_incident(swap("c", Some(1), value, true))),
    )
    .await;
    let winners: Vec<usize> = (0..values.len())
        .filter(|n| swapped[*n].as_ref().unwrap() == &Some(2))
        .collect();
    assert_eq!(winners.len(), 1, "{swapped:?}");
    assert!(swapped.iter().all(|r| matches!(r, Ok(None | Some(2)))));
    assert_eq!(
        store.incident("c").await.unwrap(),
        record(2, &values[winners[0]])
    );
    assert_eq!(open_incidents(store).await, ["c"]);
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    let clock = Arc::new(ManualClock::at(T0));
    let store = MemoryStore::new(1000, clock.clone());
    contract(&store, &clock).await;
}

#[tokio::test]
async fn the_file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(T0));
    let store = FileStore::open(&dir.path().join("state.redb"), clock.clone()).unwrap();
    contract(&store, &clock).await;
    store.close().await.unwrap();
}

fn redis_config(redis: &Redis) -> RedisConfig {
    RedisConfig {
        url: Some(redis.url()),
        username: None,
        password: None,
        key_prefix: "test:".to_string(),
        sentinel: None,
        cluster: None,
        timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn the_redis_store_keeps_the_contract() {
    let redis = Redis::start().await;
    let clock = Arc::new(ManualClock::at(T0));
    let store = RedisStore::new(&redis_config(&redis), clock.clone()).unwrap();
    contract(&store, &clock).await;

    // Keys: the prefix, names and hashes; never a number or alert content; all expiring.
    let keys = redis.cli(&["KEYS", "*"]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort_unstable();
    assert!(keys.contains(&"test:held:carol"), "{keys:?}");
    assert!(keys.contains(&"test:rate:carol"), "{keys:?}");
    assert!(keys.contains(&"test:rate-total"), "{keys:?}");
    assert!(
        keys.contains(&format!("test:sms:{}", key(1).hex()).as_str()),
        "{keys:?}"
    );
    assert!(keys.contains(&"test:incident:c"), "{keys:?}");
    assert!(keys.contains(&"test:incidents:open"), "{keys:?}");
    for key in &keys {
        assert!(key.starts_with("test:"), "{key}");
        let ttl: i64 = redis.cli(&["PTTL", key]).parse().unwrap();
        assert!(ttl > 0, "{key} must expire, PTTL {ttl}");
    }
}

/// As `redis_config`, on the nodes of `cluster`.
fn redis_cluster_config(cluster: &RedisCluster) -> RedisConfig {
    RedisConfig {
        url: None,
        username: None,
        password: None,
        key_prefix: "test:".to_string(),
        sentinel: None,
        cluster: Some(ClusterConfig {
            urls: cluster.urls(),
        }),
        timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
#[ignore = "needs redis-server and redis-cli (apt-get install redis-server redis-tools); run with: cargo test -- --include-ignored"]
async fn the_redis_cluster_store_keeps_the_contract() {
    let cluster = RedisCluster::start().await;
    let clock = Arc::new(ManualClock::at(T0));
    let store = RedisStore::new(&redis_cluster_config(&cluster), clock.clone()).unwrap();
    contract(&store, &clock).await;

    // The prefix is every key's hash tag: all keys in its slot, on its one master, where one
    // script may touch any of them together.
    let tag = "{test:}";
    let slot = cluster.slot_of(tag);
    let master = cluster.master_of(tag);
    let by_master = cluster.keys();
    for (node, keys) in &by_master {
        assert!(
            *node == master || keys.is_empty(),
            "keys off the master of slot {slot} (node {master}): {by_master:?}"
        );
    }
    let mut keys = by_master[&master].clone();
    keys.sort_unstable();
    let sms = format!("{tag}sms:{}", key(1).hex());
    for expected in [
        "{test:}held:carol",
        "{test:}rate:carol",
        "{test:}rate-total",
        &sms,
        "{test:}incident:c",
        "{test:}incidents:open",
        "{test:}once:shift:primary:1",
        "{test:}mark:beat",
        "{test:}probe:ping",
    ] {
        assert!(keys.iter().any(|k| k == expected), "{expected}: {keys:?}");
    }
    for key in &keys {
        assert!(key.starts_with(tag), "{key}");
        assert_eq!(cluster.slot_of(key), slot, "{key}");
        let ttl: i64 = cluster.cli(master, &["PTTL", key]).parse().unwrap();
        assert!(ttl > 0, "{key} must expire, PTTL {ttl}");
    }
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_claim_asked_again_after_its_answer_was_lost_is_still_the_callers() {
    // A client that sends the script again after a lost connection: the first run took the
    // claim, the second must not call it someone else's, or the SMS would wait out its lease.
    let redis = Redis::start().await;
    let clock = Arc::new(ManualClock::at(T0));
    let store = RedisStore::new(&redis_config(&redis), clock.clone()).unwrap();
    let asked = begin(key(1), "alice", per_recipient(2));
    let first = claimed(&store, asked).await;
    clock.advance(Duration::from_millis(5));
    let again = claimed(&store, asked).await;
    assert_eq!(again.claim, first.claim);
    assert_eq!(
        (again.reservation, again.held),
        (None, 0),
        "taken the first time"
    );
    assert_eq!(
        store
            .begin(begin(key(1), "alice", per_recipient(2)))
            .await
            .unwrap(),
        Start::InFlight,
        "another claim"
    );
    store.settle(sent(key(1), again.claim)).await.unwrap();
    // Two slots an hour: the second is still free.
    let _ = claimed(&store, begin(key(2), "alice", per_recipient(2))).await;
    assert_eq!(
        store
            .begin(begin(key(3), "alice", per_recipient(2)))
            .await
            .unwrap(),
        Start::RateLimited
    );
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_notification_to_three_costs_two_redis_round_trips() {
    let redis = Redis::start().await;
    let clock = Arc::new(ManualClock::at(T0));
    let store = RedisStore::new(&redis_config(&redis), clock.clone()).unwrap();
    let recipients = ["alice", "bob", "carol"];
    let notification = |n: u8| {
        recipients
            .iter()
            .enumerate()
            .map(|(i, recipient)| begin(key(3 * n + i as u8), recipient, per_recipient(100)))
            .collect::<Vec<_>>()
    };
    // The first calls load the scripts; count from the second notification on.
    for n in 0..11 {
        if n == 1 {
            redis.cli(&["CONFIG", "RESETSTAT"]);
        }
        let starts = store.begin_all(notification(n)).await.unwrap();
        let settlements = starts
            .iter()
            .zip(notification(n))
            .map(|(start, asked)| match start {
                Start::Claimed(taken) => sent(asked.key, taken.claim),
                other => panic!("expected a claim, got {other:?}"),
            })
            .collect();
        store.settle_all(settlements).await.unwrap();
    }
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert_eq!(
        redis.calls("evalsha"),
        20,
        "two round trips per notification:\n{stats}"
    );
    // Inside the scripts, per SMS: begin GETs the entry and the held-back count and SETs the
    // claim, settle GETs and SETs the entry.
    assert_eq!(redis.calls("get"), 90, "{stats}");
    assert_eq!(redis.calls("set"), 60, "{stats}");
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn an_sms_costs_two_redis_round_trips() {
    let redis = Redis::start().await;
    let clock = Arc::new(ManualClock::at(T0));
    let store = RedisStore::new(&redis_config(&redis), clock.clone()).unwrap();
    // The first call loads the script; count from the second SMS on.
    let warm = claimed(&store, begin(key(1), "alice", per_recipient(10))).await;
    store.settle(sent(key(1), warm.claim)).await.unwrap();
    redis.cli(&["CONFIG", "RESETSTAT"]);
    for n in 2..12 {
        let taken = claimed(&store, begin(key(n), "alice", per_recipient(100))).await;
        store.settle(sent(key(n), taken.claim)).await.unwrap();
    }
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert_eq!(
        redis.calls("evalsha"),
        20,
        "two round trips per SMS:\n{stats}"
    );
    // Everything else ran inside the scripts: per SMS, begin GETs the entry and the held-back
    // count and SETs the claim, settle GETs and SETs the entry. A GET or SET sent by the client
    // would show here.
    assert_eq!(redis.calls("get"), 30, "{stats}");
    assert_eq!(redis.calls("set"), 20, "{stats}");
    redis.assert_only_the_stores_commands(&[]);
}

#[tokio::test]
async fn the_file_store_remembers_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let clock = Arc::new(ManualClock::at(T0));
    {
        let store = FileStore::open(&path, clock.clone()).unwrap();
        let taken = claimed(&store, begin(key(1), "alice", per_recipient(1))).await;
        store.settle(sent(key(1), taken.claim)).await.unwrap();
        assert_eq!(
            store
                .begin(begin(key(2), "alice", per_recipient(1)))
                .await
                .unwrap(),
            Start::RateLimited
        );
        assert!(store.claim_once("shift:primary:1", HOUR).await.unwrap());
        // A claim in flight dies with the process.
        let _ = claimed(&store, begin(key(3), "bob", Limits::default())).await;
        store.close().await.unwrap();
    }
    let store = FileStore::open(&path, clock.clone()).unwrap();
    assert_eq!(
        store
            .begin(begin(key(1), "alice", Limits::default()))
            .await
            .unwrap(),
        Start::Settled(Settlement::Sent)
    );
    assert_eq!(
        store
            .begin(begin(key(4), "alice", per_recipient(1)))
            .await
            .unwrap(),
        Start::RateLimited,
        "the slot taken before the restart still counts"
    );
    assert!(!store.claim_once("shift:primary:1", HOUR).await.unwrap());
    let _ = claimed(&store, begin(key(3), "bob", Limits::default())).await;
    clock.advance(HOUR);
    let next = claimed(&store, begin(key(5), "alice", per_recipient(1))).await;
    assert_eq!(next.held, 2, "held back before and after the restart");
}

#[tokio::test]
async fn the_file_store_keeps_incidents_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let clock = Arc::new(ManualClock::at(T0));
    let minute = Duration::from_secs(60);
    {
        let store = FileStore::open(&path, clock.clone()).unwrap();
        for request in [
            swap("a", None, b"a1", true),
            swap("a", Some(1), b"a2", true),
            swap("b", None, b"b1", false),
            Swap {
                ttl: minute,
                ..swap("short", None, b"s1", true)
            },
        ] {
            assert!(store.swap_incident(request).await.unwrap().is_some());
        }
        store.close().await.unwrap();
    }
    clock.advance(minute);
    {
        let store = FileStore::open(&path, clock.clone()).unwrap();
        assert_eq!(store.incident("a").await.unwrap(), record(2, b"a2"));
        assert_eq!(store.incident("b").await.unwrap(), record(1, b"b1"));
        assert_eq!(
            store.incident("short").await.unwrap(),
            None,
            "expired meanwhile"
        );
        assert_eq!(open_incidents(&store).await, ["a"]);
        assert_eq!(
            store
                .swap_incident(swap("a", Some(1), b"stale", true))
                .await
                .unwrap(),
            None,
            "the version survived the restart"
        );
        assert_eq!(
            store
                .swap_incident(swap("b", Some(1), b"b2", true))
                .await
                .unwrap(),
            Some(2)
        );
        store.close().await.unwrap();
    }
    // "a" keeps the expiry of its last write before the first restart, "b" of its write since.
    clock.advance(HOUR - minute);
    let store = FileStore::open(&path, clock.clone()).unwrap();
    assert_eq!(store.incident("a").await.unwrap(), None);
    assert_eq!(store.incident("b").await.unwrap(), record(2, b"b2"));
    assert_eq!(open_incidents(&store).await, ["b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn replicas_racing_for_an_incident_in_redis_let_exactly_one_win() {
    let redis = Redis::start().await;
    let clock = Arc::new(ManualClock::at(T0));
    // Each replica has a connection of its own.
    let replicas: Vec<Arc<RedisStore>> = (0..8)
        .map(|_| Arc::new(RedisStore::new(&redis_config(&redis), clock.clone()).unwrap()))
        .collect();
    let mut expected = None;
    for round in 0..20u64 {
        let tasks: Vec<_> = (0..64)
            .map(|n: usize| {
                let store = replicas[n % replicas.len()].clone();
                tokio::spawn(async move {
                    let value = format!("{round}:{n}").into_bytes();
                    let won = store
                        .swap_incident(swap("race", expected, &value, true))
                        .await
                        .unwrap();
                    won.map(|version| (version, value))
                })
            })
            .collect();
        let winners: Vec<(u64, Vec<u8>)> = join_all(tasks)
            .await
            .into_iter()
            .filter_map(|task| task.unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (version, value) = winners.into_iter().next().unwrap();
        assert_eq!(version, round + 1);
        assert_eq!(
            replicas[0].incident("race").await.unwrap(),
            record(version, &value)
        );
        expected = Some(version);
    }
}

#[tokio::test]
async fn a_damaged_state_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::write(
        &path,
        b"this is not a state file, and it is long enough to look at",
    )
    .unwrap();
    let clock = Arc::new(ManualClock::at(T0));
    let error = FileStore::open(&path, clock).unwrap_err();
    assert_eq!(error.kind, state::file::FileErrorKind::Damaged);
    let error = error.to_string();
    assert!(
        error.starts_with(&format!(
            "state file {}: damaged or not a state file of this service (",
            path.display()
        )),
        "{error}"
    );
    assert!(
        error.ends_with("; it is left as it is: move it away to start afresh"),
        "{error}"
    );
    let content = std::fs::read(&path).unwrap();
    assert!(
        content.starts_with(b"this is not a state file"),
        "left as it was"
    );
}

#[tokio::test]
async fn the_file_stays_bounded_under_a_storm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let clock = Arc::new(ManualClock::at(T0));
    let metrics = Metrics::new().unwrap();
    let store = state::open(
        &StateConfig::File(path.clone()),
        clock.clone(),
        &tokio::runtime::Handle::current(),
        metrics,
    )
    .unwrap();
    let mut sizes = Vec::new();
    // Three times the ledger's capacity, in rounds with a flush after each.
    for round in 0u32..30 {
        for n in 0u32..10_000 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&round.to_be_bytes());
            bytes[4..8].copy_from_slice(&n.to_be_bytes());
            let key = ContentKey::from_bytes(bytes);
            let taken = claimed(store.as_ref(), begin(key, "alice", Limits::default())).await;
            store.settle(sent(key, taken.claim)).await.unwrap();
        }
        store.close().await.unwrap();
        sizes.push(std::fs::metadata(&path).unwrap().len());
        clock.advance(Duration::from_secs(1));
    }
    eprintln!("state file size after each 10,000 SMS: {sizes:?}");
    let at_capacity = sizes[9];
    let last = *sizes.last().unwrap();
    assert!(
        last <= at_capacity * 3 / 2,
        "the file grows past the ledger's capacity: {sizes:?}"
    );
}
