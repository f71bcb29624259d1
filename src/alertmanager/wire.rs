//! The JSON of Alertmanager's API v2 (`api/v2/openapi.yaml`), as far as this client reads and
//! writes it; unknown fields are ignored, so later versions read the same.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AlertState, Silence, SilenceState};

/// `postableSilence`, without `annotations` (0.32 and later only).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PostableSilence<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    matchers: Vec<Matcher<'a>>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    created_by: &'a str,
    comment: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Matcher<'a> {
    name: &'a str,
    value: &'a str,
    is_regex: bool,
    is_equal: bool,
}

impl<'a> PostableSilence<'a> {
    /// `silence` as `id` (none for a new one), starting at `starts_at`.
    pub(super) fn new(silence: &'a Silence, id: Option<&'a str>, starts_at: DateTime<Utc>) -> Self {
        PostableSilence {
            id,
            matchers: silence
                .matchers
                .iter()
                .map(|(name, value)| Matcher {
                    name,
                    value,
                    is_regex: false,
                    is_equal: true,
                })
                .collect(),
            starts_at,
            ends_at: silence.ends_at,
            created_by: &silence.created_by,
            comment: &silence.comment,
        }
    }
}

/// The answer to a posted silence.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SilenceId {
    #[serde(rename = "silenceID")]
    pub(super) silence_id: String,
}

/// `gettableAlert`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GettableAlert {
    fingerprint: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    ends_at: Option<DateTime<Utc>>,
    status: AlertStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertStatus {
    state: String,
    #[serde(default)]
    silenced_by: Vec<String>,
    #[serde(default)]
    inhibited_by: Vec<String>,
}

/// The alerts that have not resolved at `now`: no end, or one still ahead.
pub(super) fn unresolved(alerts: Vec<GettableAlert>, now: DateTime<Utc>) -> Vec<AlertState> {
    alerts
        .into_iter()
        .filter(|a| a.ends_at.is_none_or(|ends_at| ends_at > now))
        .map(|a| AlertState {
            fingerprint: a.fingerprint,
            labels: a.labels,
            silenced_by: a.status.silenced_by,
            inhibited_by: a.status.inhibited_by,
            state: a.status.state,
        })
        .collect()
}

/// `gettableSilence`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GettableSilence {
    id: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    status: SilenceStatus,
}

impl GettableSilence {
    /// Its start, while it has not expired.
    pub(super) fn current_start(&self) -> Option<DateTime<Utc>> {
        (self.status.state != "expired").then_some(self.starts_at)
    }
}

#[derive(Deserialize)]
struct SilenceStatus {
    state: String,
}

/// The silences whose state is `active` (not `pending`, not `expired`).
pub(super) fn active(silences: Vec<GettableSilence>) -> Vec<SilenceState> {
    silences
        .into_iter()
        .filter(|s| s.status.state == "active")
        .map(|s| SilenceState {
            id: s.id,
            created_by: s.created_by,
            comment: s.comment,
            ends_at: s.ends_at,
        })
        .collect()
}

/// Whether an error answer is Alertmanager's `"silence not found"` (a JSON string).
pub(super) fn says_silence_not_found(body: &[u8]) -> bool {
    serde_json::from_slice::<String>(body).is_ok_and(|text| text.trim() == "silence not found")
}
