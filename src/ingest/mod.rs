//! Inbound webhook bodies (Alertmanager v4, Grafana, Healthchecks.io), turned into the one
//! `Notification` model that the rest of the code works on.

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use crate::model::alert::{
    Alert, AlertExtras, AlertStatus, Labels, Notification, NotificationExtras, Source,
};
use crate::redact;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON, or a field has the wrong type or is missing; `path` names the field.
    #[error("invalid payload at `{path}`: {message}")]
    Invalid { path: String, message: String },
}

/// Alertmanager webhook v4 as sent by 0.21 to 0.34; fields added later (`notification_reason`,
/// `routeLabels`) and unknown ones are ignored so newer Alertmanagers keep working. Grafana's
/// webhook (version "1") is the same with a few fields more.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookBody {
    #[serde(default)]
    receiver: String,
    status: AlertStatus,
    alerts: Vec<WebhookAlert>,
    #[serde(default)]
    group_labels: Labels,
    #[serde(default)]
    common_labels: Labels,
    #[serde(default)]
    common_annotations: Labels,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
    #[serde(default)]
    version: String,
    #[serde(flatten)]
    extras: NotificationExtras,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: AlertStatus,
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    #[serde(default)]
    starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(flatten)]
    extras: AlertExtras,
}

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`, as Alertmanager and Grafana send it) marks "not
/// set"; anything before year 2 is treated as that, so that templates see no time at all.
fn real_time(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.filter(|t| t.year() > 1)
}

/// Parses an Alertmanager webhook body. Content-Type is not looked at: the body must be JSON.
pub fn parse_alertmanager(body: &[u8]) -> Result<Notification, PayloadError> {
    let parsed: WebhookBody = deserialize_json(body)?;
    let grafana = parsed.version == "1" || parsed.extras != NotificationExtras::default();
    Ok(Notification {
        source: if grafana {
            Source::Grafana
        } else {
            Source::Alertmanager
        },
        receiver: parsed.receiver,
        status: parsed.status,
        group_key: parsed.group_key,
        group_labels: parsed.group_labels,
        common_labels: parsed.common_labels,
        common_annotations: parsed.common_annotations,
        external_url: parsed.external_url,
        truncated_alerts: parsed.truncated_alerts,
        extras: parsed.extras,
        alerts: parsed
            .alerts
            .into_iter()
            .map(|a| Alert {
                status: a.status,
                labels: a.labels,
                annotations: a.annotations,
                starts_at: real_time(a.starts_at),
                ends_at: real_time(a.ends_at),
                generator_url: a.generator_url,
                fingerprint: a.fingerprint,
                extras: a.extras,
            })
            .collect(),
    })
}

/// The JSON body the README tells Healthchecks.io users to configure; `$NAME_JSON` and `$JSON`
/// arrive as JSON, the other placeholders as strings.
#[derive(Deserialize)]
struct HealthchecksBody {
    status: CheckStatus,
    name: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    now: Option<DateTime<Utc>>,
    #[serde(default)]
    check: Option<HealthchecksCheck>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum CheckStatus {
    Down,
    Up,
}

#[derive(Deserialize)]
struct HealthchecksCheck {
    #[serde(default)]
    desc: Option<String>,
}

/// Parses without tracking where in the document it is, which would slow every parse down; only
/// a body that fails is parsed again to name the path of the problem.
fn deserialize_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|e| {
        let mut de = serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            // The error quotes the sender's values; it is logged and answered, so numbers in it
            // are masked.
            Err(located) => PayloadError::Invalid {
                path: redact::phone_numbers(&located.path().to_string()).into_owned(),
                message: redact::phone_numbers(&located.inner().to_string()).into_owned(),
            },
            // Only trailing content after a valid document gets here.
            Ok(_) => PayloadError::Invalid {
                path: ".".to_string(),
                message: redact::phone_numbers(&e.to_string()).into_owned(),
            },
        }
    })
}

/// A Healthchecks.io check that went down (firing) or up (resolved), as an alert with the labels
/// `alertname` (check name), `check_slug`, `tags` and `source="healthchecks"`.
pub fn parse_healthchecks(body: &[u8]) -> Result<Notification, PayloadError> {
    let hc: HealthchecksBody = deserialize_json(body)?;
    let status = match hc.status {
        CheckStatus::Down => AlertStatus::Firing,
        CheckStatus::Up => AlertStatus::Resolved,
    };
    let identity = [&hc.code, &hc.slug, &hc.name]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    let labels = Labels::from([
        ("alertname".to_string(), hc.name.clone()),
        ("check_slug".to_string(), hc.slug),
        ("tags".to_string(), hc.tags),
        ("source".to_string(), "healthchecks".to_string()),
    ]);
    let mut annotations = Labels::new();
    if let Some(desc) = hc.check.and_then(|c| c.desc).filter(|d| !d.is_empty()) {
        annotations.insert("summary".to_string(), desc);
    }
    let alert = Alert {
        status,
        labels: labels.clone(),
        annotations: annotations.clone(),
        starts_at: real_time(hc.now).filter(|_| status == AlertStatus::Firing),
        ends_at: real_time(hc.now).filter(|_| status == AlertStatus::Resolved),
        generator_url: String::new(),
        fingerprint: identity.clone(),
        extras: AlertExtras::default(),
    };
    Ok(Notification {
        source: Source::Healthchecks,
        receiver: "healthchecks".to_string(),
        status,
        group_key: format!("healthchecks:{identity}"),
        group_labels: Labels::from([("alertname".to_string(), hc.name)]),
        common_labels: labels,
        common_annotations: annotations,
        external_url: String::new(),
        truncated_alerts: 0,
        extras: NotificationExtras::default(),
        alerts: vec![alert],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::model::alert::{Cut, MAX_ANNOTATION_VALUE, MAX_LABEL_VALUE};

    const FIRING: &[u8] =
        include_bytes!("../../tests/fixtures/alertmanager-0.25/firing-diskfull.json");
    const RESOLVED: &[u8] =
        include_bytes!("../../tests/fixtures/alertmanager-0.25/resolved-diskfull.json");

    #[test]
    fn a_number_quoted_by_a_parse_error_is_masked() {
        let body =
            br#"{"status":"firing","alerts":[{"status":"firing","labels":{"to":4915112345678}}]}"#;
        let error = parse_alertmanager(body).unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid payload at `alerts[0].labels.to`: invalid type: integer `49*********78`, expected a string at line 1 column 76"
        );
    }
    const PROMETHEUS: &[u8] =
        include_bytes!("../../tests/fixtures/alertmanager-0.25/firing-prometheus-rule.json");

    #[test]
    fn parses_real_firing_capture() {
        let n = parse_alertmanager(FIRING).unwrap();
        assert_eq!(n.receiver, "sms");
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(n.group_key, "{}:{alertname=\"DiskFull\"}");
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert_eq!(a.labels["instance"], "db1:9100");
        assert_eq!(a.annotations["summary"], "Disk on db1 is 95% full");
        assert_eq!(a.fingerprint, "efb0c6c488e007da");
        assert_eq!(
            a.starts_at
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "2026-11-25T09:05:47.696440675Z"
        );
        assert_eq!(a.ends_at, None, "zero endsAt means still firing");
    }

    #[test]
    fn parses_resolved_capture_with_end_time() {
        let n = parse_alertmanager(RESOLVED).unwrap();
        assert_eq!(n.status, AlertStatus::Resolved);
        assert_eq!(
            n.alerts[0]
                .ends_at
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "2026-11-25T09:06:02.696440675Z"
        );
    }

    #[test]
    fn unescapes_go_html_escapes() {
        let n = parse_alertmanager(PROMETHEUS).unwrap();
        assert!(n.alerts[0].generator_url.contains('&'));
        assert!(!n.alerts[0].generator_url.contains("\\u0026"));
    }

    #[test]
    fn accepts_newer_fields_and_missing_optional_ones() {
        let body = br#"{"status":"firing","notification_reason":"new alerts added","routeLabels":{},
            "alerts":[{"status":"firing","labels":{"alertname":"X"},"startsAt":"2024-05-14T08:41:27Z"}]}"#;
        let n = parse_alertmanager(body).unwrap();
        assert_eq!(n.alerts[0].labels["alertname"], "X");
        assert_eq!(n.receiver, "");
    }

    #[test]
    fn names_the_missing_or_wrong_field() {
        let err = parse_alertmanager(br#"{"status":"firing"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid payload at `.`: missing field `alerts` at line 1 column 19"
        );
        let err = parse_alertmanager(
            br#"{"status":"firing","alerts":[{"status":"burning","labels":{}}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid payload at `alerts[0].status`: unknown variant `burning`"),
            "{err}"
        );
        let err = parse_alertmanager(
            br#"{"status":"firing","alerts":[{"status":"firing","labels":{"a":1}}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid payload at `alerts[0].labels.a`"),
            "{err}"
        );
    }

    #[test]
    fn limits_alerts_and_value_lengths() {
        let mut n = parse_alertmanager(FIRING).unwrap();
        n.alerts = vec![n.alerts[0].clone(); 5];
        n.alerts[1]
            .labels
            .insert("long".into(), "é".repeat(MAX_LABEL_VALUE + 1));
        n.alerts[2]
            .annotations
            .insert("summary".into(), "x".repeat(MAX_ANNOTATION_VALUE));
        let cut = n.limit(3);
        assert_eq!(
            cut,
            Cut {
                alerts: 2,
                values: 1
            }
        );
        assert_eq!(n.alerts.len(), 3);
        assert_eq!(n.truncated_alerts, 2);
        let long = &n.alerts[1].labels["long"];
        assert_eq!(long.chars().count(), MAX_LABEL_VALUE);
        assert!(long.ends_with("é..."));
        assert_eq!(
            n.alerts[2].annotations["summary"].len(),
            MAX_ANNOTATION_VALUE
        );
    }

    #[test]
    fn deep_nesting_never_overflows_the_stack() {
        let nested = |prefix: &[u8], suffix: &[u8]| {
            let mut body = prefix.to_vec();
            body.extend(std::iter::repeat_n(b'[', 100_000));
            body.extend(std::iter::repeat_n(b']', 100_000));
            body.extend_from_slice(suffix);
            body
        };
        // Even in an unknown field it is refused once it passes serde_json's recursion limit.
        let err = parse_alertmanager(&nested(br#"{"status":"firing","alerts":[],"x":"#, b"}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("recursion limit exceeded"), "{err}");
        let err = parse_alertmanager(&nested(br#"{"status":"firing","alerts":"#, b"}"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid payload at `alerts[0]"), "{err}");
    }

    #[test]
    fn grafana_payloads_are_recognised_with_their_extra_fields() {
        let body = include_bytes!("../../tests/fixtures/grafana/firing.json");
        let n = parse_alertmanager(body).unwrap();
        assert_eq!(n.source, Source::Grafana);
        assert_eq!(n.extras.org_id, Some(1));
        assert_eq!(n.extras.state, "alerting");
        assert_eq!(n.extras.title, "[FIRING:1] HighCPU Infra (web-1 critical)");
        let a = &n.alerts[0];
        assert_eq!(
            a.extras.values,
            BTreeMap::from([("A".into(), 97.3), ("C".into(), 1.0)])
        );
        assert!(a.extras.silence_url.contains("&matcher="));
        assert_eq!(
            a.starts_at.unwrap().to_rfc3339(),
            "2024-05-14T08:41:27+00:00",
            "the +02:00 offset is converted"
        );
        let resolved = parse_alertmanager(include_bytes!(
            "../../tests/fixtures/grafana/resolved-null-values.json"
        ))
        .unwrap();
        assert!(resolved.alerts[0].extras.values.is_empty(), "values: null");
        assert_eq!(resolved.status, AlertStatus::Resolved);
    }

    #[test]
    fn healthchecks_down_and_up() {
        let down = br#"{"source": "healthchecks", "status": "down", "name": "nightly \"backup\"", "slug": "nightly-backup", "code": "5f1c2a7e-0d1b-4a57-9b43-2a6b8c1e9f10", "tags": "prod db", "now": "2024-05-14T08:41:27+00:00", "check": {"name": "nightly \"backup\"", "desc": "pg_dump to S3", "grace": 3600}}"#;
        let n = parse_healthchecks(down).unwrap();
        assert_eq!(n.source, Source::Healthchecks);
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(
            n.group_key,
            "healthchecks:5f1c2a7e-0d1b-4a57-9b43-2a6b8c1e9f10"
        );
        let a = &n.alerts[0];
        assert_eq!(a.labels["alertname"], "nightly \"backup\"");
        assert_eq!(a.labels["check_slug"], "nightly-backup");
        assert_eq!(a.labels["tags"], "prod db");
        assert_eq!(a.labels["source"], "healthchecks");
        assert_eq!(a.annotations["summary"], "pg_dump to S3");
        assert_eq!(
            a.starts_at.unwrap().to_rfc3339(),
            "2024-05-14T08:41:27+00:00"
        );
        let up = parse_healthchecks(br#"{"status":"up","name":"nightly"}"#).unwrap();
        assert_eq!(up.alerts[0].status, AlertStatus::Resolved);
        assert_eq!(up.group_key, "healthchecks:nightly");
        let err = parse_healthchecks(br#"{"status":"sideways","name":"x"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid payload at `status`: unknown variant `sideways`"),
            "{err}"
        );
        assert!(
            parse_healthchecks(br#"{"status":"down"}"#)
                .unwrap_err()
                .to_string()
                .contains("missing field `name`")
        );
    }

    #[test]
    fn rejects_trailing_garbage_and_truncated_json() {
        assert!(parse_alertmanager(b"{\"status\":\"firing\",\"alerts\":[]} x").is_err());
        assert!(parse_alertmanager(&FIRING[..100]).is_err());
        assert!(parse_alertmanager(b"").is_err());
    }
}
