//! Handlebars templates that turn a recipient's alerts into SMS text. SMS are plain text, so HTML
//! escaping is off: an `&` in a label stays `&`.

use std::collections::HashMap;
use std::path::Path;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use handlebars::{
    Context, Handlebars, Helper, HelperResult, JsonRender, Output, RenderContext, RenderError,
    RenderErrorReason,
};

use crate::model::alert::{
    Alert, AlertExtras, AlertStatus, Labels, Notification, NotificationExtras, pairs,
};
use crate::text::fields::{Field, Fields};

type Json = serde_json::Value;

/// Built-in templates, shipped in `templates/` and compiled into the binary.
const BUILT_INS: &[(&str, &str)] = &[
    ("default", include_str!("../../templates/default.hbs")),
    ("compact", include_str!("../../templates/compact.hbs")),
    (
        WATCHDOG_SILENT,
        include_str!("../../templates/watchdog_silent.hbs"),
    ),
    (
        WATCHDOG_BACK,
        include_str!("../../templates/watchdog_back.hbs"),
    ),
];

pub const DEFAULT_TIME_FORMAT: &str = "%b %d %H:%M %Z";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name:?} failed to render: {message}")]
    Render { name: String, message: String },
}

/// A template file that could not be read or compiled: `templates/short.hbs line 3: the block
/// {{#if}} opened on line 2 is never closed; close it with {{/if}}`.
#[derive(Debug)]
pub struct TemplateFileError {
    pub file: String,
    /// The line of the file, from 1, when the problem is on one.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for TemplateFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl TemplateFileError {
    /// A file as a whole: unreadable, or named so that it cannot be a template.
    fn of_file(file: String, message: String) -> Self {
        TemplateFileError {
            file,
            line: None,
            message,
        }
    }

    /// Handlebars refused `source`, the text of `file`.
    fn refused(file: String, source: &str, error: &handlebars::TemplateError) -> Self {
        let problem = crate::text::syntax::explain(source, error);
        TemplateFileError {
            file,
            line: problem.line,
            message: problem.message,
        }
    }
}

/// The built-in template used when a route's own template fails or renders nothing.
pub const FALLBACK: &str = "default";

/// The watchdog's SMS: the pipeline went silent, and it is back. Their data is a `WatchdogData`.
pub const WATCHDOG_SILENT: &str = "watchdog_silent";
pub const WATCHDOG_BACK: &str = "watchdog_back";

/// What the watchdog templates read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WatchdogData {
    /// How long the silence lasted, or has lasted: `12m`, `1h 5m`.
    pub silent_for: String,
    /// The last heartbeat before the silence, in `templates.time_zone`: `Nov 25 14:03 CET`; when
    /// none ever came, the time the service started watching.
    pub last_heartbeat: String,
    /// Whether any heartbeat came before the silence. When none did, the likelier cause is a
    /// Watchdog alert that is not routed here at all rather than a pipeline that went down.
    pub heartbeat_seen: bool,
}

#[derive(Debug)]
pub struct Templates {
    registry: Handlebars<'static>,
    /// What each template, together with the fallback, reads of the template data.
    fields: HashMap<String, Fields>,
    time_zone: Tz,
}

/// What a template sees, for one recipient's alerts. Built once per SMS: the fitting renders it
/// again with fewer alerts shown, and only the alert lists change between those renders. Field
/// names follow Alertmanager's own template data where one exists; only the fields the template
/// (or the built-in it falls back to) reads are built.
pub struct MessageData<'a> {
    context: Context,
    /// Every alert of the recipient in this notification, in the order the SMS lists them.
    alerts: &'a [&'a Alert],
    fields: Fields,
    /// `alerts`, `firing` and `resolved`, each built only if the template reads it.
    lists: [AlertList; 3],
    /// Alerts the sender or the input limits already left out.
    truncated: usize,
    /// How many of `alerts` the lists in the context show.
    shown: usize,
}

/// One of `alerts`, `firing`, `resolved`: the shown alerts with the list's status. Its data in
/// the context is kept between renders, and the data of alerts no longer shown waits in
/// `set_aside` in case the next render shows them again, so that however often the fitting
/// renders, each alert's data is built at most once per list.
struct AlertList {
    field: Field,
    /// `None` for `alerts`, which takes every status.
    status: Option<AlertStatus>,
    /// Data of the members right after the shown ones, the next one last.
    set_aside: Vec<Json>,
}

impl AlertList {
    fn new(field: Field, status: Option<AlertStatus>) -> Self {
        AlertList {
            field,
            status,
            set_aside: Vec::new(),
        }
    }
}

/// A JSON object that takes only the fields a template reads; values are made only for those.
struct Object {
    fields: Fields,
    map: serde_json::Map<String, Json>,
}

impl Object {
    fn new(fields: Fields) -> Self {
        Object {
            fields,
            map: serde_json::Map::new(),
        }
    }

    fn put(&mut self, field: Field, value: impl FnOnce() -> Json) {
        if self.fields.wants(field) {
            self.map.insert(field.name().to_string(), value());
        }
    }

    fn put_text(&mut self, field: Field, text: &str) {
        self.put(field, || Json::from(text));
    }

    /// RFC 3339, or `null` when not set (`endsAt` of a firing alert).
    fn put_time(&mut self, field: Field, time: Option<DateTime<Utc>>) {
        self.put(field, || {
            time.map_or(Json::Null, |t| {
                Json::from(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            })
        });
    }
}

fn labels(labels: &Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(name, value)| (name.clone(), Json::from(value.as_str())))
            .collect(),
    )
}

fn alert_data(alert: &Alert, fields: Fields) -> Json {
    let mut data = Object::new(fields);
    data.put(Field::Status, || Json::from(alert.status.as_str()));
    data.put(Field::Labels, || labels(&alert.labels));
    data.put(Field::Annotations, || labels(&alert.annotations));
    data.put_time(Field::StartsAt, alert.starts_at);
    data.put_time(Field::EndsAt, alert.ends_at);
    data.put(Field::GeneratorUrl, || {
        Json::from(alert.generator_url.as_str())
    });
    data.put(Field::Fingerprint, || {
        Json::from(alert.fingerprint.as_str())
    });
    let extras = &alert.extras;
    data.put(Field::Values, || {
        Json::Object(
            extras
                .values
                .iter()
                .map(|(id, value)| (id.clone(), Json::from(*value)))
                .collect(),
        )
    });
    data.put_text(Field::ValueString, &extras.value_string);
    data.put_text(Field::SilenceUrl, &extras.silence_url);
    data.put_text(Field::DashboardUrl, &extras.dashboard_url);
    data.put_text(Field::PanelUrl, &extras.panel_url);
    Json::Object(data.map)
}

impl<'a> MessageData<'a> {
    /// The data for an SMS about `alerts`, every alert of the recipient in this notification,
    /// all of them shown.
    pub fn new(
        notification: &Notification,
        route: &str,
        recipient: &str,
        alerts: &'a [&'a Alert],
        now: DateTime<Utc>,
        fields: Fields,
    ) -> Self {
        let num_firing = alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count();
        let status = if num_firing == 0 {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        };
        let mut data = Object::new(fields);
        data.put(Field::Status, || Json::from(status.as_str()));
        data.put(Field::Receiver, || {
            Json::from(notification.receiver.as_str())
        });
        data.put(Field::GroupKey, || {
            Json::from(notification.group_key.as_str())
        });
        data.put(Field::ExternalUrl, || {
            Json::from(notification.external_url.as_str())
        });
        data.put(Field::Route, || Json::from(route));
        data.put(Field::Recipient, || Json::from(recipient));
        // Counts over all of the recipient's alerts, including those left out to fit the budget.
        data.put(Field::NumFiring, || Json::from(num_firing));
        data.put(Field::NumResolved, || Json::from(alerts.len() - num_firing));
        data.put(Field::NumAlerts, || Json::from(alerts.len()));
        data.put(Field::GroupLabels, || labels(&notification.group_labels));
        data.put(Field::CommonLabels, || labels(&notification.common_labels));
        data.put(Field::CommonAnnotations, || {
            labels(&notification.common_annotations)
        });
        data.put(Field::TruncatedAlerts, || {
            Json::from(notification.truncated_alerts)
        });
        let extras = &notification.extras;
        data.put(Field::OrgId, || {
            extras.org_id.map_or(Json::Null, Json::from)
        });
        data.put_text(Field::Title, &extras.title);
        data.put_text(Field::State, &extras.state);
        data.put_text(Field::Message, &extras.message);
        data.put(Field::Source, || Json::from(notification.source.as_str()));
        // The render time, so that `since` is computed against one clock for the whole message.
        data.put(Field::Now, || {
            Json::from(now.to_rfc3339_opts(SecondsFormat::Secs, true))
        });
        let lists = [
            AlertList::new(Field::Alerts, None),
            AlertList::new(Field::Firing, Some(AlertStatus::Firing)),
            AlertList::new(Field::Resolved, Some(AlertStatus::Resolved)),
        ];
        for list in &lists {
            if fields.wants(list.field) {
                data.map
                    .insert(list.field.name().to_string(), Json::Array(Vec::new()));
            }
        }
        let mut data = MessageData {
            context: Context::from(Json::Object(data.map)),
            alerts,
            fields,
            lists,
            truncated: usize::try_from(notification.truncated_alerts).unwrap_or(usize::MAX),
            shown: 0,
        };
        data.build_lists(alerts.len());
        data
    }

    /// Shows the first `count` alerts in `alerts`, `firing` and `resolved`; the rest, and those
    /// the sender left out, count in `omitted` (the SMS ends with `+N more` for them). Showing
    /// what is already shown costs nothing, so the fitting's first render (all alerts, as built)
    /// does not build the lists again.
    pub fn show(&mut self, count: usize) {
        let count = count.min(self.alerts.len());
        if count != self.shown {
            self.build_lists(count);
        }
    }

    /// The lists the template reads, for the first `count` alerts shown.
    fn build_lists(&mut self, count: usize) {
        let Json::Object(map) = self.context.data_mut() else {
            return;
        };
        for list in &mut self.lists {
            if !self.fields.wants(list.field) {
                continue;
            }
            let Some(Json::Array(shown)) = map.get_mut(list.field.name()) else {
                continue;
            };
            let status = list.status;
            let members =
                (self.alerts[..count].iter()).filter(move |a| status.is_none_or(|s| a.status == s));
            let len = members.clone().count();
            while shown.len() > len {
                list.set_aside.extend(shown.pop());
            }
            for alert in members.skip(shown.len()) {
                let data = list
                    .set_aside
                    .pop()
                    .unwrap_or_else(|| alert_data(alert, self.fields));
                shown.push(data);
            }
        }
        if self.fields.wants(Field::Omitted) {
            let omitted = (self.alerts.len() - count).saturating_add(self.truncated);
            map.insert(Field::Omitted.name().to_string(), omitted.into());
        }
        self.shown = count;
    }
}

impl Templates {
    /// Built-ins first, then every `*.hbs` in `dir` (a file named like a built-in replaces it).
    pub fn load(dir: Option<&Path>, time_zone: Tz) -> Result<Templates, Vec<TemplateFileError>> {
        let mut registry = Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper("time", Box::new(TimeHelper::new(time_zone)));
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
                errors.push(TemplateFileError::refused(
                    format!("built-in {name}"),
                    text,
                    &e,
                ));
            }
        }
        if let Some(dir) = dir
            && let Err(e) = load_dir(&mut registry, dir, &mut errors)
        {
            errors.push(TemplateFileError::of_file(dir.display().to_string(), e));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut templates = Templates {
            registry,
            fields: HashMap::new(),
            time_zone,
        };
        templates.fields = templates.fields_read();
        Ok(templates)
    }

    /// What each template reads, with what the fallback reads. Checked on a sample: a template
    /// that renders differently with only those fields (a case the analysis missed) gets all.
    fn fields_read(&self) -> HashMap<String, Fields> {
        let templates = self.registry.get_templates();
        let fallback = templates.get(FALLBACK).map_or(Fields::ALL, Fields::of);
        templates
            .iter()
            .map(|(name, template)| {
                let fields = Fields::of(template).union(&fallback);
                let same = match (
                    self.render_sample(name, fields),
                    self.render_sample(name, Fields::ALL),
                ) {
                    (Ok(reduced), Ok(all)) => reduced == all,
                    _ => false,
                };
                (name.clone(), if same { fields } else { Fields::ALL })
            })
            .collect()
    }

    /// The fields `name` needs, for `MessageData::new`; all of them for a template that is not
    /// registered (its render fails anyway).
    pub fn fields(&self, name: &str) -> Fields {
        self.fields.get(name).copied().unwrap_or(Fields::ALL)
    }

    /// `templates.time_zone`, for times the service writes itself.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
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

    pub fn render(&self, name: &str, data: &MessageData) -> Result<String, TemplateError> {
        let failed = |message: String| TemplateError::Render {
            name: name.to_string(),
            message,
        };
        // Sized for a typical SMS, so that the text is not regrown piece by piece.
        let mut text = Vec::with_capacity(256);
        self.registry
            .render_with_context_to_write(name, &data.context, &mut text)
            .map_err(|e| failed(render_failure(name, &e)))?;
        String::from_utf8(text).map_err(|e| failed(e.to_string()))
    }

    /// Renders a watchdog template.
    pub fn render_watchdog(
        &self,
        name: &str,
        data: &WatchdogData,
    ) -> Result<String, TemplateError> {
        let failed = |message: String| TemplateError::Render {
            name: name.to_string(),
            message,
        };
        self.registry
            .render(name, data)
            .map_err(|e| failed(render_failure(name, &e)))
    }

    /// Renders `name` against a sample notification, so that helper misuse shows at load time.
    pub fn test_render(&self, name: &str) -> Result<(), TemplateError> {
        let text = self.render_sample(name, self.fields(name))?;
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

    fn render_sample(&self, name: &str, fields: Fields) -> Result<String, TemplateError> {
        // A fixed time, so that every render of the sample gives the same text.
        let now = DateTime::<Utc>::from_timestamp(1_764_064_800, 0).unwrap_or_default();
        let sample = sample_notification(now);
        let alerts: Vec<&Alert> = sample.alerts.iter().collect();
        let data = MessageData::new(
            &sample,
            "sample-route",
            "sample-recipient",
            &alerts,
            now,
            fields,
        );
        self.render(name, &data)
    }
}

/// Why a render of `name` failed, in the words of the template's author: `line 2: unknown helper
/// {{shout}}` rather than handlebars' `Error rendering "t" line 2, col 1: Helper not found shout`.
fn render_failure(name: &str, error: &RenderError) -> String {
    let reason = match error.reason() {
        RenderErrorReason::HelperNotFound(name) => format!("unknown helper {{{{{name}}}}}"),
        RenderErrorReason::ParamNotFoundForIndex(helper, index) => {
            format!("{{{{{helper}}}}} is missing its parameter {}", index + 1)
        }
        RenderErrorReason::PartialNotFound(name) | RenderErrorReason::TemplateNotFound(name) => {
            format!("unknown template {name:?}")
        }
        other => other.to_string(),
    };
    match (error.line_no, error.template_name.as_deref()) {
        (Some(line), Some(other)) if other != name => {
            format!("template {other:?} line {line}: {reason}")
        }
        (Some(line), _) => format!("line {line}: {reason}"),
        (None, _) => reason,
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
            errors.push(TemplateFileError::of_file(
                file,
                "file name is not valid UTF-8".to_string(),
            ));
            continue;
        };
        match std::fs::read_to_string(&path) {
            Err(e) => errors.push(TemplateFileError::of_file(
                file,
                format!("cannot read: {e}"),
            )),
            Ok(text) => {
                if let Err(e) = registry.register_template_string(name, &text) {
                    errors.push(TemplateFileError::refused(file, &text, &e));
                }
            }
        }
    }
    Ok(())
}

/// A synthetic notification at `now`: two firing alerts and a resolved one, with every field set
/// (Grafana's too), so that a field a template reads but is not built shows on it.
fn sample_notification(now: DateTime<Utc>) -> Notification {
    let alert = |name: &str, instance: &str, status: AlertStatus, minutes: i64| {
        let starts = now - chrono::Duration::minutes(minutes);
        Alert {
            status,
            labels: Labels::from([
                ("alertname".to_string(), name.to_string()),
                ("instance".to_string(), instance.to_string()),
                ("severity".to_string(), "critical".to_string()),
            ]),
            annotations: Labels::from([("summary".to_string(), format!("{name} on {instance}"))]),
            starts_at: Some(starts),
            ends_at: (status == AlertStatus::Resolved).then_some(now),
            generator_url: "http://prometheus.example/graph".to_string(),
            fingerprint: "0123456789abcdef".to_string(),
            extras: AlertExtras {
                values: [("A".to_string(), 95.0)].into(),
                value_string: "[ var='A' value=95 ]".to_string(),
                silence_url: "http://grafana.example/silence".to_string(),
                dashboard_url: "http://grafana.example/d/1".to_string(),
                panel_url: "http://grafana.example/d/1?viewPanel=2".to_string(),
            },
        }
    };
    Notification {
        source: crate::model::alert::Source::Alertmanager,
        receiver: "sms".to_string(),
        status: AlertStatus::Firing,
        group_key: "{}:{alertname=\"DiskFull\"}".to_string(),
        group_labels: pairs(&[("severity", "critical")]),
        common_labels: pairs(&[("severity", "critical")]),
        common_annotations: pairs(&[("runbook", "http://runbooks.example/disk")]),
        external_url: "http://alertmanager.example".to_string(),
        truncated_alerts: 0,
        extras: NotificationExtras {
            org_id: Some(1),
            title: "[FIRING:2] DiskFull".to_string(),
            state: "alerting".to_string(),
            message: "Disk almost full".to_string(),
        },
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
    /// `DEFAULT_TIME_FORMAT`, parsed once rather than for every time in every SMS.
    default_format: Vec<Item<'static>>,
}

impl TimeHelper {
    fn new(time_zone: Tz) -> Self {
        TimeHelper {
            time_zone,
            default_format: StrftimeItems::new(DEFAULT_TIME_FORMAT)
                .parse_to_owned()
                .unwrap_or_default(),
        }
    }
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
        let local = t.with_timezone(&self.time_zone);
        let text = match h.param(1).and_then(|p| p.value().as_str()) {
            None => local
                .format_with_items(self.default_format.iter())
                .to_string(),
            Some(format) => {
                let items = StrftimeItems::new(format).parse().map_err(|_| {
                    RenderErrorReason::Other(format!("invalid time format {format:?}"))
                })?;
                local.format_with_items(items.iter()).to_string()
            }
        };
        out.write(&text)?;
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
    use crate::ingest::parse_alertmanager;

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
                &MessageData::new(n, "critical", "alice", &alerts, now, templates.fields(name)),
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
    fn default_one_alert_leaves_out_what_it_lacks() {
        let t = built_ins(chrono_tz::UTC);
        let at = "2026-11-25T09:15:00Z";
        let mut firing = fixture("firing-diskfull.json");
        firing.alerts[0].labels.remove("instance");
        firing.alerts[0].annotations.clear();
        assert_eq!(
            render(&t, "default", &firing, at),
            "FIRING DiskFull since Nov 25 09:05 UTC"
        );
        let mut resolved = fixture("resolved-diskfull.json");
        resolved.alerts[0].ends_at = None;
        resolved.alerts[0].annotations.remove("summary");
        assert_eq!(
            render(&t, "default", &resolved, at),
            "RESOLVED DiskFull db1:9100"
        );
        resolved.alerts[0]
            .labels
            .insert("instance".to_string(), String::new());
        assert_eq!(render(&t, "default", &resolved, at), "RESOLVED DiskFull");
    }

    #[test]
    fn default_says_no_since_for_an_alert_without_start_time() {
        let t = built_ins(chrono_tz::UTC);
        let at = "2026-11-25T09:15:00Z";
        let mut firing = fixture("firing-diskfull.json");
        firing.alerts[0].starts_at = None;
        assert_eq!(
            render(&t, "default", &firing, at),
            "FIRING DiskFull db1:9100: Disk on db1 is 95% full"
        );
        firing.alerts[0].annotations.clear();
        assert_eq!(
            render(&t, "default", &firing, at),
            "FIRING DiskFull db1:9100"
        );
        let mut two = fixture("firing-diskfull.json");
        let mut second = two.alerts[0].clone();
        second.labels.insert("instance".into(), "db2:9100".into());
        second.starts_at = None;
        two.alerts.push(second);
        assert_eq!(
            render(&t, "default", &two, at),
            "FIRING 2\n\
             DiskFull db1:9100 since Nov 25 09:05 UTC: Disk on db1 is 95% full\n\
             DiskFull db2:9100: Disk on db1 is 95% full"
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
        assert_eq!(
            errors[0].to_string(),
            format!(
                "{} line 1: the block {{{{#if}}}} opened on line 1 is never closed; close it \
                 with {{{{/if}}}}",
                dir.path().join("bad.hbs").display()
            )
        );
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

    #[test]
    fn render_errors_say_the_line_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("shout", "{{status}}\n{{shout commonLabels.alertname}}"),
            ("each", "{{#each alerts}}\n{{#each}}x{{/each}}{{/each}}"),
            ("partial", "{{> nothere}}"),
            ("outer", "{{status}}\n{{> inner}}"),
            ("inner", "\n\n{{shout status}}"),
            ("time", "{{status}}\n\n{{time status}}"),
        ] {
            std::fs::write(dir.path().join(format!("{name}.hbs")), text).unwrap();
        }
        let t = Templates::load(Some(dir.path()), chrono_tz::UTC).unwrap();
        let failure = |name: &str| t.test_render(name).unwrap_err().to_string();
        assert_eq!(
            failure("shout"),
            "template \"shout\" failed to render: line 2: unknown helper {{shout}}"
        );
        assert_eq!(
            failure("each"),
            "template \"each\" failed to render: line 2: {{each}} is missing its parameter 1"
        );
        assert_eq!(
            failure("partial"),
            "template \"partial\" failed to render: line 1: unknown template \"nothere\""
        );
        assert_eq!(
            failure("outer"),
            "template \"outer\" failed to render: template \"inner\" line 3: unknown helper \
             {{shout}}"
        );
        assert_eq!(
            failure("time"),
            "template \"time\" failed to render: line 3: \"firing\" is not an RFC 3339 time: \
             premature end of input"
        );
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
            &MessageData::new(&n, "critical", "alice", &alerts, now, t.fields("t")),
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
    fn a_template_the_analysis_misreads_gets_every_field() {
        let dir = tempfile::tempdir().unwrap();
        // `len` counts the fields of the alert: fewer would be built than it reads.
        std::fs::write(
            dir.path().join("t.hbs"),
            "{{#with alerts.[0] as |a|}}{{len a}}{{/with}}",
        )
        .unwrap();
        std::fs::write(dir.path().join("u.hbs"), "{{alertlist firing}}").unwrap();
        let t = Templates::load(Some(dir.path()), chrono_tz::UTC).unwrap();
        assert_eq!(t.fields("t"), Fields::ALL);
        assert!(!t.fields("u").wants(Field::GroupKey));
        assert!(t.fields("u").wants(Field::Labels));
    }

    #[test]
    fn every_field_of_the_data_is_one_the_analysis_knows() {
        // A field built but missing from `Field::EVERY` would never be found in a template,
        // and every template would render it empty.
        let now = DateTime::<Utc>::from_timestamp(1_764_064_800, 0).unwrap();
        let sample = sample_notification(now);
        let alerts: Vec<&Alert> = sample.alerts.iter().collect();
        let data = MessageData::new(&sample, "r", "alice", &alerts, now, Fields::ALL);
        let top = data.context.data().as_object().unwrap();
        let alert = top["alerts"][0].as_object().unwrap();
        let mut built: Vec<&str> = top.keys().chain(alert.keys()).map(String::as_str).collect();
        built.sort_unstable();
        built.dedup();
        let mut known: Vec<&str> = Field::EVERY.iter().map(|f| f.name()).collect();
        known.sort_unstable();
        assert_eq!(built, known);
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
