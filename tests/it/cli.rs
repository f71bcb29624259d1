//! The binary's subcommands, run as a user would run them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::{
    SUMMARY_WITHOUT_CONTROL_CHARACTERS, example, example_service_dir, with_control_characters,
};

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alertmanager-sipgate"));
    command
        .args(args)
        .env_remove("SIPGATE_TOKEN")
        .env_remove("SIPGATE_TOKEN_ID")
        .env_remove("SIPGATE_API_URL")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn run(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

/// `--config.file=` for the example config, copied with its secret as an operator installs it.
fn example_config(dir: &tempfile::TempDir) -> String {
    format!("--config.file={}", dir.path().join("config.yml").display())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_accepts_the_example() {
    let dir = example_service_dir(None);
    let out = run(&["check-config", &example_config(&dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: OK (3 recipients, 2 routes, schedules: primary, templates: compact, default, short, watchdog_back, watchdog_silent, state: memory)\n\
             no Sipgate credentials: the service would run in dry-run mode and send nothing\n",
            dir.path().join("config.yml").display()
        )
    );
}

#[test]
fn check_config_names_the_missing_secret_of_the_example() {
    let dir = example_service_dir(None);
    std::fs::remove_file(dir.path().join("sms-password")).unwrap();
    let out = run(&["check-config", &example_config(&dir)]);
    assert!(!out.status.success());
    let config = dir.path().join("config.yml");
    let secret = dir.path().join("sms-password");
    let line = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .position(|l| l.contains("password_file: sms-password"))
        .unwrap()
        + 1;
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: invalid config file {}:\n  line {line}: server.auth.basic.password_file: \
             cannot read {}: No such file or directory (os error 2)\n",
            config.display(),
            secret.display()
        )
    );
}

#[test]
fn check_config_reports_every_structural_problem_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        "routes:\n  - name: critical\n    to: [alice]\n    max_segment: 3\n    sendresolved: false\n",
    )
    .unwrap();
    let out = run(&[
        "check-config",
        &format!("--config.file={}", config.display()),
    ]);
    assert!(!out.status.success());
    let expected = "one of `name`, `matchers`, `to`, `template`, `send_resolved`, `max_segments`, \
                    `gsm_only`, `continue`, `active_time_intervals`, `mute_time_intervals`, \
                    `ignore_quiet_hours`";
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: invalid config file {}:\n\
             \x20 line 4: routes[0].max_segment: unknown field `max_segment`, expected {expected}\n\
             \x20 line 5: routes[0].sendresolved: unknown field `sendresolved`, expected {expected}\n",
            config.display()
        )
    );
}

#[test]
fn serve_reports_a_bad_config_once_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "routes:\n  - name: a\n    to: [nobody]\n").unwrap();
    let out = run(&[
        &format!("--config.file={}", config.display()),
        "--web.listen-address=127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(" level=error "), "{stderr}");
    assert_eq!(
        stderr
            .matches("routes[0].to[0]: unknown recipient, group or schedule")
            .count(),
        1,
        "{stderr}"
    );
}

#[test]
fn check_config_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/broken.hbs"),
        "{{#each alerts}}no end",
    )
    .unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        r#"
recipients:
  alice: "0151 7654329"
routes:
  - name: critical
    matchers: ['severity=~"critical', 'team=~"("']
    to: [alice, carol]
templates:
  dir: templates
"#,
    )
    .unwrap();
    let out = run(&[
        "check-config",
        &format!("--config.file={}", config.display()),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for expected in [
        format!("invalid config file {}:", config.display()),
        "recipients.alice: invalid phone number: must be in international E.164 format".to_string(),
        "routes[0].matchers[0]: invalid matcher".to_string(),
        "routes[0].matchers[1]: invalid matcher \"team=~\\\"(\\\"\": bad regex".to_string(),
        "routes[0].to[1]: unknown recipient, group or schedule \"carol\"".to_string(),
        format!(
            "templates.dir ({})",
            Path::new(dir.path()).join("templates/broken.hbs").display()
        ),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("7654329"),
        "the number must not be echoed:\n{stderr}"
    );
}

#[test]
fn check_config_reports_a_missing_file() {
    let out = run(&["check-config", "--config.file=does-not-exist.yml"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot read config file does-not-exist.yml"));
}

/// A Wednesday noon in the example schedule's 47th week: bob is on call.
const AT: &str = "--at=2026-11-25T12:00:00+01:00";

const RENDERED_FIRING: &str = "\
route: critical  recipient: bob  encoding: GSM-7  characters: 72  segments: 1
FIRING DiskFull db1:9100 since Nov 25 10:05 CET: Disk on db1 is 95% full

";

#[test]
fn render_prints_each_sms_without_sending() {
    let dir = example_service_dir(None);
    let out = run(&[
        "render",
        &example_config(&dir),
        AT,
        "examples/payloads/firing.json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), RENDERED_FIRING);
}

#[test]
fn render_at_a_given_time_shows_who_is_paged_and_what_is_muted() {
    let dir = example_service_dir(None);
    // Sunday 03:00 in Berlin, in the holidays: alice covers them; warnings wait for Monday.
    let sunday_night = "--at=2026-12-27T03:00:00+01:00";
    let out = run(&[
        "render",
        &example_config(&dir),
        sunday_night,
        "tests/fixtures/alertmanager-0.25/firing-highlatency.json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "route: warnings  recipient: alice  held back: the route is muted at this time (time intervals)\n\n"
    );
    let out = run(&[
        "check-config",
        &example_config(&dir),
        "--at=2026-11-25T03:00:00+01:00",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with(
            "at 2026-11-25T03:00:00+01:00:\n  route critical: texts bob\n  route warnings: muted\n"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn oncall_prints_who_is_on_call_and_the_next_handoffs() {
    let dir = example_service_dir(None);
    let out = run(&[
        "oncall",
        &example_config(&dir),
        "--at=2026-12-23T12:00:00Z",
        "--next=3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "primary (Europe/Berlin)\n\
         \x20 on call: carol        since Mon 21 Dec 09:00  until Thu 24 Dec 00:00\n\
         \x20 then:    alice        from  Thu 24 Dec 00:00  until Sun 27 Dec 00:00\n\
         \x20 then:    carol        from  Sun 27 Dec 00:00  until Mon 28 Dec 09:00\n\
         \x20 then:    alice        from  Mon 28 Dec 09:00  until Mon 04 Jan 2027 09:00\n"
    );
}

#[test]
fn oncall_names_the_year_of_dates_in_another_year_than_the_one_looked_at() {
    let dir = example_service_dir(None);
    let oncall = |at: &str| {
        let out = run(&["oncall", &example_config(&dir), at, "--next=5"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(
        oncall("--at=2026-12-20T12:00:00+01:00"),
        "primary (Europe/Berlin)\n\
         \x20 on call: bob          since Mon 14 Dec 09:00  until Mon 21 Dec 09:00\n\
         \x20 then:    carol        from  Mon 21 Dec 09:00  until Thu 24 Dec 00:00\n\
         \x20 then:    alice        from  Thu 24 Dec 00:00  until Sun 27 Dec 00:00\n\
         \x20 then:    carol        from  Sun 27 Dec 00:00  until Mon 28 Dec 09:00\n\
         \x20 then:    alice        from  Mon 28 Dec 09:00  until Mon 04 Jan 2027 09:00\n\
         \x20 then:    bob          from  Mon 04 Jan 2027 09:00  until Mon 11 Jan 2027 09:00\n"
    );
    // Looked at from January, December is the other year.
    assert_eq!(
        oncall("--at=2027-01-02T12:00:00+01:00"),
        "primary (Europe/Berlin)\n\
         \x20 on call: alice        since Mon 28 Dec 2026 09:00  until Mon 04 Jan 09:00\n\
         \x20 then:    bob          from  Mon 04 Jan 09:00  until Mon 11 Jan 09:00\n\
         \x20 then:    carol        from  Mon 11 Jan 09:00  until Mon 18 Jan 09:00\n\
         \x20 then:    alice        from  Mon 18 Jan 09:00  until Mon 25 Jan 09:00\n\
         \x20 then:    bob          from  Mon 25 Jan 09:00  until Mon 01 Feb 09:00\n\
         \x20 then:    carol        from  Mon 01 Feb 09:00  until Mon 08 Feb 09:00\n"
    );
}

#[test]
fn check_config_echoes_the_time_looked_at_in_the_offset_it_was_given() {
    let dir = example_service_dir(None);
    // One instant, Sunday 03:00 in Berlin, in three offsets: each is echoed as given, and the
    // instant decides.
    for at in [
        "2026-12-06T03:00:00+01:00",
        "2026-12-06T02:00:00+00:00",
        "2026-12-05T21:00:00-05:00",
    ] {
        let out = run(&["check-config", &example_config(&dir), &format!("--at={at}")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.ends_with(&format!(
                "at {at}:\n  route critical: texts carol\n  route warnings: muted\n"
            )),
            "{stdout}"
        );
    }
}

/// `render` of the example config at `AT`, with `payload` on standard input.
fn render_from_standard_input(payload: &[u8]) -> Output {
    let dir = example_service_dir(None);
    let mut child = command(&["render", &example_config(&dir), AT, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(payload).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn render_reads_the_payload_from_standard_input() {
    let out = render_from_standard_input(&std::fs::read(example("payloads/firing.json")).unwrap());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), RENDERED_FIRING);
}

#[test]
fn render_shows_the_text_without_control_characters_as_it_is_sent() {
    let payload = with_control_characters(&std::fs::read(example("payloads/firing.json")).unwrap());
    let out = render_from_standard_input(&payload);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "route: critical  recipient: bob  encoding: GSM-7  characters: 80  segments: 1\n\
             FIRING DiskFull db1:9100 since Nov 25 10:05 CET: {SUMMARY_WITHOUT_CONTROL_CHARACTERS}\n\n"
        )
    );
}

#[test]
fn render_shows_held_back_resolved_alerts() {
    let dir = example_service_dir(None);
    let out = run(&[
        "render",
        &example_config(&dir),
        AT,
        "tests/fixtures/alertmanager-0.25/resolved-highlatency.json",
    ]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "route: warnings  recipient: alice  held back: route does not send resolved alerts\n\n"
    );
}

#[test]
fn help_shows_prometheus_style_flags_and_no_secrets() {
    let out = run(&["--help"]);
    let help = text(&out.stdout);
    for flag in [
        "--config.file",
        "--web.listen-address",
        "--log.level",
        "--log.format",
        "--dry-run",
        "check-config",
        "render",
    ] {
        assert!(help.contains(flag), "{flag} missing in:\n{help}");
    }
    for variable in ["SIPGATE_TOKEN_ID", "SIPGATE_TOKEN", "SIPGATE_API_URL"] {
        assert!(help.contains(variable), "{variable} missing in:\n{help}");
    }
    let out = run(&["--version"]);
    assert_eq!(
        text(&out.stdout),
        format!("alertmanager-sipgate {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// Each subcommand's help lists the flags it uses and no others.
#[test]
fn subcommand_help_lists_only_its_own_flags() {
    let flags = |args: &[&str]| -> Vec<String> {
        let help = text(&run(args).stdout);
        help.split_whitespace()
            .filter(|w| w.starts_with("--"))
            .map(|w| w.trim_end_matches(',').to_string())
            .collect()
    };
    assert_eq!(flags(&["healthcheck", "--help"]), ["--url", "--help"]);
    assert_eq!(
        flags(&["check-config", "--help"]),
        ["--config.file", "--at", "--help"]
    );
    assert_eq!(
        flags(&["render", "--help"]),
        ["--config.file", "--at", "--help"]
    );
    assert_eq!(
        flags(&["oncall", "--help"]),
        ["--config.file", "--at", "--next", "--help"]
    );
    let help = text(&run(&["check-config", "--help"]).stdout);
    assert!(help.contains("SIPGATE_TOKEN_ID"), "{help}");
    // Flags of the service itself belong to it, not before a subcommand.
    let out = run(&["--log.level=debug", "check-config"]);
    assert_eq!(out.status.code(), Some(2));
}
