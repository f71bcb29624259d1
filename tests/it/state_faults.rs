//! Faults of a real `redis-server` under the real binary: stalled (SIGSTOP), full, evicting,
//! and asked with the wrong password. The fake Sipgate counts every SMS.

use std::time::Duration;

use crate::harness::*;

/// The ledger entries in `redis` whose value says the SMS was sent (`s:<until>`).
fn settled_as_sent(redis: &Redis) -> usize {
    redis
        .cli(&["KEYS", "alertmanager-sipgate:sms:*"])
        .lines()
        .filter(|key| redis.cli(&["GET", key]).starts_with("s:"))
        .count()
}

/// With Redis stopped (SIGSTOP) and `state.redis.timeout` at `timeout`, a notification is
/// answered 200 inside the response deadline (else it would be 502), each SMS goes out once,
/// and once Redis answers again the sends are recorded, so that the notification posted again
/// sends nothing.
async fn a_stalled_redis_costs_no_page_and_no_duplicate(timeout: &str) {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).on_redis_with_timeout(&redis, timeout);
    let service = Service::start(&config.yaml()).await;
    assert_eq!(service.post_alerts(diskfull(1)).await.0, 200);

    redis.pause();
    let (status, answer) = service.post_alerts(diskfull(2)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["alice sent", "bob sent"]);
    assert_eq!(requests_per_recipient(&fake).await, alice_and_bob(2));

    redis.resume();
    eventually(
        Duration::from_secs(30),
        "the SMS sent while Redis stalled are recorded",
        || async { (settled_as_sent(&redis) == 4).then_some(()) },
    )
    .await;
    let (status, answer) = service.post_alerts(diskfull(2)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        ["alice suppressed duplicate", "bob suppressed duplicate"]
    );
    assert_eq!(requests_per_recipient(&fake).await, alice_and_bob(2));
    metrics_with(&service.url, "alertmanager_sipgate_state_up 1\n").await;
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_stalled_redis_with_the_default_timeout_costs_no_page_and_no_duplicate() {
    a_stalled_redis_costs_no_page_and_no_duplicate("500ms").await;
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_stalled_redis_with_a_3s_timeout_costs_no_page_and_no_duplicate() {
    a_stalled_redis_costs_no_page_and_no_duplicate("3s").await;
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_stalled_redis_with_the_largest_timeout_accepted_costs_no_page_and_no_duplicate() {
    // The default response deadline is 5 s, and the send keeps 1 s of it.
    a_stalled_redis_costs_no_page_and_no_duplicate("4s").await;
}

/// Posts `count` notifications of two SMS each, all answered 200.
async fn post_many(service: &Service, first: usize, count: usize) {
    for n in first..first + count {
        let (status, answer) = service.post_alerts(diskfull(n)).await;
        assert_eq!(status, 200, "{answer}");
    }
}

/// Fills `redis` with `count` values of 10 kB (with a TTL of a day when `expiring`), as other
/// users of a shared Redis would; stops at the first refusal (out of memory).
fn fill(redis: &Redis, count: usize, expiring: bool) {
    let script = "for i = 1, tonumber(ARGV[1]) do \
           redis.call('SET', 'filler:' .. i, string.rep('x', 10000)) \
           if ARGV[2] == '1' then redis.call('EXPIRE', 'filler:' .. i, 86400) end \
         end return 1";
    redis.cli(&[
        "EVAL",
        script,
        "0",
        &count.to_string(),
        if expiring { "1" } else { "0" },
    ]);
}

/// Under `maxmemory` with a policy that evicts, the service says so at start (a warning and
/// `state_evictable 1`), and counts and logs the keys evicted once Redis runs full.
async fn an_evicting_redis_is_reported(policy: &str) {
    let redis = Redis::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", policy]).await;
    let fake = FakeSipgate::new().start().await;
    let service = Service::start(&TestConfig::new(&fake.uri()).on_redis(&redis).yaml()).await;
    metrics_with(&service.url, "alertmanager_sipgate_state_evictable 1\n").await;
    let log = service.log();
    assert!(
        log.contains("the state store may evict the keys of this service when it is full")
            && log.contains(&format!("maxmemory_policy={policy}")),
        "{log}"
    );

    post_many(&service, 0, 20).await;
    // Other data pushes the ledger out: expiring data under volatile-ttl, any under allkeys.
    fill(&redis, 1000, true);
    let metrics = eventually(Duration::from_secs(10), "evictions counted", || async {
        let metrics = metrics(&service.url).await;
        (metric_value(&metrics, "alertmanager_sipgate_state_evicted_keys_total") > 0)
            .then_some(metrics)
    })
    .await;
    assert_eq!(
        metric_value(&metrics, "alertmanager_sipgate_state_up"),
        1,
        "evicting is not an outage: every operation still answers"
    );
    eventually(Duration::from_secs(10), "the evictions logged", || async {
        service
            .log()
            .contains("the state store evicted keys for memory")
            .then_some(())
    })
    .await;
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_redis_that_evicts_any_key_is_reported() {
    an_evicting_redis_is_reported("allkeys-lru").await;
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_redis_that_evicts_expiring_keys_is_reported() {
    // Every key of the service expires, so volatile-* policies evict them too.
    an_evicting_redis_is_reported("volatile-ttl").await;
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_full_redis_that_refuses_writes_is_one_outage_until_it_takes_writes_again() {
    let redis =
        Redis::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]).await;
    let fake = FakeSipgate::new().start().await;
    let service = Service::start(&TestConfig::new(&fake.uri()).on_redis(&redis).yaml()).await;
    metrics_with(&service.url, "alertmanager_sipgate_state_evictable 0\n").await;
    assert!(!service.log().contains("may evict"), "{}", service.log());

    fill(&redis, 1000, false);
    for n in 0..5 {
        let (status, answer) = service.post_alerts(diskfull(n)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            outcomes(&answer),
            ["alice sent", "bob sent"],
            "sent without the store"
        );
    }
    // Redis still answers PING and reads; the outage lasts as long as it refuses writes.
    eventually(Duration::from_secs(10), "three pings refused", || async {
        let metrics = metrics(&service.url).await;
        (metric_value(
            &metrics,
            "alertmanager_sipgate_state_errors_total{operation=\"ping\"}",
        ) >= 3)
            .then_some(())
    })
    .await;
    let metrics = metrics(&service.url).await;
    assert_eq!(
        metric_value(&metrics, "alertmanager_sipgate_state_up"),
        0,
        "{metrics}"
    );
    let log = service.log();
    let lines = |text: &str| lines_with(&log, text).len();
    assert_eq!(lines("state store unavailable"), 1, "{log}");
    assert_eq!(lines("state store answers again"), 0, "{log}");
    assert!(log.contains("OOM"), "the cause is in the log: {log}");

    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    metrics_with(&service.url, "alertmanager_sipgate_state_up 1\n").await;
    let log = service.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("state store answers again"))
            .count(),
        1,
        "{log}"
    );
    assert_eq!(requests_per_recipient(&fake).await, alice_and_bob(5));
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_wrong_redis_password_is_reported_as_such() {
    let redis = Redis::start_with_password("the-right-one").await;
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).state(serde_json::json!({"redis": {
        "url": redis.url(),
        "password": "a-wrong-one",
    }}));
    let service = Service::start(&config.yaml()).await;
    let (status, answer) = service.post_alerts(diskfull(1)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["alice sent", "bob sent"]);
    let log = eventually(Duration::from_secs(10), "the outage logged", || async {
        let log = service.log();
        log.contains("state store unavailable").then_some(log)
    })
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("state store unavailable"))
        .unwrap();
    assert!(
        line.contains("authentication") && line.contains("state.redis.password"),
        "{line}"
    );
    assert!(!line.contains("no answer within"), "{line}");

    // Redis takes the password from now on (rotated on its side): the service connects anew.
    redis.cli(&["CONFIG", "SET", "requirepass", "a-wrong-one"]);
    metrics_with(&service.url, "alertmanager_sipgate_state_up 1\n").await;
    assert_eq!(service.post_alerts(diskfull(2)).await.0, 200);
    let (status, answer) = service.post_alerts(diskfull(2)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        ["alice suppressed duplicate", "bob suppressed duplicate"]
    );
    assert!(!service.log().contains("a-wrong-one"), "{}", service.log());
}
