//! Properties that must hold for every input, not just the examples in the unit tests: webhook
//! bodies come from the network and label values from whoever wrote the alert rules, so parsing,
//! rendering and SMS fitting must neither panic nor break their size promises on odd text.

use std::borrow::Cow;
use std::sync::LazyLock;

use alertmanager_sipgate::config::Config;
use alertmanager_sipgate::ingest::parse_alertmanager;
use alertmanager_sipgate::pipeline;
use alertmanager_sipgate::routing::matcher::{MatchOp, Matcher, parse_matchers};
use alertmanager_sipgate::text::sms::{self, Encoding};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value, json};

/// Enough cases to shake out edge cases while keeping a debug `cargo test` quick.
/// `PROPTEST_CASES` still raises it for a deeper run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Text generators
// ---------------------------------------------------------------------------

/// Pieces known to stress templates, GSM-7 accounting and grapheme segmentation.
const TRICKY: &[&str] = &[
    "{{",
    "}}",
    "{{{",
    "}}}",
    "{{#each alerts}}",
    "{{/each}}",
    "{{> x}}",
    "{{else}}",
    "\n",
    "\r\n",
    "\r",
    "\0",
    "\t",
    "\u{b}",
    "\u{c}",
    "\\",
    "\"",
    "'",
    "`",
    "€",
    "…",
    "“",
    "”",
    "–",
    "é",
    "e\u{301}",
    "a\u{301}\u{302}\u{303}\u{304}",
    "ß",
    "😱",
    "👨\u{200d}👩\u{200d}👧",
    "🇩🇪",
    "\u{200d}",
    "\u{feff}",
    "\u{fe0f}",
    "\u{2028}",
    "\u{85}",
    "\u{a0}",
    "\u{3000}",
    "𝒳",
    "中文",
    "<b>&amp;</b>",
    " ",
    "  ",
    "...",
];

/// Characters whose repetition makes long texts in either encoding, or one huge grapheme cluster.
const REPEATED: &[&str] = &[
    "x", "é", "€", " ", "😱", "\u{301}", "word ", "\n", "e\u{301}",
];

/// One piece of text: an arbitrary scalar, a plain word, a tricky fragment or (weight `long`
/// against 11) a long run.
fn fragment(max_repeat: usize, long: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<char>().prop_map(String::from),
        4 => "[a-zA-Z0-9 _.:/-]{1,12}",
        3 => select(TRICKY).prop_map(str::to_owned),
        long => (select(REPEATED), 1..=max_repeat).prop_map(|(s, n)| s.repeat(n)),
    ]
}

/// Label-value-like text of up to a few KB.
fn text() -> BoxedStrategy<String> {
    prop::collection::vec(fragment(600, 1), 0..10)
        .prop_map(|parts| parts.concat())
        .boxed()
}

/// Text that mostly overflows a few segments, so that truncation has work to do.
fn long_text() -> BoxedStrategy<String> {
    prop_oneof![
        1 => text(),
        3 => prop::collection::vec(fragment(300, 6), 1..12).prop_map(|parts| parts.concat()),
    ]
    .boxed()
}

/// Shorter text, for places where a few KB only slows the test down (regex compilation).
fn short_text() -> BoxedStrategy<String> {
    prop::collection::vec(fragment(40, 1), 0..6)
        .prop_map(|parts| parts.concat())
        .boxed()
}

// ---------------------------------------------------------------------------
// Webhook generators
// ---------------------------------------------------------------------------

/// Label and annotation maps; mostly the names the built-in templates look at.
fn label_map() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => select(&["alertname", "instance", "severity", "summary", "description", "job"][..])
            .prop_map(str::to_owned),
        1 => text(),
    ];
    prop::collection::btree_map(key, text(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::from(v))).collect()))
}

/// Go's zero time (Alertmanager's "unset") or any instant from year 1 to 9999.
fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("0001-01-01T00:00:00Z".to_owned()),
        4 => (-62_135_596_800i64..=253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, ns)| {
            DateTime::from_timestamp(s, ns)
                .expect("the range is inside chrono's")
                .to_rfc3339()
        }),
        2 => (1_700_000_000i64..1_900_000_000).prop_map(|s| {
            DateTime::from_timestamp(s, 0)
                .expect("the range is inside chrono's")
                .to_rfc3339()
        }),
    ]
}

fn status() -> impl Strategy<Value = &'static str> {
    select(&["firing", "resolved"][..])
}

/// An alert with every field of the right type, so that it parses.
fn alert() -> impl Strategy<Value = Value> {
    (
        status(),
        label_map(),
        label_map(),
        prop::option::of(timestamp()),
        prop::option::of(timestamp()),
        short_text(),
        short_text(),
    )
        .prop_map(
            |(status, labels, annotations, starts, ends, url, fingerprint)| {
                let mut alert = json!({
                    "status": status,
                    "labels": labels,
                    "annotations": annotations,
                    "generatorURL": url,
                    "fingerprint": fingerprint,
                });
                if let Some(starts) = starts {
                    alert["startsAt"] = starts.into();
                }
                if let Some(ends) = ends {
                    alert["endsAt"] = ends.into();
                }
                alert
            },
        )
}

/// A webhook body shaped like Alertmanager's, every field of the right type.
fn webhook() -> impl Strategy<Value = Value> {
    (
        (status(), short_text(), short_text(), short_text()),
        prop::collection::vec(alert(), 0..6),
        (label_map(), label_map(), label_map()),
        prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
    )
        .prop_map(
            |(
                (status, receiver, group_key, external_url),
                alerts,
                (group_labels, common_labels, common_annotations),
                truncated,
            )| {
                json!({
                    "version": "4",
                    "receiver": receiver,
                    "status": status,
                    "alerts": alerts,
                    "groupLabels": group_labels,
                    "commonLabels": common_labels,
                    "commonAnnotations": common_annotations,
                    "externalURL": external_url,
                    "groupKey": group_key,
                    "truncatedAlerts": truncated,
                })
            },
        )
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        short_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(short_text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// JSON pointers to every value below the root, depth first.
fn pointers(value: &Value, here: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return,
    };
    for (key, child) in children {
        let pointer = format!("{here}/{key}");
        out.push(pointer.clone());
        pointers(child, &pointer, out);
    }
}

/// Replaces the value at `pointer` by `replacement`, or removes it when there is none.
fn mutate(body: &mut Value, pointer: &str, replacement: Option<Value>) {
    if let Some(new) = replacement {
        if let Some(slot) = body.pointer_mut(pointer) {
            *slot = new;
        }
        return;
    }
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    match body.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&key.replace("~1", "/").replace("~0", "~"));
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = key.parse::<usize>() {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// A webhook with one field dropped or swapped for arbitrary JSON: mostly rejected, sometimes
/// accepted (optional fields), never a panic.
fn mutated_webhook() -> impl Strategy<Value = Value> {
    (
        webhook(),
        any::<Index>(),
        prop::option::weighted(0.7, any_json()),
    )
        .prop_map(|(mut body, index, replacement)| {
            let mut all = Vec::new();
            pointers(&body, "", &mut all);
            let pointer = &all[index.index(all.len())];
            mutate(&mut body, pointer, replacement);
            body
        })
}

// ---------------------------------------------------------------------------
// Configs for rendering
// ---------------------------------------------------------------------------

/// Budgets 1..=3 with the default template, and the same with `compact` + `gsm_only`; built once,
/// since loading compiles the templates.
static CONFIGS: LazyLock<Vec<Config>> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut configs = Vec::new();
    for max_segments in 1..=3 {
        for extra in ["", "    template: compact\n    gsm_only: true\n"] {
            let path = dir.path().join(format!("config-{}.yml", configs.len()));
            let yaml = format!(
                "recipients: {{alice: \"+4915228817386\"}}\n\
                 routes:\n  - name: r\n    to: [alice]\n    max_segments: {max_segments}\n{extra}"
            );
            std::fs::write(&path, yaml).expect("write config");
            configs.push(Config::load_with_env(&path, &|_| None).expect("valid config"));
        }
    }
    configs
});

fn now() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800i64..=253_402_300_799)
        .prop_map(|s| DateTime::from_timestamp(s, 0).expect("the range is inside chrono's"))
}

/// Plans `body` (which must parse) against `config` and checks every SMS against its budget.
fn check_render(body: &[u8], config: &Config, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    let notification = parse_alertmanager(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let route = &config.routes[0];
    let plan = pipeline::plan(config, &notification, now);
    prop_assert_eq!(plan.unrouted, 0, "the only route matches everything");
    prop_assert!(plan.held.is_empty(), "resolved alerts are sent");
    prop_assert_eq!(
        plan.messages.len(),
        usize::from(!notification.alerts.is_empty())
    );
    for sms in &plan.messages {
        prop_assert!(!sms.text.is_empty(), "empty SMS");
        prop_assert!(!sms.text.trim().is_empty(), "blank SMS: {:?}", sms.text);
        prop_assert_eq!(sms.max_segments, route.max_segments);
        prop_assert!(sms.size.segments >= 1);
        prop_assert!(
            sms.size.segments <= sms.max_segments,
            "{} segments over a budget of {}: {:?}",
            sms.size.segments,
            sms.max_segments,
            sms.text
        );
        prop_assert_eq!(sms::measure(&sms.text), sms.size);
        if route.gsm_only {
            prop_assert_eq!(sms.size.encoding, Encoding::Gsm7, "{:?}", sms.text);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Matcher generators
// ---------------------------------------------------------------------------

fn op() -> impl Strategy<Value = MatchOp> {
    select(
        &[
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::RegexMatch,
            MatchOp::RegexNoMatch,
        ][..],
    )
}

fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        short_text().prop_filter("label names are not empty", |s| !s.is_empty()),
    ]
}

/// A value that is valid for `op`: anything for (in)equality, a compiling regex otherwise.
fn matcher_value(op: MatchOp) -> BoxedStrategy<String> {
    match op {
        MatchOp::Equal | MatchOp::NotEqual => short_text(),
        MatchOp::RegexMatch | MatchOp::RegexNoMatch => prop_oneof![
            2 => short_text().prop_map(|s| regex::escape(&s)),
            1 => select(
                &[
                    "", ".*", ".+", "ops|dev", "[0-9]+", "a.b", "(x|y)?z", r"\d{2,3}", r"\\",
                    r#"\""#, "[^\"]*", "é+|€", r"\n", "a{0}",
                ][..]
            )
            .prop_map(str::to_owned),
        ]
        .boxed(),
    }
}

fn matcher() -> impl Strategy<Value = Matcher> {
    (label_name(), op())
        .prop_flat_map(|(name, op)| (Just(name), Just(op), matcher_value(op)))
        .prop_map(|(name, op, value)| {
            Matcher::new(name, op, value).expect("generated matchers are valid")
        })
}

/// Bits of matcher syntax, valid or not.
const MATCHER_TOKENS: &[&str] = &[
    "{",
    "}",
    ",",
    "=",
    "!=",
    "=~",
    "!~",
    "!",
    "~",
    "\"",
    "'",
    "`",
    "\\",
    " ",
    "\\\"",
    "\\\\",
    "\\u00e9",
    "\\U0001F600",
    "\\x41",
    "\\n",
    "\\u",
    "\\U",
    "\\ud800",
    "foo",
    "bar_baz",
    "a:b",
    "é",
    "0",
    "ops|dev",
    ".*",
    "(",
    ")",
    "[",
    "]",
    "*",
    "+",
    "?",
    "|",
    "\n",
    "\t",
    "\u{feff}",
    "\u{200b}",
    "😱",
];

/// Label names in the forms the parser knows: classic, UTF-8 unquoted, quoted with escapes.
const MATCHER_NAMES: &[&str] = &[
    "foo",
    "severity",
    "a:b",
    "_x",
    "0abc",
    "é",
    r#""quoted name""#,
    r#""é\"\n""#,
];

/// Values, quoted and not, with escapes and characters that are syntax outside quotes.
const MATCHER_VALUES: &[&str] = &[
    r#""""#,
    "bar",
    r#""critical""#,
    r#""ops|dev""#,
    r#"".*""#,
    r#""a\"b""#,
    r#""[""#,
    r#""😱""#,
    r#""\u00e9\U0001F600""#,
    r#""\x41""#,
    r#""tab\there""#,
    r#""{}""#,
    r#""a,b""#,
];

/// A name, value or operator, mostly well-formed.
fn matcher_part(choices: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(choices).prop_map(str::to_owned),
        1 => select(MATCHER_TOKENS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ]
}

/// Strings built from matcher syntax, so the parser gets past its first token most of the time:
/// usually `name op value` lists with separators and braces, the odd part swapped for noise, and
/// sometimes token soup.
fn matcher_like() -> impl Strategy<Value = String> {
    let name = matcher_part(MATCHER_NAMES);
    let op = matcher_part(&["=", "!=", "=~", "!~", " = ", " !~ "]);
    let value = matcher_part(MATCHER_VALUES);
    let separator = prop_oneof![
        8 => select(&[",", ", ", " , "][..]),
        1 => select(&["", ",,", " "][..]),
    ];
    let triple = (name, op, value, separator).prop_map(|(n, o, v, s)| format!("{n}{o}{v}{s}"));
    let braces = prop_oneof![
        8 => select(&[("", ""), ("{", "}"), (" { ", " } ")][..]),
        1 => select(&[("{", ""), ("", "}"), ("{", "}}"), ("{{", "}")][..]),
    ];
    let structured = (braces, prop::collection::vec(triple, 1..4))
        .prop_map(|((open, close), items)| format!("{open}{}{close}", items.concat()));
    let soup = prop::collection::vec(
        prop_oneof![
            3 => select(MATCHER_TOKENS).prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
            1 => "[a-z]{1,6}",
        ],
        0..16,
    )
    .prop_map(|parts| parts.concat());
    prop_oneof![3 => structured, 1 => soup]
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_alertmanager(&body);
    }

    #[test]
    fn damaged_json_never_panics_the_parser(
        body in webhook(),
        cut in any::<Index>(),
        flip in any::<Index>(),
        byte in any::<u8>(),
    ) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        let _ = parse_alertmanager(&bytes[..cut.index(bytes.len() + 1)]);
        let mut flipped = bytes.clone();
        if !flipped.is_empty() {
            let i = flip.index(flipped.len());
            flipped[i] = byte;
        }
        let _ = parse_alertmanager(&flipped);
    }

    #[test]
    fn webhooks_with_a_wrong_field_never_panic_the_parser(body in mutated_webhook()) {
        let _ = parse_alertmanager(&serde_json::to_vec(&body).expect("serializable"));
    }

    #[test]
    fn any_webhook_shaped_like_alertmanagers_parses(body in webhook()) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        let parsed = parse_alertmanager(&bytes);
        prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
        let alerts = body["alerts"].as_array().map_or(0, Vec::len);
        prop_assert_eq!(parsed.map(|n| n.alerts.len()).ok(), Some(alerts));
    }

    #[test]
    fn every_sms_planned_fits_its_budget_and_is_not_empty(
        body in webhook(),
        config in 0..CONFIGS.len(),
        now in now(),
    ) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        check_render(&bytes, &CONFIGS[config], now)?;
    }

    #[test]
    fn accepted_damaged_webhooks_still_render_within_budget(
        body in mutated_webhook(),
        config in 0..CONFIGS.len(),
        now in now(),
    ) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        if parse_alertmanager(&bytes).is_ok() {
            check_render(&bytes, &CONFIGS[config], now)?;
        }
    }

    #[test]
    fn truncation_keeps_the_documented_promises(
        text in long_text(),
        max in 1..=sms::MAX_SEGMENTS_CAP,
        marker in prop_oneof![
            select(&["...", "…", ""][..]).prop_map(str::to_owned),
            short_text(),
        ],
    ) {
        let out = sms::truncate_to_segments(&text, max, &marker);
        let size = sms::measure(&out);
        prop_assert!(size.segments <= max, "{} segments: {:?}", size.segments, out);
        if !text.is_empty() {
            prop_assert!(!out.is_empty(), "nothing kept of {:?}", text);
        }
        if sms::measure(&text).segments <= max {
            prop_assert_eq!(&out, &text, "text that fits is returned unchanged");
        } else {
            // Either a prefix plus the marker, the prefix alone (marker too big) or the marker
            // alone (only whitespace would fit); the prefix has no trailing whitespace unless it
            // is all whitespace.
            let kept = out.strip_suffix(marker.as_str()).unwrap_or(&out);
            prop_assert!(text.starts_with(kept), "{:?} is not a prefix of {:?}", kept, text);
            prop_assert!(
                kept == kept.trim_end() || kept.trim().is_empty(),
                "trailing whitespace kept: {:?}",
                kept
            );
        }
        prop_assert_eq!(sms::truncate_to_segments(&text, 0, &marker), "");
    }

    #[test]
    fn shortening_always_fits_and_keeps_a_prefix(
        text in long_text(),
        max in 1..=sms::MAX_SEGMENTS_CAP,
        marker in select(&["...", "…", "...\n+3 more", "… +12 more"][..]),
    ) {
        let out = sms::shorten_with_marker(&text, max, marker);
        prop_assert!(sms::measure(&out).segments <= max, "{:?}", out);
        if !text.is_empty() {
            prop_assert!(!out.is_empty());
        }
        let kept = out.strip_suffix(marker).unwrap_or(&out);
        prop_assert!(text.starts_with(kept), "{:?} is not a prefix of {:?}", kept, text);
    }

    #[test]
    fn transliteration_is_always_gsm7(text in text()) {
        let out = sms::transliterate_to_gsm(&text);
        prop_assert!(sms::is_gsm7(&out), "{:?} -> {:?}", text, out);
        if sms::is_gsm7(&text) {
            prop_assert!(matches!(out, Cow::Borrowed(_)));
            prop_assert_eq!(out.as_ref(), text.as_str());
        }
        prop_assert_eq!(sms::measure(&out).encoding, Encoding::Gsm7);
    }

    #[test]
    fn displayed_matcher_parses_back_to_itself(m in matcher()) {
        let shown = m.to_string();
        prop_assert_eq!(parse_matchers(&shown), Ok(vec![m.clone()]), "shown as {}", shown);
    }

    #[test]
    fn displayed_matcher_list_parses_back_to_itself(
        list in prop::collection::vec(matcher(), 0..4),
        braces in any::<bool>(),
    ) {
        let joined = list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let shown = if braces { format!("{{{joined}}}") } else { joined };
        prop_assert_eq!(parse_matchers(&shown), Ok(list), "shown as {}", shown);
    }

    #[test]
    fn matcher_parser_never_panics_on_arbitrary_text(input in any::<String>()) {
        let _ = parse_matchers(&input);
    }

    #[test]
    fn whatever_the_matcher_parser_accepts_round_trips(input in matcher_like()) {
        if let Ok(matchers) = parse_matchers(&input) {
            for m in matchers {
                let shown = m.to_string();
                prop_assert_eq!(
                    parse_matchers(&shown),
                    Ok(vec![m.clone()]),
                    "{:?} gave {}",
                    input,
                    shown
                );
            }
        }
    }
}

/// The configs really differ in what the render property covers.
#[test]
fn render_configs_cover_budgets_and_gsm_only() {
    let budgets: Vec<(usize, bool, &str)> = CONFIGS
        .iter()
        .map(|c| {
            let r = &c.routes[0];
            (r.max_segments, r.gsm_only, r.template.as_str())
        })
        .collect();
    assert_eq!(
        budgets,
        [
            (1, false, "default"),
            (1, true, "compact"),
            (2, false, "default"),
            (2, true, "compact"),
            (3, false, "default"),
            (3, true, "compact"),
        ]
    );
}
