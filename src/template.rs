//! Handlebars templates that turn a recipient's alerts into SMS text. SMS are plain text, so HTML
//! escaping is off: an `&` in a label stays `&`.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use handlebars::{
    Context, Handlebars, Helper, HelperResult, JsonRender, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde::Serialize;

use crate::payload::{Alert, AlertExtras, AlertStatus, Labels, Notification, NotificationExtras};

/// Built-in templates, shipped in `templates/` and compiled into the binary.
const BUILT_INS: &[(&str, &str)] = &[
    ("default", include_str!("../templates/default.hbs")),
    ("compact", include_str!("../templates/compact.hbs")),
];

const DEFAULT_TIME_FORMAT: &str = "%b %d %H:%M %Z";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name:?} failed to render: {message}")]
    Render { name: String, message: String },
}

/// A template file that could not be read or compiled.
#[derive(Debug)]
pub struct TemplateFileError {
    pub file: String,
    pub message: String,
}

#[derive(Debug)]
pub struct Templates {
    registry: Handlebars<'static>,
}

/// What a template sees. Field names follow Alertmanager's own template data where one exists.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageData<'a> {
    pub status: AlertStatus,
    pub receiver: &'a str,
    pub group_key: &'a str,
    #[serde(rename = "externalURL")]
    pub external_url: &'a str,
    pub route: &'a str,
    pub recipient: &'a str,
    pub alerts: Vec<AlertData<'a>>,
    pub firing: Vec<AlertData<'a>>,
    pub resolved: Vec<AlertData<'a>>,
    /// Counts over all of the recipient's alerts, including those left out to fit the budget.
    pub num_firing: usize,
    pub num_resolved: usize,
    pub num_alerts: usize,
    /// Alerts left out of `alerts`, to fit the budget or by the sender; the SMS ends with
    /// `+N more` for them.
    pub omitted: usize,
    pub group_labels: &'a Labels,
    pub common_labels: &'a Labels,
    pub common_annotations: &'a Labels,
    pub truncated_alerts: u64,
    /// Grafana's `orgId`, `title`, `state` and `message`; the sender as `source`.
    #[serde(flatten)]
    pub extras: &'a NotificationExtras,
    pub source: &'static str,
    /// The render time, so that `since` is computed against one clock for the whole message.
    pub now: String,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct AlertData<'a> {
    pub status: AlertStatus,
    pub labels: &'a Labels,
    pub annotations: &'a Labels,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    pub generator_url: &'a str,
    pub fingerprint: &'a str,
    /// Grafana's `values`, `valueString`, `silenceURL`, `dashboardURL`, `panelURL`.
    #[serde(flatten)]
    pub extras: &'a AlertExtras,
}

fn rfc3339(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl<'a> AlertData<'a> {
    fn new(alert: &'a Alert) -> Self {
        AlertData {
            status: alert.status,
            labels: &alert.labels,
            annotations: &alert.annotations,
            starts_at: rfc3339(alert.starts_at),
            ends_at: rfc3339(alert.ends_at),
            generator_url: &alert.generator_url,
            fingerprint: &alert.fingerprint,
            extras: &alert.extras,
        }
    }
}

impl<'a> MessageData<'a> {
    /// The data for one SMS: `shown` are the alerts to render, `all` every alert of the recipient
    /// in this notification.
    pub fn new(
        notification: &'a Notification,
        route: &'a str,
        recipient: &'a str,
        shown: &[&'a Alert],
        all: &[&'a Alert],
        now: DateTime<Utc>,
    ) -> Self {
        let all_count = all.len();
        let num_firing = all
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count();
        let shown_count = shown.len();
        let shown: Vec<AlertData<'a>> = shown.iter().map(|a| AlertData::new(a)).collect();
        let by_status = |s: AlertStatus| shown.iter().filter(|a| a.status == s).cloned().collect();
        let firing: Vec<AlertData<'a>> = by_status(AlertStatus::Firing);
        let resolved = by_status(AlertStatus::Resolved);
        MessageData {
            status: if num_firing == 0 {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            },
            num_firing,
            num_resolved: all_count - num_firing,
            num_alerts: all_count,
            omitted: (all_count - shown_count).saturating_add(
                usize::try_from(notification.truncated_alerts).unwrap_or(usize::MAX),
            ),
            receiver: &notification.receiver,
            group_key: &notification.group_key,
            external_url: &notification.external_url,
            route,
            recipient,
            alerts: shown,
            firing,
            resolved,
            group_labels: &notification.group_labels,
            common_labels: &notification.common_labels,
            common_annotations: &notification.common_annotations,
            truncated_alerts: notification.truncated_alerts,
            extras: &notification.extras,
            source: notification.source.as_str(),
            now: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

impl Templates {
    /// Built-ins first, then every `*.hbs` in `dir` (a file named like a built-in replaces it).
    pub fn load(dir: Option<&Path>, time_zone: Tz) -> Result<Templates, Vec<TemplateFileError>> {
        let mut registry = Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper("time", Box::new(TimeHelper { time_zone }));
        registry.register_helper("since", Box::new(since_helper));
        registry.register_helper("upper", Box::new(upper));
        registry.register_helper("lower", Box::new(lower));
        registry.register_helper("truncate", Box::new(truncate));
        registry.register_helper("default", Box::new(default));
        registry.register_helper("join", Box::new(join));
        registry.register_helper("alertlist", Box::new(alertlist));
        let mut errors = Vec::new();
        for (name, text) in BUILT_INS {
            if let Err(e) = registry.register_template_string(name, text) {
                errors.push(TemplateFileError {
                    file: format!("built-in {name}"),
                    message: e.to_string(),
                });
            }
        }
        if let Some(dir) = dir
            && let Err(e) = load_dir(&mut registry, dir, &mut errors)
        {
            errors.push(TemplateFileError {
                file: dir.display().to_string(),
                message: e,
            });
        }
        if errors.is_empty() {
            Ok(Templates { registry })
        } else {
            Err(errors)
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.registry.has_template(name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .registry
            .get_templates()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    pub fn render(&self, name: &str, data: &MessageData<'_>) -> Result<String, TemplateError> {
        self.registry
            .render(name, data)
            .map_err(|e| TemplateError::Render {
                name: name.to_string(),
                message: e.to_string(),
            })
    }

    /// Renders `name` against a sample notification, so that helper misuse shows at load time.
    pub fn test_render(&self, name: &str) -> Result<(), TemplateError> {
        let sample = sample_notification();
        let alerts: Vec<&Alert> = sample.alerts.iter().collect();
        let data = MessageData::new(
            &sample,
            "sample-route",
            "sample-recipient",
            &alerts,
            &alerts,
            Utc::now(),
        );
        let text = self.render(name, &data)?;
        if text.trim().is_empty() {
            return Err(TemplateError::Render {
                name: name.to_string(),
                message:
                    "renders to empty text for a sample notification; an SMS must say something"
                        .to_string(),
            });
        }
        Ok(())
    }
}

fn load_dir(
    registry: &mut Handlebars<'static>,
    dir: &Path,
    errors: &mut Vec<TemplateFileError>,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read directory: {e}"))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "hbs"))
        .collect();
    files.sort();
    for path in files {
        let file = path.display().to_string();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            errors.push(TemplateFileError {
                file,
                message: "file name is not valid UTF-8".to_string(),
            });
            continue;
        };
        let name = name.to_string();
        let result = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|text| {
                registry
                    .register_template_string(&name, text)
                    .map_err(|e| e.to_string())
            });
        if let Err(message) = result {
            errors.push(TemplateFileError { file, message });
        }
    }
    Ok(())
}

fn sample_notification() -> Notification {
    let alert = |name: &str, instance: &str, status: AlertStatus, minutes: i64| {
        let starts = Utc::now() - chrono::Duration::minutes(minutes);
        Alert {
            status,
            labels: Labels::from([
                ("alertname".to_string(), name.to_string()),
                ("instance".to_string(), instance.to_string()),
                ("severity".to_string(), "critical".to_string()),
            ]),
            annotations: Labels::from([("summary".to_string(), format!("{name} on {instance}"))]),
            starts_at: Some(starts),
            ends_at: (status == AlertStatus::Resolved).then(Utc::now),
            generator_url: "http://prometheus.example/graph".to_string(),
            fingerprint: "0123456789abcdef".to_string(),
            extras: Default::default(),
        }
    };
    Notification {
        source: crate::payload::Source::Alertmanager,
        receiver: "sms".to_string(),
        status: AlertStatus::Firing,
        group_key: "{}:{alertname=\"DiskFull\"}".to_string(),
        group_labels: Labels::new(),
        common_labels: Labels::new(),
        common_annotations: Labels::new(),
        external_url: "http://alertmanager.example".to_string(),
        truncated_alerts: 0,
        extras: Default::default(),
        alerts: vec![
            alert("DiskFull", "db1:9100", AlertStatus::Firing, 5),
            alert("DiskFull", "db2:9100", AlertStatus::Firing, 90),
            alert("HighLatency", "web1:8080", AlertStatus::Resolved, 30),
        ],
    }
}

fn time_param(h: &Helper<'_>, index: usize) -> Result<Option<DateTime<Utc>>, RenderError> {
    let Some(param) = h.param(index) else {
        return Err(RenderErrorReason::ParamNotFoundForIndex("time", index).into());
    };
    let value = param.value();
    if value.is_null() || value.as_str() == Some("") {
        return Ok(None);
    }
    let text = value.as_str().ok_or_else(|| {
        RenderErrorReason::Other(format!("expected a time string, got {}", value.render()))
    })?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            RenderErrorReason::Other(format!("{text:?} is not an RFC 3339 time: {e}")).into()
        })
}

/// `{{time startsAt}}` or `{{time startsAt "%H:%M"}}`: a time in the configured zone.
struct TimeHelper {
    time_zone: Tz,
}

impl handlebars::HelperDef for TimeHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let Some(t) = time_param(h, 0)? else {
            return Ok(());
        };
        let format = h
            .param(1)
            .and_then(|p| p.value().as_str())
            .unwrap_or(DEFAULT_TIME_FORMAT);
        let items: Vec<chrono::format::Item<'_>> =
            chrono::format::StrftimeItems::new(format).collect();
        if items.contains(&chrono::format::Item::Error) {
            return Err(RenderErrorReason::Other(format!("invalid time format {format:?}")).into());
        }
        let local = t.with_timezone(&self.time_zone);
        out.write(&local.format_with_items(items.into_iter()).to_string())?;
        Ok(())
    }
}

handlebars::handlebars_helper!(upper: |s: str| s.to_uppercase());
handlebars::handlebars_helper!(lower: |s: str| s.to_lowercase());

/// `{{truncate annotations.summary 40}}`: at most 40 characters, the last three `...` if cut.
fn truncate_text(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(3);
    let cut: String = text.chars().take(keep).collect();
    format!("{}...", cut.trim_end())
}
handlebars::handlebars_helper!(truncate: |s: str, max: u64| {
    truncate_text(s, usize::try_from(max).unwrap_or(usize::MAX))
});

fn is_blank(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::String(s) => s.is_empty(),
        _ => false,
    }
}
// `{{default labels.instance "unknown"}}`: the value, or the fallback when it is missing or empty.
handlebars::handlebars_helper!(default: |value: Json, fallback: Json| {
    if is_blank(value) { fallback.clone() } else { value.clone() }
});

// `{{join list ", "}}`: the items of a list (or the values of a map) with a separator.
handlebars::handlebars_helper!(join: |items: Json, separator: str| {
    let parts: Vec<String> = match items {
        serde_json::Value::Array(a) => a.iter().map(|v| v.render()).collect(),
        serde_json::Value::Object(o) => o.values().map(|v| v.render()).collect(),
        serde_json::Value::Null => Vec::new(),
        other => vec![other.render()],
    };
    parts.join(separator)
});

/// `{{alertlist firing}}`: `DiskFull@db1:9100, HighLatency@web1` (separator optional, `, ` by
/// default); the instance part is left out for alerts without one.
fn alertlist(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let alerts = h
        .param(0)
        .map(|p| p.value())
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("alertlist", 0))?;
    let separator = h.param(1).and_then(|p| p.value().as_str()).unwrap_or(", ");
    let Some(alerts) = alerts.as_array() else {
        return Err(
            RenderErrorReason::Other("alertlist expects a list of alerts".to_string()).into(),
        );
    };
    for (i, alert) in alerts.iter().enumerate() {
        if i > 0 {
            out.write(separator)?;
        }
        let label = |name: &str| {
            alert
                .pointer(&format!("/labels/{name}"))
                .and_then(|v| v.as_str())
        };
        out.write(label("alertname").unwrap_or("alert"))?;
        if let Some(instance) = label("instance").filter(|i| !i.is_empty()) {
            out.write("@")?;
            out.write(instance)?;
        }
    }
    Ok(())
}

/// `{{since startsAt}}`: how long ago, compact (`45s`, `12m`, `3h5m`, `2d4h`), against `now`.
fn since_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let Some(t) = time_param(h, 0)? else {
        return Ok(());
    };
    let now = ctx
        .data()
        .get("now")
        .and_then(|v| v.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|n| n.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    out.write(&compact_duration((now - t).num_seconds().max(0)))?;
    Ok(())
}

pub fn compact_duration(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::parse_alertmanager;

    fn fixture(name: &str) -> Notification {
        let path = format!(
            "{}/tests/fixtures/alertmanager-0.25/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_alertmanager(&std::fs::read(path).unwrap()).unwrap()
    }

    fn render(templates: &Templates, name: &str, n: &Notification, now: &str) -> String {
        let alerts: Vec<&Alert> = n.alerts.iter().collect();
        let now = DateTime::parse_from_rfc3339(now)
            .unwrap()
            .with_timezone(&Utc);
        templates
            .render(
                name,
                &MessageData::new(n, "critical", "alice", &alerts, &alerts, now),
            )
            .unwrap()
    }

    fn built_ins(tz: Tz) -> Templates {
        Templates::load(None, tz).unwrap()
    }

    #[test]
    fn default_firing_from_real_capture() {
        let t = built_ins(chrono_tz::UTC);
        assert_eq!(
            render(
                &t,
                "default",
                &fixture("firing-diskfull.json"),
                "2026-11-25T09:15:00Z"
            ),
            "FIRING DiskFull db1:9100 since Nov 25 09:05 UTC: Disk on db1 is 95% full"
        );
    }

    #[test]
    fn default_resolved_from_real_capture() {
        let t = built_ins(chrono_tz::Europe::Berlin);
        assert_eq!(
            render(
                &t,
                "default",
                &fixture("resolved-diskfull.json"),
                "2026-11-25T09:15:00Z"
            ),
            "RESOLVED DiskFull db1:9100 at Nov 25 10:06 CET: Disk on db1 is 95% full"
        );
    }

    #[test]
    fn default_lists_several_alerts() {
        let mut n = fixture("firing-diskfull.json");
        let mut second = n.alerts[0].clone();
        second.labels.insert("instance".into(), "db2:9100".into());
        second
            .annotations
            .insert("summary".into(), "Disk on db2 is 97% full".into());
        let mut resolved = fixture("resolved-highlatency.json").alerts.remove(0);
        resolved.annotations.clear();
        n.alerts.push(second);
        n.alerts.push(resolved);
        let t = built_ins(chrono_tz::UTC);
        assert_eq!(
            render(&t, "default", &n, "2026-11-25T09:15:00Z"),
            "FIRING 2\n\
             DiskFull db1:9100 since Nov 25 09:05 UTC: Disk on db1 is 95% full\n\
             DiskFull db2:9100 since Nov 25 09:05 UTC: Disk on db2 is 97% full\n\
             RESOLVED 1\n\
             HighLatency web1:8080"
        );
    }

    #[test]
    fn no_html_escaping_and_no_evaluation_of_label_values() {
        let mut n = fixture("firing-diskfull.json");
        n.alerts[0]
            .annotations
            .insert("summary".into(), "a & b <c> \"d\" {{e}}".into());
        let t = built_ins(chrono_tz::UTC);
        let text = render(&t, "default", &n, "2026-11-25T09:15:00Z");
        assert!(text.ends_with(": a & b <c> \"d\" {{e}}"), "{text}");
    }

    #[test]
    fn user_templates_override_and_extend_built_ins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short.hbs"), "{{status}}: {{commonLabels.alertname}} for {{recipient}} via {{route}}, {{since (lookup alerts.0 \"startsAt\")}}").unwrap();
        let t = Templates::load(Some(dir.path()), chrono_tz::UTC).unwrap();
        assert!(t.has("default") && t.has("short"));
        assert_eq!(
            render(
                &t,
                "short",
                &fixture("firing-diskfull.json"),
                "2026-11-25T10:07:00Z"
            ),
            "firing: DiskFull for alice via critical, 1h1m"
        );
    }

    #[test]
    fn broken_templates_are_reported_by_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.hbs"), "{{#if status}}unclosed").unwrap();
        let errors = Templates::load(Some(dir.path()), chrono_tz::UTC).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].file.ends_with("bad.hbs"));
    }

    #[test]
    fn test_render_catches_helper_misuse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.hbs"), "{{time status}}").unwrap();
        let t = Templates::load(Some(dir.path()), chrono_tz::UTC).unwrap();
        let err = t.test_render("bad").unwrap_err().to_string();
        assert!(err.contains("not an RFC 3339 time"), "{err}");
        std::fs::write(dir.path().join("empty.hbs"), "{{nothing}}").unwrap();
        let t = Templates::load(Some(dir.path()), chrono_tz::UTC).unwrap();
        assert!(t.test_render("empty").is_err());
        assert!(t.test_render("default").is_ok());
        assert!(t.test_render("compact").is_ok());
    }

    /// Renders an inline template against the DiskFull capture.
    fn inline(template: &str, tz: Tz) -> Result<String, TemplateError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.hbs"), template).unwrap();
        let t = Templates::load(Some(dir.path()), tz).unwrap();
        let mut n = fixture("firing-diskfull.json");
        n.alerts[0]
            .labels
            .insert("team".into(), "db & <ops> {{x}}".into());
        let alerts: Vec<&Alert> = n.alerts.iter().collect();
        let now = DateTime::parse_from_rfc3339("2026-11-25T12:10:30Z")
            .unwrap()
            .with_timezone(&Utc);
        t.render(
            "t",
            &MessageData::new(&n, "critical", "alice", &alerts, &alerts, now),
        )
    }

    fn utc(template: &str) -> String {
        inline(template, chrono_tz::UTC).unwrap()
    }

    #[test]
    fn helpers() {
        let a = "{{#with (lookup alerts 0)}}";
        assert_eq!(
            utc(&format!("{a}{{{{time startsAt}}}}{{{{/with}}}}")),
            "Nov 25 09:05 UTC"
        );
        assert_eq!(
            utc(&format!(
                "{a}{{{{time startsAt \"%H:%M:%S\"}}}}{{{{/with}}}}"
            )),
            "09:05:47"
        );
        assert_eq!(
            inline(
                &format!("{a}{{{{time startsAt \"%d.%m. %H:%M %Z\"}}}}{{{{/with}}}}"),
                chrono_tz::Europe::Berlin
            )
            .unwrap(),
            "25.11. 10:05 CET"
        );
        assert_eq!(
            inline(
                &format!("{a}{{{{time startsAt}}}}{{{{/with}}}}"),
                chrono_tz::America::New_York
            )
            .unwrap(),
            "Nov 25 04:05 EST"
        );
        assert_eq!(
            utc(&format!("{a}{{{{since startsAt}}}}{{{{/with}}}}")),
            "3h4m"
        );
        assert_eq!(
            utc(&format!(
                "{a}[{{{{time endsAt}}}}][{{{{since endsAt}}}}]{{{{/with}}}}"
            )),
            "[][]"
        );
        assert_eq!(utc("{{upper status}} {{lower \"ABC\"}}"), "FIRING abc");
        assert_eq!(
            utc("{{truncate commonAnnotations.summary 10}}"),
            "Disk on..."
        );
        assert_eq!(
            utc("{{truncate commonAnnotations.summary 100}}"),
            "Disk on db1 is 95% full"
        );
        assert_eq!(
            utc(
                "{{default commonLabels.missing \"n/a\"}}|{{default commonLabels.instance \"n/a\"}}"
            ),
            "n/a|db1:9100"
        );
        assert_eq!(utc("{{join groupLabels \", \"}}"), "DiskFull");
        assert_eq!(
            utc("{{join commonLabels \"/\"}}"),
            "DiskFull/db1:9100/critical"
        );
        assert_eq!(utc("{{alertlist alerts}}"), "DiskFull@db1:9100");
        assert_eq!(utc("{{alertlist alerts \" | \"}}"), "DiskFull@db1:9100");
        assert_eq!(
            utc("{{numAlerts}} {{numFiring}} {{numResolved}} {{omitted}} {{route}} {{recipient}}"),
            "1 1 0 0 critical alice"
        );
    }

    #[test]
    fn missing_labels_render_empty_and_values_are_never_evaluated_or_escaped() {
        assert_eq!(
            utc("[{{commonLabels.nope}}][{{alerts.0.labels.nope}}]"),
            "[][]"
        );
        assert_eq!(utc("{{alerts.0.labels.team}}"), "db & <ops> {{x}}");
        assert_eq!(utc("{{{alerts.0.labels.team}}}"), "db & <ops> {{x}}");
    }

    #[test]
    fn helper_misuse_is_an_error() {
        assert!(inline("{{time status \"%Q%\"}}", chrono_tz::UTC).is_err());
        assert!(inline("{{alertlist status}}", chrono_tz::UTC).is_err());
        assert!(
            inline(
                "{{#with (lookup alerts 0)}}{{time startsAt \"%\"}}{{/with}}",
                chrono_tz::UTC
            )
            .is_err()
        );
    }

    #[test]
    fn compact_built_in_against_real_captures() {
        let t = built_ins(chrono_tz::UTC);
        let mut n = fixture("firing-highlatency.json");
        assert_eq!(
            render(&t, "compact", &n, "2026-11-25T09:15:00Z"),
            "FIRING HighLatency@web1:8080"
        );
        n.alerts.extend(fixture("resolved-diskfull.json").alerts);
        n.alerts
            .extend(fixture("firing-prometheus-rule.json").alerts);
        assert_eq!(
            render(&t, "compact", &n, "2026-11-25T09:15:00Z"),
            "FIRING HighLatency@web1:8080, AlwaysFiring; RESOLVED DiskFull@db1:9100"
        );
    }

    #[test]
    fn compact_durations() {
        assert_eq!(compact_duration(45), "45s");
        assert_eq!(compact_duration(720), "12m");
        assert_eq!(compact_duration(3600), "1h");
        assert_eq!(compact_duration(3 * 3600 + 300), "3h5m");
        assert_eq!(compact_duration(2 * 86_400 + 4 * 3600 + 59), "2d4h");
        assert_eq!(compact_duration(86_400 + 60), "1d");
    }
}
