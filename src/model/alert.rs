//! Alerts and the notification that carries them: one model for every inbound format, with
//! the input limits that keep a hostile body cheap to handle.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Label and annotation sets: sorted, so that rendering and fingerprints are deterministic.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// Who posted the notification; it decides nothing in routing but shows in logs and templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Alertmanager,
    Grafana,
    Healthchecks,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Healthchecks => "healthchecks",
        }
    }
}

/// What Grafana adds to an alert; empty for other senders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertExtras {
    /// Query results by ref id; Grafana may send `null`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: BTreeMap<String, f64>,
    #[serde(default)]
    pub value_string: String,
    #[serde(default, rename = "silenceURL")]
    pub silence_url: String,
    #[serde(default, rename = "dashboardURL")]
    pub dashboard_url: String,
    #[serde(default, rename = "panelURL")]
    pub panel_url: String,
}

/// What Grafana adds to a notification; empty for other senders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationExtras {
    #[serde(default)]
    pub org_id: Option<i64>,
    #[serde(default)]
    pub title: String,
    /// `alerting` or `ok`.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub message: String,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Serialize and Deserialize are for the state store (an incident keeps its alerts), not the
/// wire: each sender's format is parsed in `ingest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub status: AlertStatus,
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: Option<DateTime<Utc>>,
    /// `None` while firing: Alertmanager sends the zero time `0001-01-01T00:00:00Z` then.
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: String,
    pub fingerprint: String,
    pub extras: AlertExtras,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub source: Source,
    pub receiver: String,
    pub status: AlertStatus,
    pub group_key: String,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: Labels,
    pub external_url: String,
    pub truncated_alerts: u64,
    pub extras: NotificationExtras,
    pub alerts: Vec<Alert>,
}

impl Notification {
    pub fn count(&self, status: AlertStatus) -> usize {
        self.alerts.iter().filter(|a| a.status == status).count()
    }

    /// Takes the alerts for which `pick` is true out of the notification.
    pub fn take_alerts(&mut self, pick: impl Fn(&Alert) -> bool) -> Vec<Alert> {
        let (taken, kept) = std::mem::take(&mut self.alerts).into_iter().partition(pick);
        self.alerts = kept;
        taken
    }
}

/// Alerts and notifications built by hand rather than parsed, for the unit tests of every layer.
impl Alert {
    /// A firing alert with `labels` and nothing else set.
    pub fn firing(labels: &[(&str, &str)]) -> Alert {
        Alert::new(AlertStatus::Firing, labels)
    }

    /// A resolved alert with `labels` and nothing else set.
    pub fn resolved(labels: &[(&str, &str)]) -> Alert {
        Alert::new(AlertStatus::Resolved, labels)
    }

    pub fn new(status: AlertStatus, labels: &[(&str, &str)]) -> Alert {
        Alert {
            status,
            labels: pairs(labels),
            annotations: Labels::new(),
            starts_at: None,
            ends_at: None,
            generator_url: String::new(),
            fingerprint: String::new(),
            extras: AlertExtras::default(),
        }
    }

    pub fn fingerprint(mut self, fingerprint: &str) -> Alert {
        self.fingerprint = fingerprint.to_string();
        self
    }

    pub fn annotation(mut self, name: &str, value: &str) -> Alert {
        self.annotations.insert(name.to_string(), value.to_string());
        self
    }

    pub fn starting(mut self, at: DateTime<Utc>) -> Alert {
        self.starts_at = Some(at);
        self
    }
}

/// A label or annotation set from pairs.
pub fn pairs(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

impl Notification {
    /// What Alertmanager would post for `alerts` to the receiver `sms`, with an empty group:
    /// firing while any alert fires.
    pub fn of(alerts: Vec<Alert>) -> Notification {
        let firing = alerts.iter().any(|a| a.status == AlertStatus::Firing);
        Notification {
            source: Source::Alertmanager,
            receiver: "sms".to_string(),
            status: if firing {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            },
            group_key: "{}:{}".to_string(),
            group_labels: Labels::new(),
            common_labels: Labels::new(),
            common_annotations: Labels::new(),
            external_url: String::new(),
            truncated_alerts: 0,
            extras: NotificationExtras::default(),
            alerts,
        }
    }
}

/// Longest label value kept; longer ones are cut, ending in `...`. Label values name things and
/// have no business being this long; the cap keeps rendering and matching cheap.
pub const MAX_LABEL_VALUE: usize = 1024;
/// Longest annotation value kept (summaries and descriptions may be wordy).
pub const MAX_ANNOTATION_VALUE: usize = 4096;

/// What `Notification::limit` cut, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub alerts: usize,
    pub values: usize,
}

impl Notification {
    /// Keeps at most `max_alerts` alerts (the rest count as truncated, like Alertmanager's own
    /// `max_alerts`, and show as `+N more`) and cuts overlong label and annotation values.
    pub fn limit(&mut self, max_alerts: usize) -> Cut {
        let mut cut = Cut::default();
        if self.alerts.len() > max_alerts {
            cut.alerts = self.alerts.len() - max_alerts;
            self.alerts.truncate(max_alerts);
            self.truncated_alerts = self.truncated_alerts.saturating_add(cut.alerts as u64);
        }
        let maps = self.alerts.iter_mut().flat_map(|a| {
            [
                (&mut a.labels, MAX_LABEL_VALUE),
                (&mut a.annotations, MAX_ANNOTATION_VALUE),
            ]
        });
        let shared = [
            (&mut self.group_labels, MAX_LABEL_VALUE),
            (&mut self.common_labels, MAX_LABEL_VALUE),
            (&mut self.common_annotations, MAX_ANNOTATION_VALUE),
        ];
        for (map, max) in maps.chain(shared) {
            for value in map.values_mut() {
                if shorten(value, max) {
                    cut.values += 1;
                }
            }
        }
        cut
    }
}

/// Cuts `value` to `max` characters, the last three `...`; whether it had to.
fn shorten(value: &mut String, max: usize) -> bool {
    match value.char_indices().nth(max) {
        None => false,
        Some(_) => {
            let keep = value
                .char_indices()
                .nth(max.saturating_sub(3))
                .map_or(value.len(), |(i, _)| i);
            value.truncate(keep);
            value.push_str("...");
            true
        }
    }
}
