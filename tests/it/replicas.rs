//! Several replicas and restarts: the real binary on a shared `redis-server` (also behind
//! `redis-sentinel`, or a Redis Cluster), or on a state file, with the fake Sipgate counting every
//! SMS; and what the shared state costs a notification in round trips.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::harness::*;

async fn two_replicas(config: &TestConfig) -> (Service, Service) {
    let yaml = config.yaml();
    (Service::start(&yaml).await, Service::start(&yaml).await)
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn the_same_notification_posted_to_two_replicas_at_once_is_sent_once() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new()
        .answering(ResponseTemplate::new(204).set_delay(Duration::from_millis(200)))
        .start()
        .await;
    let (a, b) = two_replicas(&TestConfig::new(&fake.uri()).on_redis(&redis)).await;
    for n in 0..5 {
        let (from_a, from_b) = tokio::join!(a.post_alerts(diskfull(n)), b.post_alerts(diskfull(n)));
        assert_eq!((from_a.0, from_b.0), (200, 200), "{from_a:?} {from_b:?}");
    }
    let expected = alice_and_bob(5);
    assert_eq!(requests_per_recipient(&fake).await, expected);
    assert!(a.log().contains("state=redis"), "{}", a.log());

    // What Redis holds: names and hashes, never a number or alert content.
    let keys = redis.cli(&["KEYS", "*"]);
    assert!(!keys.is_empty());
    for key in keys.lines() {
        let value = match redis.cli(&["TYPE", key]).as_str() {
            "zset" => redis.cli(&["ZRANGE", key, "0", "-1"]),
            _ => redis.cli(&["GET", key]),
        };
        for secret in ["15228817386", "15254599371", "DiskFull", "db1", "95%"] {
            assert!(
                !key.contains(secret) && !value.contains(secret),
                "{key} = {value}"
            );
        }
    }
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_replica_that_finds_the_sms_in_flight_elsewhere_never_sends_it_again() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new()
        .answering(ResponseTemplate::new(204).set_delay(Duration::from_secs(3)))
        .start()
        .await;
    let (a, b) = two_replicas(&TestConfig::new(&fake.uri()).on_redis(&redis)).await;
    let a = Arc::new(a);
    let first = {
        let a = a.clone();
        tokio::spawn(async move { a.post_alerts(diskfull(1)).await })
    };
    // A's two requests are on the wire; B gets the same notification now.
    requests_received(&fake, 2).await;
    let (status, answer) = b.post_alerts(diskfull(1)).await;
    let from_a = first.await.unwrap();
    assert_eq!(from_a.0, 200, "{from_a:?}");
    match status {
        200 => assert_eq!(
            outcomes(&answer),
            ["alice suppressed duplicate", "bob suppressed duplicate"]
        ),
        502 => {}
        other => panic!("B answered {other}: {answer}"),
    }
    assert_eq!(requests_per_recipient(&fake).await, alice_and_bob(1));
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_rate_limit_holds_across_replicas() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri())
        .on_redis(&redis)
        .delivery("rate_limit", json!({"per_recipient": "2/h"}));
    let (a, b) = two_replicas(&config).await;
    for (n, replica) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (status, answer) = replica.post_alerts(diskfull(n)).await;
        assert_eq!(status, 200, "{answer}");
        let expected = if n < 2 {
            ["alice sent", "bob sent"]
        } else {
            [
                "alice suppressed rate_limited",
                "bob suppressed rate_limited",
            ]
        };
        assert_eq!(outcomes(&answer), expected, "notification {n}");
    }
    let expected = alice_and_bob(2);
    assert_eq!(requests_per_recipient(&fake).await, expected);
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_replica_killed_mid_send_leaves_the_sms_to_the_other_after_the_lease() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new()
        .answering(ResponseTemplate::new(204).set_delay(Duration::from_secs(2)))
        .start()
        .await;
    let mut config = TestConfig::faults(&fake.uri()).on_redis(&redis);
    config.sipgate.timeout = "3s".to_string();
    let (mut a, b) = two_replicas(&config).await;
    let url = a.url.clone();
    let doomed = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/alerts"))
            .body(diskfull(1))
            .send()
            .await
    });
    requests_received(&fake, 2).await;
    a.child.signal("KILL");
    a.child.wait_for_exit(Duration::from_secs(5)).await;
    assert!(doomed.await.unwrap().is_err(), "A died before it answered");

    // Alertmanager retries against B: 502 while A's claim holds (1 s deadline + 3 s Sipgate
    // timeout + 10 s margin), then B sends.
    let answers = std::sync::Mutex::new(Vec::new());
    eventually(
        Duration::from_secs(30),
        "B sends after A's lease",
        || async {
            let (status, _) = b.post_alerts(diskfull(1)).await;
            answers.lock().unwrap().push(status);
            (status == 200).then_some(())
        },
    )
    .await;
    let answers = answers.into_inner().unwrap();
    assert!(
        answers.len() > 1 && answers[..answers.len() - 1].iter().all(|s| *s == 502),
        "{answers:?}"
    );
    // A's requests reached the fake before it died, so each recipient may have two: at most one
    // duplicate, never a loss.
    let counts = requests_per_recipient(&fake).await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), [ALICE, BOB]);
    assert!(counts.values().all(|n| *n == 2), "{counts:?}");
}

#[tokio::test]
async fn the_file_backend_remembers_across_a_restart() {
    let fake = FakeSipgate::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &TestConfig::new(&fake.uri())
            .state(json!({"file": "state.redb"}))
            .yaml(),
    );
    let mut service = Service::start_with(&config, &[], &[]).await;
    assert_eq!(service.post_alerts(diskfull(1)).await.0, 200);
    assert!(service.stop().await.success());
    assert!(dir.path().join("state.redb").is_file());

    // Alertmanager's retry reaches the restarted service.
    let service = Service::start_with(&config, &[], &[]).await;
    let (status, answer) = service.post_alerts(diskfull(1)).await;
    assert_eq!(status, 200);
    assert_eq!(
        outcomes(&answer),
        ["alice suppressed duplicate", "bob suppressed duplicate"]
    );
    assert_eq!(requests_per_recipient(&fake).await, alice_and_bob(1));
    let (_, ready) = service.get("/-/ready").await;
    assert_eq!(ready, "OK (sipgate, state: file)\n");
}

#[tokio::test]
async fn a_state_file_in_a_missing_folder_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &TestConfig::new("http://127.0.0.1:9")
            .state(json!({"file": "gone/state.redb"}))
            .yaml(),
    );
    let (status, stderr) = Service::refusing(&config, &[]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "state.file: the directory {} does not exist",
            dir.path().join("gone").display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_state_file_in_use_by_a_running_instance_stops_the_second_one() {
    let fake = FakeSipgate::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &TestConfig::new(&fake.uri())
            .state(json!({"file": "state.redb"}))
            .yaml(),
    );
    let _first = Service::start_with(&config, &[], &[]).await;
    let (status, stderr) = Service::refusing(&config, &[]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error=\"state file {}: is in use by another process; the file backend is for one \
             instance (use state.redis for several replicas)\"",
            dir.path().join("state.redb").display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn with_redis_down_sms_still_go_out_and_dedup_returns_with_it() {
    let mut redis = Redis::start().await;
    let fake = FakeSipgate::new().start().await;
    let service = Service::start(&TestConfig::new(&fake.uri()).on_redis(&redis).yaml()).await;
    assert_eq!(service.post_alerts(diskfull(1)).await.0, 200);
    metrics_with(&service.url, "alertmanager_sipgate_state_up 1\n").await;

    redis.kill();
    for _ in 0..2 {
        let (status, answer) = service.post_alerts(diskfull(2)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            outcomes(&answer),
            ["alice sent", "bob sent"],
            "no dedup without the store"
        );
    }
    let metrics = metrics_with(&service.url, "alertmanager_sipgate_state_up 0\n").await;
    let begin_errors = metric_value(
        &metrics,
        "alertmanager_sipgate_state_errors_total{operation=\"begin\"}",
    );
    assert_eq!(
        begin_errors, 2,
        "one claim for both SMS of a notification, twice:\n{metrics}"
    );
    let outage_lines = lines_with(&service.log(), "state store unavailable").len();
    assert_eq!(
        outage_lines,
        1,
        "one error line per outage:\n{}",
        service.log()
    );

    redis.start_again().await;
    metrics_with(&service.url, "alertmanager_sipgate_state_up 1\n").await;
    assert_eq!(service.post_alerts(diskfull(3)).await.0, 200);
    let (status, answer) = service.post_alerts(diskfull(3)).await;
    assert_eq!(status, 200);
    assert_eq!(
        outcomes(&answer),
        ["alice suppressed duplicate", "bob suppressed duplicate"]
    );
    assert!(
        service.log().contains("state store answers again"),
        "{}",
        service.log()
    );
    let expected = alice_and_bob(4);
    assert_eq!(requests_per_recipient(&fake).await, expected);
}

#[tokio::test]
#[ignore = "needs redis-server and redis-sentinel (apt-get install redis-server redis-sentinel); run with: cargo test -- --include-ignored"]
async fn a_sentinel_failover_under_traffic_loses_no_sms() {
    let mut master = Redis::start().await;
    let replica = Redis::replica_of(&master).await;
    let sentinel = Sentinel::start(&master).await;
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).state(json!({"redis": {
        "sentinel": {"master": SENTINEL_MASTER, "urls": [sentinel.url()]},
        "timeout": "500ms",
    }}));
    let service = Arc::new(Service::start(&config.yaml()).await);

    let traffic = {
        let service = service.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..60 {
                statuses.push(service.post_alerts(diskfull(n)).await.0);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            statuses
        })
    };
    requests_received(&fake, 4).await;
    master.kill();
    sentinel.wait_for_master(&replica).await;
    let statuses = traffic.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let counts = requests_per_recipient(&fake).await;
    assert!(
        counts.values().all(|n| *n >= 60),
        "every SMS at least once: {counts:?}"
    );

    // The service follows the new master: dedup works again, without a restart.
    metrics_with(&service.url, "alertmanager_sipgate_state_up 1\n").await;
    assert_eq!(service.post_alerts(diskfull(100)).await.0, 200);
    let (_, answer) = service.post_alerts(diskfull(100)).await;
    assert_eq!(
        outcomes(&answer),
        ["alice suppressed duplicate", "bob suppressed duplicate"]
    );
    assert_eq!(replica.cli(&["ROLE"]).lines().next(), Some("master"));
}

#[tokio::test]
#[ignore = "needs redis-server and openssl (apt-get install redis-server openssl); run with: cargo test -- --include-ignored"]
async fn the_state_can_live_in_a_redis_that_speaks_only_tls() {
    let redis = Redis::start_tls().await;
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).state(json!({"redis": {
        "url": format!("rediss://localhost:{}/0", redis.port),
    }}));
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config.yaml());
    // The certificate's CA, as an operator adds a private CA to the system's trust store.
    let ca = redis.ca_file().display().to_string();
    let service = Service::start_with(&path, &[], &[("SSL_CERT_FILE", &ca)]).await;
    assert_eq!(service.post_alerts(diskfull(1)).await.0, 200);
    let (status, answer) = service.post_alerts(diskfull(1)).await;
    assert_eq!(status, 200);
    assert_eq!(
        outcomes(&answer),
        ["alice suppressed duplicate", "bob suppressed duplicate"],
        "{}",
        service.log()
    );
    assert_eq!(requests_per_recipient(&fake).await, alice_and_bob(1));
    metrics_with(&service.url, "alertmanager_sipgate_state_up 1\n").await;
    assert!(
        !redis.cli(&["KEYS", "*"]).is_empty(),
        "the state is in the TLS Redis"
    );
}

/// The slot of every key of the service on a cluster: the default `key_prefix` is the hash tag.
const SERVICE_SLOT_KEY: &str = "{alertmanager-sipgate:}";

#[tokio::test]
#[ignore = "needs redis-server and redis-cli (apt-get install redis-server redis-tools); run with: cargo test -- --include-ignored"]
async fn a_cluster_failover_under_traffic_to_two_replicas_loses_no_sms() {
    const NOTIFICATIONS: usize = 60;
    let mut cluster = RedisCluster::start().await;
    let fake = FakeSipgate::new().start().await;
    let (a, b) = two_replicas(&TestConfig::new(&fake.uri()).on_redis_cluster(&cluster)).await;
    let (a, b) = (Arc::new(a), Arc::new(b));

    // An Alertmanager HA pair: every notification to both replicas at once, each retried after
    // a 5xx; a new one every 100 ms, whether the last is answered or not.
    let traffic = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            let mut posts = Vec::new();
            for n in 0..NOTIFICATIONS {
                let (a, b) = (a.clone(), b.clone());
                posts.push(tokio::spawn(async move {
                    let body = diskfull(n);
                    tokio::join!(
                        a.post_like_alertmanager(&body, 10),
                        b.post_like_alertmanager(&body, 10)
                    )
                }));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut statuses = Vec::new();
            for post in posts {
                statuses.push(post.await.unwrap());
            }
            statuses
        })
    };
    requests_received(&fake, 8).await;
    let doomed = cluster.master_of(SERVICE_SLOT_KEY);
    let masters_before = cluster.masters();
    let killed_at = Instant::now();
    cluster.kill(doomed);
    let promoted = cluster.wait_for_new_master(SERVICE_SLOT_KEY, doomed).await;
    let failover = killed_at.elapsed();
    let statuses = traffic.await.unwrap();
    assert!(
        masters_before.contains(&doomed),
        "node {doomed} was a master"
    );
    assert!(
        !masters_before.contains(&promoted) && cluster.is_master(promoted),
        "node {promoted} was a replica and is a master now"
    );

    let answered = |tries: &Vec<u16>| tries.last().is_some_and(|s| (200..300).contains(s));
    assert!(
        statuses.iter().all(|(a, b)| answered(a) && answered(b)),
        "every post ends in a 2xx: {statuses:?}"
    );
    // Every SMS at least once; at most twice: both replicas may send one whose claim the store
    // could not take or answer while the slot had no master.
    let mut copies = Vec::new();
    for number in [ALICE, BOB] {
        let texts = texts_to(&fake, number).await;
        for n in 0..NOTIFICATIONS {
            let alert = format!("DiskFull db{n}:9100 ");
            let count = texts.iter().filter(|t| t.contains(&alert)).count();
            copies.push((number, n, count));
        }
    }
    let duplicated = copies.iter().filter(|(_, _, count)| *count == 2).count();
    let mut twice: Vec<usize> = copies
        .iter()
        .filter(|(_, _, count)| *count == 2)
        .map(|(_, n, _)| *n)
        .collect();
    twice.sort_unstable();
    twice.dedup();
    let wrong: Vec<_> = copies
        .iter()
        .filter(|(_, _, count)| !(1..=2).contains(count))
        .collect();
    let retried = statuses
        .iter()
        .filter(|(a, b)| a.len() > 1 || b.len() > 1)
        .count();
    let summary = format!(
        "{duplicated} of {} SMS sent twice (of notifications {twice:?}), {retried} of \
         {NOTIFICATIONS} notifications retried, the new master {failover:?} after the kill",
        copies.len()
    );
    assert!(
        wrong.is_empty(),
        "SMS lost or sent more than twice (recipient, notification, copies): {wrong:?}; \
         {summary}; posts: {statuses:?}"
    );
    eprintln!("cluster failover under traffic: {summary}");

    // Both replicas follow the new master without a restart, and dedup works again.
    for replica in [&a, &b] {
        metrics_with(&replica.url, "alertmanager_sipgate_state_up 1\n").await;
    }
    let (status, answer) = a.post_alerts(diskfull(1000)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["alice sent", "bob sent"]);
    let (status, answer) = b.post_alerts(diskfull(1000)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        ["alice suppressed duplicate", "bob suppressed duplicate"]
    );
}

/// The state store's cost of a notification to three people (the shared config's critical
/// route, with carol on call too), with the scripts loaded: one script call claims the three
/// SMS and one settles them, two round trips whatever the number of recipients. `on_store` puts
/// the state on `store`.
async fn assert_two_round_trips_per_notification(
    store: &impl CommandStats,
    on_store: impl FnOnce(TestConfig) -> TestConfig,
) {
    const NOTIFICATIONS: usize = 10;
    let everyone_sent = ["alice sent", "bob sent", "carol sent"];
    let fake = FakeSipgate::new().start().await;
    let mut config = on_store(TestConfig::new(&fake.uri()));
    config.recipients.insert("carol".to_string(), CAROL.into());
    config.groups.insert(
        "oncall".to_string(),
        ["alice", "bob", "carol"].map(String::from).to_vec(),
    );
    let service = Service::start(&config.yaml()).await;
    // The first notification loads the scripts.
    let (status, answer) = service.post_alerts(diskfull(0)).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, everyone_sent.map(String::from).to_vec())
    );

    store.reset_stats();
    for n in 1..=NOTIFICATIONS {
        let (status, answer) = service.post_alerts(diskfull(n)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(outcomes(&answer), everyone_sent, "notification {n}");
    }
    // A settlement may follow the answer by a moment.
    let expected = 2 * NOTIFICATIONS as u64;
    eventually(
        Duration::from_secs(5),
        &format!("{expected} script calls"),
        || async { (store.calls("evalsha") >= expected).then_some(()) },
    )
    .await;
    let stats = store.stats();
    assert_eq!(
        store.calls("evalsha"),
        expected,
        "two round trips per notification:\n{stats}"
    );
    // Besides the scripts the client sends only the health check's probe `set` and `info` (once
    // a second); the rest ran inside the scripts, or is a replica's share of the scripts' writes
    // and its acknowledgements.
    store.assert_only_the_stores_commands(&["multi", "exec", "pexpireat", "del", "replconf"]);
}

#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_notification_to_three_costs_two_round_trips_to_redis() {
    let redis = Redis::start().await;
    assert_two_round_trips_per_notification(&redis, |config| config.on_redis(&redis)).await;
}

#[tokio::test]
#[ignore = "needs redis-server and redis-cli (apt-get install redis-server redis-tools); run with: cargo test -- --include-ignored"]
async fn a_notification_to_three_costs_two_round_trips_to_a_redis_cluster() {
    let cluster = RedisCluster::start().await;
    assert_two_round_trips_per_notification(&cluster, |config| config.on_redis_cluster(&cluster))
        .await;
}
