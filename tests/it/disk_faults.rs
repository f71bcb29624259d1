//! The file state store when its disk fails: full, read-only, or holding something that is not a
//! state file. The real binary, with the state file on a tmpfs of its own (needs root to mount).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

/// A config in `dir` whose state file is `state`.
fn config_with_state_file(dir: &Path, sipgate: &str, state: &Path) -> std::path::PathBuf {
    write_config(
        dir,
        &TestConfig::new(sipgate)
            .state(json!({ "file": state.display().to_string() }))
            .yaml(),
    )
}

#[tokio::test]
#[ignore = "needs root for mount (CI runs as root); run with: cargo test -- --include-ignored"]
async fn after_a_full_disk_the_state_is_written_whole_again_and_remembered_across_a_restart() {
    let disk = Tmpfs::mount("2m");
    let fake = FakeSipgate::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = disk.path().join("state.redb");
    let config = config_with_state_file(dir.path(), &fake.uri(), &state);
    let mut service = Service::start_with(&config, &[], &[]).await;
    assert_eq!(service.post_alerts(diskfull(0)).await.0, 200);

    let filler = disk.fill("filler");
    for n in 1..=20 {
        let (status, answer) = service.post_alerts(diskfull(n)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(outcomes(&answer), ["alice sent", "bob sent"]);
    }
    metrics_with(&service.url, "alertmanager_sipgate_state_up 0\n").await;
    let log = service.log();
    let outage = lines_with(&log, "state store unavailable");
    assert_eq!(outage.len(), 1, "one line per outage:\n{log}");
    assert!(
        outage[0].contains(&format!(
            "cannot write {}: I/O error: No space left on device (os error 28)",
            state.display()
        )),
        "the cause, not only that an error happened before:\n{log}"
    );

    std::fs::remove_file(&filler).unwrap();
    metrics_with(&service.url, "alertmanager_sipgate_state_up 1\n").await;
    assert_eq!(
        lines_with(&service.log(), "state store answers again").len(),
        1
    );
    assert!(
        service.stop().await.success(),
        "saved, so exit 0:\n{}",
        service.log()
    );

    // Alertmanager's retries reach the restarted service: every SMS was sent already.
    let service = Service::start_with(&config, &[], &[]).await;
    for n in 0..=20 {
        let (status, answer) = service.post_alerts(diskfull(n)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            outcomes(&answer),
            ["alice suppressed duplicate", "bob suppressed duplicate"],
            "notification {n}"
        );
    }
    assert_eq!(requests_per_recipient(&fake).await, alice_and_bob(21));
}

#[tokio::test]
#[ignore = "needs root for mount (CI runs as root); run with: cargo test -- --include-ignored"]
async fn a_stop_that_cannot_save_the_state_says_so_and_exits_non_zero() {
    let disk = Tmpfs::mount("2m");
    let fake = FakeSipgate::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = disk.path().join("state.redb");
    let config = config_with_state_file(dir.path(), &fake.uri(), &state);
    let mut service = Service::start_with(&config, &[], &[]).await;

    disk.fill("filler");
    for n in 1..=20 {
        assert_eq!(service.post_alerts(diskfull(n)).await.0, 200);
    }
    metrics_with(&service.url, "alertmanager_sipgate_state_up 0\n").await;
    assert!(!service.stop().await.success(), "{}", service.log());
    let log = service.log();
    let unsaved = lines_with(&log, "the state was not saved");
    assert_eq!(unsaved.len(), 1, "{log}");
    assert!(unsaved[0].contains(" level=error "), "{log}");
    assert!(
        unsaved[0].contains(&format!(
            "cannot write {}: I/O error: No space left on device (os error 28)",
            state.display()
        )),
        "{log}"
    );
}

/// Starts the service on a state file it cannot use, and checks that it sends anyway, loudly:
/// one error line with `problem`, `state_up` 0, ready, and the file left as it was.
async fn sends_without_the_file(state: &Path, problem: &str) -> String {
    let before = std::fs::read(state).unwrap();
    let fake = FakeSipgate::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_state_file(dir.path(), &fake.uri(), state);
    let service = Service::start_with(&config, &[], &[]).await;
    metrics_with(&service.url, "alertmanager_sipgate_state_up 0\n").await;
    let (status, answer) = service.post_alerts(diskfull(1)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcomes(&answer), ["alice sent", "bob sent"]);
    assert_eq!(requests_per_recipient(&fake).await, alice_and_bob(1));
    let (status, answer) = service.post_alerts(diskfull(1)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        outcomes(&answer),
        ["alice suppressed duplicate", "bob suppressed duplicate"],
        "dedup still holds in memory"
    );
    assert_eq!(service.get("/-/ready").await.0, 200);

    // A few pings later, still the one line.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = service.log();
    let errors = lines_with(&log, "level=error");
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains(&format!("state file {}: {problem}", state.display())),
        "{log}"
    );
    assert_eq!(
        std::fs::read(state).unwrap(),
        before,
        "the file is left as it was"
    );
    log
}

#[tokio::test]
#[ignore = "needs root for mount (CI runs as root); run with: cargo test -- --include-ignored"]
async fn an_unwritable_state_file_is_reported_and_the_service_sends_without_it() {
    let disk = Tmpfs::mount("4m");
    let state = disk.path().join("state.redb");
    {
        // A good state file, as a previous run left it.
        let fake = FakeSipgate::new().start().await;
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_state_file(dir.path(), &fake.uri(), &state);
        let mut service = Service::start_with(&config, &[], &[]).await;
        assert_eq!(service.post_alerts(diskfull(7)).await.0, 200);
        assert!(service.stop().await.success());
    }
    disk.remount("ro");
    sends_without_the_file(
        &state,
        "no permission to write it (Read-only file system (os error 30)): fix the owner or mode \
         of the file, its folder or the mount; until a restart opens it, the state is kept in \
         memory only",
    )
    .await;
}

#[tokio::test]
async fn a_damaged_state_file_is_reported_left_alone_and_the_service_sends_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.redb");
    std::fs::write(&state, vec![0x5a; 4096]).unwrap();
    let log = sends_without_the_file(&state, "damaged or not a state file of this service (").await;
    assert!(
        log.contains(
            "; it is left as it is: move it away to start afresh; until a restart opens it, the \
             state is kept in memory only\""
        ),
        "{log}"
    );
}
