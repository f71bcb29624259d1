//! The binary's subcommands, run as a user would run them.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alertmanager-sipgate"))
        .args(args)
        .env_remove("SIPGATE_TOKEN")
        .env_remove("SIPGATE_TOKEN_ID")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_accepts_the_example() {
    let out = run(&["check-config", "--config.file=examples/config.yml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "examples/config.yml: OK (2 recipients, 2 routes, templates: compact, default, short)\n\
         no Sipgate credentials: the service would run in dry-run mode and send nothing\n"
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
        "routes[0].to[1]: unknown recipient or group \"carol\"".to_string(),
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

#[test]
fn render_prints_each_sms_without_sending() {
    let out = run(&[
        "render",
        "--config.file=examples/config.yml",
        "examples/payloads/firing.json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sms = "FIRING DiskFull db1:9100 since Nov 25 10:05 CET: Disk on db1 is 95% full";
    assert_eq!(
        text(&out.stdout),
        format!(
            "route: critical  recipient: alice  encoding: GSM-7  characters: 72  segments: 1\n{sms}\n\n\
             route: critical  recipient: bob  encoding: GSM-7  characters: 72  segments: 1\n{sms}\n\n"
        )
    );
}

#[test]
fn render_shows_held_back_resolved_alerts() {
    let out = run(&[
        "render",
        "--config.file=examples/config.yml",
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
    let out = run(&["--version"]);
    assert_eq!(
        text(&out.stdout),
        format!("alertmanager-sipgate {}\n", env!("CARGO_PKG_VERSION"))
    );
}
