//! The binary's subcommands, run as a user would run them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use wiremock::ResponseTemplate;

use crate::harness::{
    ALICE, BOB, FakeSipgate, SUMMARY_WITHOUT_CONTROL_CHARACTERS, Service, TestConfig, example,
    example_service_dir, metrics, requests_to, sent_sms, service_binary, with_control_characters,
    write_config,
};

fn command(args: &[&str]) -> Command {
    let mut command = service_binary();
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
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
            "{}: OK (3 recipients, 2 routes, 1 escalation policy, schedules: primary, secondary, templates: compact, default, short, watchdog_back, watchdog_silent, state: memory)\n\
             no Sipgate credentials: the service would run in dry-run mode and send nothing\n",
            dir.path().join("config.yml").display()
        )
    );
}

/// Whoever copies an example and adds a token must not text a stranger: every full number in the
/// examples and the README is one of the drama numbers the Bundesnetzagentur never assigns
/// (Mitteilung 148/2021, Amtsblatt 7/2021).
#[test]
fn the_examples_and_the_readme_hold_only_numbers_that_reach_nobody() {
    const DRAMA_NUMBERS: [&str; 3] = ["+4915228817386", "+4915254599371", "+491729980752"];
    let number = regex::Regex::new(r"\+\d[\d ./-]{7,}\d").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut folders = vec![root.join("examples")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if !path.ends_with("sms-password") {
                // The quick start's random secret is no phone book.
                files.push(path);
            }
        }
    }
    let mut seen = 0;
    for file in files {
        let Ok(content) = std::fs::read_to_string(&file) else {
            continue;
        };
        for found in number.find_iter(&content) {
            let digits: String = found
                .as_str()
                .chars()
                .filter(|c| *c == '+' || c.is_ascii_digit())
                .collect();
            assert!(
                DRAMA_NUMBERS.contains(&digits.as_str()),
                "{}: {} is not a drama number",
                file.display(),
                found.as_str()
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 6,
        "the examples' phone books were not found ({seen} numbers)"
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
    let config = write_config(
        dir.path(),
        "routes:\n  - name: critical\n    to: [alice]\n    max_segment: 3\n    sendresolved: false\n",
    );
    let out = run(&[
        "check-config",
        &format!("--config.file={}", config.display()),
    ]);
    assert!(!out.status.success());
    let expected = "one of `name`, `matchers`, `to`, `template`, `send_resolved`, `max_segments`, \
                    `gsm_only`, `continue`, `active_time_intervals`, `mute_time_intervals`, \
                    `ignore_quiet_hours`, `escalation`";
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
fn check_config_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/broken.hbs"),
        "{{#each alerts}}no end",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
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
    );
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
            "line 9: templates.dir: {} line 1: the block {{{{#each}}}} opened on line 1 is never \
             closed; close it with {{{{/each}}}}",
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

/// A Wednesday noon in the example schedule's 47th week: bob is primary, carol secondary.
const AT: &str = "--at=2026-11-25T12:00:00+01:00";

/// The example's critical route escalates: its plan, then step 1's page with a placeholder of
/// the code's length, so that characters and segments are those of the real page.
const RENDERED_FIRING: &str = "\
route: critical  escalates by critical: primary (bob) now, then after 10m secondary (carol), then after 15m ops-lead (carol); does not repeat
step 1, as an incident opened now pages it (XXXXXXXXXXXXXXXXXXXXXXXX stands for each person's own code, as long):
route: critical  recipient: bob  encoding: GSM-7  characters: 130  segments: 1
FIRING DiskFull db1:9100 since Nov 25 10:05 CET: Disk on db1 is 95% full
Ack: https://pager.example.com/a/XXXXXXXXXXXXXXXXXXXXXXXX

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
            "at 2026-11-25T03:00:00+01:00:\n  route critical: escalates by critical: primary (bob) \
             now, then after 10m secondary (carol), then after 15m ops-lead (carol); does not \
             repeat\n  route warnings: muted\n"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_config_at_a_given_time_names_who_is_in_quiet_hours() {
    // The critical route texting whoever is primary, without its ignore_quiet_hours: bob, on
    // call, is in his nights. (Quiet hours hold back no escalation page.)
    let dir = example_service_dir(Some(&|config: &mut yaml_serde::Value| {
        let route = config["routes"][0].as_mapping_mut().unwrap();
        route.remove("escalation").unwrap();
        route.insert(
            "to".into(),
            yaml_serde::Value::Sequence(vec!["primary".into()]),
        );
        route.insert("ignore_quiet_hours".into(), false.into());
    }));
    let out = run(&[
        "check-config",
        &example_config(&dir),
        "--at=2026-11-25T03:00:00+01:00",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with(
            "at 2026-11-25T03:00:00+01:00:\n  route critical: texts bob (in quiet hours: bob)\n  \
             route warnings: muted\n"
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
         \x20 then:    alice        from  Mon 28 Dec 09:00  until Mon 04 Jan 2027 09:00\n\
         secondary (Europe/Berlin)\n\
         \x20 on call: alice        since Mon 21 Dec 09:00  until Thu 24 Dec 00:00\n\
         \x20 then:    bob          from  Thu 24 Dec 00:00  until Sun 27 Dec 00:00\n\
         \x20 then:    alice        from  Sun 27 Dec 00:00  until Mon 28 Dec 09:00\n\
         \x20 then:    bob          from  Mon 28 Dec 09:00  until Mon 04 Jan 2027 09:00\n"
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
         \x20 then:    bob          from  Mon 04 Jan 2027 09:00  until Mon 11 Jan 2027 09:00\n\
         secondary (Europe/Berlin)\n\
         \x20 on call: carol        since Mon 14 Dec 09:00  until Mon 21 Dec 09:00\n\
         \x20 then:    alice        from  Mon 21 Dec 09:00  until Thu 24 Dec 00:00\n\
         \x20 then:    bob          from  Thu 24 Dec 00:00  until Sun 27 Dec 00:00\n\
         \x20 then:    alice        from  Sun 27 Dec 00:00  until Mon 28 Dec 09:00\n\
         \x20 then:    bob          from  Mon 28 Dec 09:00  until Mon 04 Jan 2027 09:00\n\
         \x20 then:    carol        from  Mon 04 Jan 2027 09:00  until Mon 11 Jan 2027 09:00\n"
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
         \x20 then:    carol        from  Mon 01 Feb 09:00  until Mon 08 Feb 09:00\n\
         secondary (Europe/Berlin)\n\
         \x20 on call: bob          since Mon 28 Dec 2026 09:00  until Mon 04 Jan 09:00\n\
         \x20 then:    carol        from  Mon 04 Jan 09:00  until Mon 11 Jan 09:00\n\
         \x20 then:    alice        from  Mon 11 Jan 09:00  until Mon 18 Jan 09:00\n\
         \x20 then:    bob          from  Mon 18 Jan 09:00  until Mon 25 Jan 09:00\n\
         \x20 then:    carol        from  Mon 25 Jan 09:00  until Mon 01 Feb 09:00\n\
         \x20 then:    alice        from  Mon 01 Feb 09:00  until Mon 08 Feb 09:00\n"
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
                "at {at}:\n  route critical: escalates by critical: primary (carol) now, then \
                 after 10m secondary (alice), then after 15m ops-lead (carol); does not repeat\n  \
                 route warnings: muted\n"
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
        RENDERED_FIRING
            .replace("characters: 130", "characters: 138")
            .replace(
                "Disk on db1 is 95% full",
                SUMMARY_WITHOUT_CONTROL_CHARACTERS
            )
    );
}

#[test]
fn render_shows_the_first_page_of_an_escalating_route_to_each_person_of_step_1() {
    // Step 1 pages the group oncall: alice and bob each get their page.
    let dir = example_service_dir(Some(&|config: &mut yaml_serde::Value| {
        config["escalation_policies"]["critical"]["steps"][0]["to"] =
            yaml_serde::Value::Sequence(vec!["oncall".into()]);
    }));
    let out = run(&[
        "render",
        &example_config(&dir),
        AT,
        "examples/payloads/firing.json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = "encoding: GSM-7  characters: 130  segments: 1\n\
                FIRING DiskFull db1:9100 since Nov 25 10:05 CET: Disk on db1 is 95% full\n\
                Ack: https://pager.example.com/a/XXXXXXXXXXXXXXXXXXXXXXXX\n\n";
    assert_eq!(
        text(&out.stdout),
        format!(
            "route: critical  escalates by critical: oncall (alice, bob) now, then after 10m \
             secondary (carol), then after 15m ops-lead (carol); does not repeat\n\
             step 1, as an incident opened now pages it (XXXXXXXXXXXXXXXXXXXXXXXX stands for each \
             person's own code, as long):\n\
             route: critical  recipient: alice  {page}\
             route: critical  recipient: bob  {page}"
        )
    );
}

#[test]
fn render_says_that_a_resolved_group_on_an_escalating_route_ends_its_incident() {
    let dir = example_service_dir(None);
    let out = run(&[
        "render",
        &example_config(&dir),
        AT,
        "examples/payloads/resolved.json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "route: critical  escalates by critical: the alerts resolved: their incident ends, and \
         everyone it paged gets the resolved SMS\n\n"
    );
}

#[test]
fn render_says_that_a_muted_escalating_route_pages_nobody() {
    let dir = example_service_dir(Some(&|config: &mut yaml_serde::Value| {
        config["routes"][0]["active_time_intervals"] =
            yaml_serde::Value::Sequence(vec!["business-hours".into()]);
    }));
    let out = run(&[
        "render",
        &example_config(&dir),
        "--at=2026-11-25T03:00:00+01:00",
        "examples/payloads/firing.json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "no SMS: the routes that take its alerts are muted at this time (time intervals)\n"
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
    // The revision after the version: `version_and_build_info_name_the_git_revision_of_the_build`.
    let out = run(&["--version"]);
    let version = text(&out.stdout);
    assert!(
        version.starts_with(&format!(
            "alertmanager-sipgate {} (revision ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
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

// Config problems as the operator meets them: in `check-config`, at start and on reload.

/// `check-config` of `config`, with these environment variables.
fn check_config(config: &Path, env: &[(&str, &str)]) -> Output {
    command(&[
        "check-config",
        &format!("--config.file={}", config.display()),
    ])
    .envs(env.iter().copied())
    .output()
    .unwrap()
}

/// What `check-config` prints for `problems` of `config`.
fn listing(config: &Path, problems: &[&str]) -> String {
    let mut out = format!("error: invalid config file {}:\n", config.display());
    for problem in problems {
        out.push_str(&format!("  {problem}\n"));
    }
    out
}

#[test]
fn check_config_lists_problems_in_the_order_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "\
routes:
  - name: critical
    to: [oncall, carol]
groups:
  oncall: [alice, dave]
recipients:
  alice: \"0151 7654329\"
delivery:
  dedup_window: 30d
server:
  max_body_size: lots
",
    );
    // A token without a token id: a problem of no line of the file, listed last.
    let out = check_config(&config, &[("SIPGATE_TOKEN", "t0ken")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        listing(
            &config,
            &[
                "line 3: routes[0].to[1]: unknown recipient, group or schedule \"carol\"",
                "line 5: groups.oncall[1]: unknown recipient \"dave\"; groups list names from recipients",
                "line 7: recipients.alice: invalid phone number: must be in international E.164 \
                 format starting with + and the country code, e.g. \"+4915228817386\"",
                "line 9: delivery.dedup_window: must be at most 7days, got 30days",
                "line 11: server.max_body_size: invalid size \"lots\"; use e.g. \"1MiB\", \"512KiB\"",
                "sipgate.token_id: a token is set but no token_id: set token_id or $SIPGATE_TOKEN_ID",
            ]
        )
    );
}

#[test]
fn check_config_names_the_line_of_the_mapping_that_lacks_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "\
recipients:
  alice: \"+4915228817386\"
schedules:
  primary:
    time_zone: Europe/Berlin
    rotation:
      members: [alice]
time_intervals:
  - time_intervals: [{weekdays: [saturday]}]
routes:
  - matchers: ['severity=\"critical\"']
    to: [primary]
  - name: rest
sipgate:
  token_id: token-AB12CD
",
    );
    let out = check_config(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    // The route to the broken schedule is not blamed for it.
    assert_eq!(
        text(&out.stderr),
        listing(
            &config,
            &[
                "line 6: schedules.primary.rotation.shift: missing: e.g. 1w, 1d, 12h",
                "line 6: schedules.primary.rotation.start: missing: the first handoff, e.g. \
                 \"2026-01-05T09:00\"",
                "line 9: time_intervals[0].name: missing: every time interval needs a name",
                "line 11: routes[0].name: missing: every route needs a name",
                "line 13: routes[1].to: a route needs to (recipients, groups or schedules) or \
                 escalation (a policy)",
                "line 14: sipgate.token: token_id is set but no token: set token, token_file or \
                 $SIPGATE_TOKEN",
            ]
        )
    );
}

#[test]
fn check_config_explains_template_syntax_errors_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    for (file, text) in [
        (
            "short.hbs",
            "{{status}}\n{{#if commonLabels.team}}\nteam {{commonLabels.team}}\n",
        ),
        (
            "nested.hbs",
            "{{#each alerts}}\n{{#if labels.instance}}{{labels.instance}}\n{{/each}}\n",
        ),
        ("typo.hbs", "FIRING {{commonLabels.alertname}\n"),
        (
            "param.hbs",
            "{{status}}\n{{truncate commonAnnotations.summary max=}}\n",
        ),
        ("stray.hbs", "{{status}}{{/if}}\n"),
    ] {
        std::fs::write(templates.join(file), text).unwrap();
    }
    let config = write_config(
        dir.path(),
        "\
recipients: {alice: \"+4915228817386\"}
routes: [{name: all, to: [alice]}]
templates:
  dir: templates
",
    );
    let out = check_config(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let file = |name: &str| templates.join(name).display().to_string();
    assert_eq!(
        text(&out.stderr),
        listing(
            &config,
            &[
                &format!(
                    "line 4: templates.dir: {} line 3: the block {{{{#if}}}} opened on line 2 \
                     is closed by {{{{/each}}}}; close it with {{{{/if}}}} first",
                    file("nested.hbs")
                ),
                &format!(
                    "line 4: templates.dir: {} line 2: {{{{truncate commonAnnotations.summary \
                     max=}}}} is not a valid expression (column 42)",
                    file("param.hbs")
                ),
                &format!(
                    "line 4: templates.dir: {} line 3: the block {{{{#if}}}} opened on line 2 \
                     is never closed; close it with {{{{/if}}}}",
                    file("short.hbs")
                ),
                &format!(
                    "line 4: templates.dir: {} line 1: {{{{/if}}}} closes a block that was \
                     never opened",
                    file("stray.hbs")
                ),
                &format!(
                    "line 4: templates.dir: {} line 1: the expression \
                     {{{{commonLabels.alertname}} is never closed with }}}}",
                    file("typo.hbs")
                ),
            ]
        )
    );
}

#[test]
fn check_config_names_the_field_and_line_of_each_bad_time_interval_value() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "\
recipients: {alice: \"+4915228817386\"}
routes: [{name: all, to: [alice], mute_time_intervals: [offhours]}]
time_intervals:
  - name: offhours
    time_intervals:
      - times:
          - start_time: '00:00'
            end_time: '08:00'
          - start_time: '18:00'
            end_time: '24:30'
          - start_time: '12:00'
            end_time: '11:00'
          - start_time: 'noon'
            end_time: '13:00'
        weekdays:
          - monday
          - someday
        days_of_month: ['1:5', '0']
        months:
          - january:march
          - december:january
        years: ['2026:2025']
        location: Mars/Olympus
      - times:
          - start_time: '09:00'
",
    );
    let out = check_config(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let at = "time_intervals[0].time_intervals";
    assert_eq!(
        text(&out.stderr),
        listing(
            &config,
            &[
                &format!(
                    "line 10: {at}[0].times[1].end_time: couldn't parse timestamp 24:30, invalid format"
                ),
                &format!(
                    "line 11: {at}[0].times[2]: start time cannot be equal or greater than end time"
                ),
                &format!(
                    "line 13: {at}[0].times[3].start_time: couldn't parse timestamp noon, invalid format"
                ),
                &format!("line 17: {at}[0].weekdays[1]: someday is not a valid weekday"),
                &format!(
                    "line 18: {at}[0].days_of_month[1]: 0 is not a valid day of the month: out of range"
                ),
                &format!(
                    "line 21: {at}[0].months[1]: end month january is before start month december"
                ),
                &format!("line 22: {at}[0].years[0]: end year 2025 is before start year 2026"),
                &format!("line 23: {at}[0].location: unknown time zone Mars/Olympus"),
                &format!(
                    "line 25: {at}[1].times[0].end_time: both start and end times must be provided"
                ),
            ]
        )
    );
}

const NO_ROUTE: &str = "no route, so no alert would page anybody; add one, e.g. \
                        routes: [{name: all, to: [alice]}] with alice under recipients";

#[test]
fn check_config_refuses_a_config_that_pages_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = check_config(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        listing(&config, &[&format!("routes: {NO_ROUTE}")])
    );

    let config = write_config(
        dir.path(),
        "recipients: {alice: \"+4915228817386\"}\nroutes: []\n",
    );
    let out = check_config(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        listing(&config, &[&format!("line 2: routes: {NO_ROUTE}")])
    );
}

/// A watchdog with recipients pages somebody when the alerting pipeline goes silent; counts of
/// one read in the singular.
#[test]
fn check_config_accepts_a_watchdog_without_routes_and_counts_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "recipients: {alice: \"+4915228817386\"}\n\
         watchdog: {matchers: ['alertname=\"Watchdog\"'], to: [alice]}\n",
    );
    let out = check_config(&config, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: OK (1 recipient, 0 routes, schedules: none, templates: compact, default, \
             watchdog_back, watchdog_silent, state: memory)\n\
             no Sipgate credentials: the service would run in dry-run mode and send nothing\n",
            config.display()
        )
    );

    let config = write_config(
        dir.path(),
        "recipients: {alice: \"+4915228817386\"}\n\
         routes: [{name: warnings, matchers: ['severity=\"warning\"'], to: [alice]}]\n",
    );
    let out = check_config(&config, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!(
            "{}: OK (1 recipient, 1 route, schedules: none,",
            config.display()
        )),
        "{}",
        text(&out.stdout)
    );
    let out = run(&[
        "render",
        &format!("--config.file={}", config.display()),
        "examples/payloads/firing.json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "1 alert would not be sent: no route matches\n"
    );
}

/// An escalating route shows its plan at `--at`: each step with whom its schedules and groups
/// reach when it would be paged, and how often the steps run again.
#[test]
fn check_config_counts_escalation_policies_and_shows_the_plan_of_an_escalating_route() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "\
recipients: {alice: \"+4915228817386\", bob: \"+4915254599371\", carol: \"+491729980752\"}
groups: {ops: [carol, alice]}
schedules:
  primary: {time_zone: UTC, rotation: {members: [alice, bob], shift: 1h, start: '2026-01-05T09:00'}}
web: {external_url: https://pager.example.com/}
escalation_policies:
  critical:
    steps:
      - {to: [primary], wait: 10m}
      - {to: [primary, ops], wait: 50m}
      - {to: [carol, primary], wait: 15m}
    repeat: 1
routes:
  - {name: critical, matchers: ['severity=\"critical\"'], escalation: critical}
  - {name: rest, to: [bob]}
",
    );
    let out = run(&[
        "check-config",
        &format!("--config.file={}", config.display()),
        "--at=2026-01-05T09:55:00Z",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: OK (3 recipients, 2 routes, 1 escalation policy, schedules: primary, \
             templates: compact, default, watchdog_back, watchdog_silent, state: memory)\n\
             no Sipgate credentials: the service would run in dry-run mode and send nothing\n\
             at 2026-01-05T09:55:00+00:00:\n\
             \x20 route critical: escalates by critical: primary (alice) now, then after 10m \
             primary (bob), ops (carol, alice), then after 50m carol, primary (bob); \
             repeats 1 time after 15m\n\
             \x20 route rest: texts bob\n",
            config.display()
        )
    );
}

/// The log line of a refused start without its time stamp, which differs on every run.
fn without_time_stamp(line: &str) -> String {
    match line.split_once(' ') {
        Some((stamp, rest)) if stamp.starts_with("ts=") => rest.to_string(),
        _ => line.to_string(),
    }
}

#[tokio::test]
async fn a_bad_config_at_start_is_listed_as_check_config_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "recipients: {alice: \"+4915228817386\"}\nroutes:\n  - name: a\n    to: [nobody]\n  - to: [alice]\n",
    );
    let expected_listing = listing(
        &config,
        &[
            "line 4: routes[0].to[0]: unknown recipient, group or schedule \"nobody\"",
            "line 5: routes[1].name: missing: every route needs a name",
        ],
    );
    assert_eq!(text(&check_config(&config, &[]).stderr), expected_listing);

    let (status, stderr) = Service::refusing(&config, &[]).await;
    assert_eq!(status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert_eq!(format!("{}\n", lines[..3].join("\n")), expected_listing);
    assert_eq!(
        without_time_stamp(lines[3]),
        format!(
            "level=error target=alertmanager_sipgate::cli::serve message=\"cannot start: 2 problems in the \
             config file\" config={}",
            config.display()
        )
    );

    // In JSON every line is JSON, the problems too.
    let (status, stderr) = Service::refusing(&config, &["--log.format=json"]).await;
    assert_eq!(status.code(), Some(1));
    let logged: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| {
            let mut logged: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(logged["timestamp"].is_string(), "{logged}");
            logged.as_object_mut().unwrap().remove("timestamp");
            logged
        })
        .collect();
    let config_file = config.display().to_string();
    let problem = |problem: &str| {
        serde_json::json!({
            "level": "ERROR",
            "message": "config problem",
            "config": config_file,
            "problem": problem,
            "target": "alertmanager_sipgate::config",
        })
    };
    assert_eq!(
        logged,
        [
            serde_json::json!({
                "level": "ERROR",
                "message": "cannot start: 2 problems in the config file",
                "config": config_file,
                "problems": 2,
                "target": "alertmanager_sipgate::config",
            }),
            problem("line 4: routes[0].to[0]: unknown recipient, group or schedule \"nobody\""),
            problem("line 5: routes[1].name: missing: every route needs a name"),
        ]
    );
}

#[tokio::test]
async fn a_bad_config_on_reload_is_logged_one_problem_a_line() {
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::faults(&fake.uri());
    let mut service = Service::start(&config.yaml()).await;
    let mut broken = config.clone();
    broken.route("warnings").to = vec!["mallory".to_string()];
    broken.route("critical").max_segments = Some(0);
    let broken = broken.yaml();
    std::fs::write(&service.config, &broken).unwrap();
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let problems = [
        format!(
            "line {}: routes[0].max_segments: must be between 1 and 10, got 0",
            line_of("max_segments: 0")
        ),
        format!(
            "line {}: routes[1].to[0]: unknown recipient, group or schedule \"mallory\"",
            line_of("- mallory")
        ),
    ];

    let (status, answer) = service.reload().await;
    assert_eq!(status, 500);
    assert_eq!(
        answer,
        format!(
            "config reload failed, keeping the running config: invalid config file {}:\n  {}\n  {}\n",
            service.config.display(),
            problems[0],
            problems[1]
        )
    );
    let log = service.stop_and_read_log().await;
    let reload: Vec<String> = log
        .lines()
        .skip_while(|l| !l.contains("config reload failed"))
        .take(3)
        .map(without_time_stamp)
        .collect();
    let config = service.config.display();
    assert_eq!(
        reload,
        [
            format!(
                "level=error target=alertmanager_sipgate::config message=\"config reload failed; keeping \
                 the running config\" config={config} problems=2"
            ),
            format!(
                "level=error target=alertmanager_sipgate::config message=\"config problem\" \
                 config={config} problem=\"{}\"",
                problems[0]
            ),
            format!(
                "level=error target=alertmanager_sipgate::config message=\"config problem\" \
                 config={config} problem=\"{}\"",
                problems[1].replace('"', "\\\"")
            ),
        ]
    );
}

/// `test-sms ARGS` on `config` (YAML); its exit code, standard output and standard error.
fn test_sms(config: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "--config.file={}",
        write_config(dir.path(), config).display()
    );
    let out = run(&[&["test-sms", &config], args].concat());
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn test_sms_sends_the_text_to_a_recipient_through_sipgate() {
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).yaml();
    let (code, stdout, stderr) = test_sms(&config, &["--to", "alice", "--text", "Disk check"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "to: alice (+49152******86)\n\
         encoding: GSM-7  characters: 10  segments: 1\n\
         Disk check\n\n\
         sent to alice (+49152******86)\n"
    );
    assert_eq!(stderr, "");
    assert_eq!(
        sent_sms(&fake).await,
        [(ALICE.to_string(), "Disk check".to_string())]
    );
}

/// The host name as the kernel has it, as the default text names it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn test_sms_says_what_it_is_by_default() {
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).yaml();
    let (code, stdout, stderr) = test_sms(&config, &["--to", "bob"]);
    assert_eq!(code, Some(0), "{stderr}");
    let text = format!(
        "Test SMS from alertmanager-sipgate on {}: SMS delivery works.",
        host_name()
    );
    assert_eq!(
        stdout,
        format!(
            "to: bob (+49152******71)\n\
             encoding: GSM-7  characters: {}  segments: 1\n\
             {text}\n\n\
             sent to bob (+49152******71)\n",
            text.len()
        )
    );
    assert_eq!(sent_sms(&fake).await, [(BOB.to_string(), text)]);
}

#[tokio::test]
async fn test_sms_to_a_group_texts_each_member() {
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).yaml();
    let (code, stdout, stderr) = test_sms(&config, &["--to", "oncall", "--text", "Group check"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "to: group oncall: alice (+49152******86), bob (+49152******71)\n\
         encoding: GSM-7  characters: 11  segments: 1\n\
         Group check\n\n\
         sent to alice (+49152******86)\n\
         sent to bob (+49152******71)\n"
    );
    assert_eq!(
        sent_sms(&fake).await,
        [
            (ALICE.to_string(), "Group check".to_string()),
            (BOB.to_string(), "Group check".to_string())
        ]
    );
}

#[tokio::test]
async fn test_sms_to_a_schedule_texts_whoever_is_on_call() {
    let fake = FakeSipgate::new().start().await;
    let mut config = TestConfig::new(&fake.uri());
    // alice's rotation, with bob covering every date a test can run on.
    config.schedules.insert(
        "primary".to_string(),
        serde_json::json!({
            "time_zone": "UTC",
            "rotation": {"members": ["alice", "bob"], "shift": "1w", "start": "2026-01-05T09:00"},
            "overrides": [{"from": "2000-01-01T00:00", "to": "2999-01-01T00:00", "who": "bob"}]
        }),
    );
    let (code, stdout, stderr) =
        test_sms(&config.yaml(), &["--to", "primary", "--text", "On call?"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "to: schedule primary, on call now: bob (+49152******71)\n\
         encoding: GSM-7  characters: 8  segments: 1\n\
         On call?\n\n\
         sent to bob (+49152******71)\n"
    );
    assert_eq!(
        sent_sms(&fake).await,
        [(BOB.to_string(), "On call?".to_string())]
    );
}

#[tokio::test]
async fn test_sms_reports_a_refused_token_with_the_reason_and_what_to_do() {
    let fake = FakeSipgate::new()
        .answering(ResponseTemplate::new(401).set_body_string("Unauthorized"))
        .start()
        .await;
    let config = TestConfig::new(&fake.uri()).yaml();
    let (code, stdout, stderr) = test_sms(&config, &["--to", "alice", "--text", "Token check"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stdout,
        "to: alice (+49152******86)\n\
         encoding: GSM-7  characters: 11  segments: 1\n\
         Token check\n\n"
    );
    assert_eq!(
        stderr,
        "error: not sent to alice (+49152******86): Sipgate answered HTTP 401 (auth)\n\
         \x20 Sipgate's answer: Unauthorized\n\
         \x20 what to do: Sipgate rejected the credentials: check sipgate.token_id and the token \
         (personal access token, not the account password)\n"
    );
    assert_eq!(
        sent_sms(&fake).await,
        [(ALICE.to_string(), "Token check".to_string())]
    );
}

#[tokio::test]
async fn test_sms_reports_a_low_balance_with_sipgate_s_answer_masked() {
    let fake = FakeSipgate::new()
        .answering(
            ResponseTemplate::new(402)
                .set_body_string(format!("Insufficient funds to text {ALICE}")),
        )
        .start()
        .await;
    let config = TestConfig::new(&fake.uri()).yaml();
    let (code, _, stderr) = test_sms(&config, &["--to", "alice", "--text", "Balance check"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "error: not sent to alice (+49152******86): Sipgate answered HTTP 402 (payment)\n\
         \x20 Sipgate's answer: Insufficient funds to text +49*********86\n\
         \x20 what to do: the Sipgate account balance is too low: top it up\n"
    );
    assert_eq!(requests_to(&fake, "/v2/sessions/sms").await, 1);
}

#[tokio::test]
async fn test_sms_in_dry_run_prints_the_sms_and_sends_nothing() {
    let fake = FakeSipgate::new().start().await;
    let with_token = TestConfig::new(&fake.uri());
    let (code, stdout, stderr) = test_sms(
        &with_token.yaml(),
        &["--to", "oncall", "--text", "Dry check", "--dry-run"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "to: group oncall: alice (+49152******86), bob (+49152******71)\n\
         encoding: GSM-7  characters: 9  segments: 1\n\
         Dry check\n\n\
         dry-run: nothing was sent (--dry-run is set)\n"
    );
    let mut without_token = with_token.clone();
    without_token.sipgate.token_id = None;
    without_token.sipgate.token = None;
    let (code, stdout, stderr) = test_sms(
        &without_token.yaml(),
        &["--to", "alice", "--text", "Dry check"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "to: alice (+49152******86)\n\
         encoding: GSM-7  characters: 9  segments: 1\n\
         Dry check\n\n\
         dry-run: nothing was sent (the config has no Sipgate credentials)\n"
    );
    assert_eq!(fake.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn test_sms_refuses_an_unknown_name_and_lists_the_names_there_are() {
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).yaml();
    let (code, stdout, stderr) = test_sms(&config, &["--to", "carol"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(
            "error: unknown recipient, group or schedule \"carol\" for '--to <NAME>'; \
             recipients: alice, bob; groups: oncall; schedules: none\n"
        ),
        "{stderr}"
    );
    for number in [ALICE, BOB, "+49152******86", "+49152******71"] {
        assert!(!stderr.contains(number), "{stderr}");
    }
    // A number where a name belongs is not echoed either.
    let (code, _, stderr) = test_sms(&config, &["--to", ALICE]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: unknown recipient, group or schedule \"+49*********86\""),
        "{stderr}"
    );
    assert_eq!(fake.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn test_sms_cleans_the_text_and_refuses_one_over_the_budget_before_sending() {
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).yaml();
    let long = "a".repeat(161);
    let (code, stdout, stderr) = test_sms(&config, &["--to", "alice", "--text", &long]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(
            "error: the text needs 2 segments (GSM-7, 161 characters), more than \
             --max-segments 1\n"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = test_sms(&config, &["--to", "alice", "--text", "\u{7}\r\n \t"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: the text is empty without its control characters and spaces\n"),
        "{stderr}"
    );
    assert_eq!(fake.received_requests().await.unwrap().len(), 0);

    let (code, stdout, stderr) = test_sms(
        &config,
        &[
            "--to",
            "alice",
            "--text",
            "Disk\u{1b}[31m check\tnow\r\nok\u{7}",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\nDisk[31m check now\nok\n\n"), "{stdout}");
    let (code, _, stderr) = test_sms(
        &config,
        &["--to", "alice", "--text", &long, "--max-segments=2"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        sent_sms(&fake).await,
        [
            (ALICE.to_string(), "Disk[31m check now\nok".to_string()),
            (ALICE.to_string(), long)
        ]
    );
}

#[test]
fn test_sms_help_says_it_leaves_the_state_and_the_rate_limits_alone() {
    let help = text(&run(&["test-sms", "--help"]).stdout);
    for expected in [
        "does not open the state store",
        "rate limits",
        "SIPGATE_TOKEN",
    ] {
        assert!(help.contains(expected), "{expected:?} missing in:\n{help}");
    }
    assert!(
        text(&run(&["--help"]).stdout).contains("test-sms"),
        "test-sms missing in --help"
    );
}

#[test]
fn completion_scripts_register_the_command() {
    let out = run(&["completion", "bash"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("alertmanager-sipgate");
    std::fs::write(&script, &out.stdout).unwrap();
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p alertmanager-sipgate",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(registered.status.success(), "{}", text(&registered.stderr));
    let line = text(&registered.stdout);
    assert!(
        line.starts_with("complete ") && line.ends_with(" alertmanager-sipgate\n"),
        "{line}"
    );
    let zsh = text(&run(&["completion", "zsh"]).stdout);
    assert!(zsh.starts_with("#compdef alertmanager-sipgate\n"), "{zsh}");
    let fish = text(&run(&["completion", "fish"]).stdout);
    assert!(fish.contains("complete -c alertmanager-sipgate "), "{fish}");
    for script in [&text(&out.stdout), &zsh, &fish] {
        assert!(script.contains("test-sms"), "{script}");
    }
    // What bash offers after the command: the subcommands a user runs, not the one that only
    // the packaging runs (`man`).
    let offered = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(alertmanager-sipgate ''); COMP_CWORD=1; \
             COMP_LINE='alertmanager-sipgate '; COMP_POINT=${{#COMP_LINE}}; \
             _alertmanager__sipgate alertmanager-sipgate '' alertmanager-sipgate; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        text(&offered.stdout).split_whitespace().collect::<Vec<_>>(),
        [
            "-h",
            "-V",
            "--config.file",
            "--web.listen-address",
            "--log.level",
            "--log.format",
            "--dry-run",
            "--help",
            "--version",
            "check-config",
            "render",
            "oncall",
            "healthcheck",
            "test-sms",
            "completion",
            "help"
        ],
        "{}",
        text(&offered.stderr)
    );
    for script in [&zsh, &fish] {
        assert!(
            !script.contains("\"man\"") && !script.contains("'man:"),
            "{script}"
        );
    }
}

/// The subcommands `--help` lists.
fn subcommands() -> Vec<String> {
    let help = text(&run(&["--help"]).stdout);
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(ToString::to_string)
        .collect()
}

#[test]
fn man_page_names_every_subcommand() {
    let commands = subcommands();
    assert!(commands.len() >= 6, "{commands:?}");
    let out = run(&["man"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH alertmanager-sipgate 1 "), "{page}");
    for command in &commands {
        assert!(
            page.contains(&format!(
                "alertmanager\\-sipgate\\-{}",
                command.replace('-', "\\-")
            )),
            "{command} missing in:\n{page}"
        );
    }
    // The generator is not a subcommand users look for.
    assert!(!commands.contains(&"man".to_string()), "{commands:?}");
}

/// The revision `git` names for the checkout the tests run in, if they run in one.
fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn version_and_build_info_name_the_git_revision_of_the_build() {
    let version = text(&run(&["--version"]).stdout);
    let revision = version
        .strip_prefix(&format!(
            "alertmanager-sipgate {} (revision ",
            env!("CARGO_PKG_VERSION")
        ))
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("no revision in {version:?}"))
        .to_string();
    match git_revision() {
        Some(head) => assert!(
            revision == head || revision == format!("{head}-dirty"),
            "--version says {revision:?}, git says {head:?}"
        ),
        None => eprintln!("not in a git checkout: the revision {revision:?} is not compared"),
    }
    let fake = FakeSipgate::new().start().await;
    let service = Service::start(&TestConfig::new(&fake.uri()).yaml()).await;
    let metrics = metrics(&service.url).await;
    let line = format!(
        "alertmanager_sipgate_build_info{{revision=\"{revision}\",version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.contains(&line), "{line:?} missing in:\n{metrics}");
}

/// Where the Debian package and the systemd unit keep the config.
const PACKAGED_CONFIG: &str = "/etc/alertmanager-sipgate/config.yml";

#[test]
fn the_packaged_config_file_is_the_default() {
    for args in [
        &["--help"][..],
        &["check-config", "--help"],
        &["test-sms", "--help"],
    ] {
        let help = text(&run(args).stdout);
        assert!(
            help.contains(&format!("[default: {PACKAGED_CONFIG}]")),
            "{args:?}:\n{help}"
        );
    }
    let unit = std::fs::read_to_string(example("alertmanager-sipgate.service")).unwrap();
    assert!(
        unit.contains(&format!("--config.file={PACKAGED_CONFIG} ")),
        "{unit}"
    );
    if Path::new(PACKAGED_CONFIG).exists() {
        eprintln!("{PACKAGED_CONFIG} exists here: its absence is not tested");
        return;
    }
    let out = run(&["check-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: cannot read config file {PACKAGED_CONFIG}: No such file or directory (os error 2); \
             it is the default: pass --config.file=FILE for another\n"
        )
    );
}
