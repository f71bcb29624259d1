//! The notification bodies tests post: Alertmanager's own captures, and variations of them.

use std::path::Path;

/// A notification body as Alertmanager 0.25 posted it, byte for byte.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alertmanager-0.25")
        .join(name);
    std::fs::read(path).unwrap()
}

/// `firing-diskfull.json` with its fingerprint and instance made unique by `n`: a new alert
/// each time, as in a storm.
pub fn diskfull(n: usize) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("firing-diskfull.json")).unwrap();
    for alert in body["alerts"].as_array_mut().unwrap() {
        alert["fingerprint"] = format!("{n:016x}").into();
        alert["labels"]["instance"] = format!("db{n}:9100").into();
    }
    body["groupKey"] = format!("{{}}:{{alertname=\"DiskFull\",n=\"{n}\"}}").into();
    serde_json::to_vec(&body).unwrap()
}

/// `payload` (an Alertmanager notification) with NUL, BEL, ESC, DEL, a tab, CR LF and the C1
/// characters NEL (U+0085) and CSI (U+009B) in its first alert's alertname, instance and summary,
/// as exporters may put them there.
pub fn with_control_characters(payload: &[u8]) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_slice(payload).unwrap();
    let alert = &mut body["alerts"][0];
    alert["labels"]["alertname"] = "Disk\u{0}Full".into();
    alert["labels"]["instance"] = "db1\u{7}:9100".into();
    alert["annotations"]["summary"] =
        "Disk\u{1b}[31m on db1\u{85} is\u{9b} 95%\tfull\r\nnow\u{7f}".into();
    serde_json::to_vec(&body).unwrap()
}

/// The summary of `with_control_characters` as it is sent.
pub const SUMMARY_WITHOUT_CONTROL_CHARACTERS: &str = "Disk[31m on db1 is 95% full\nnow";

/// Label and annotation values that would run, break out of their element or be followed if a
/// page put them in unescaped, and template syntax that must stay text.
pub const HOSTILE_ALERTNAME: &str = "<script>alert(1)</script>";
pub const HOSTILE_INSTANCE: &str = "\"db1\" 'x' javascript:alert(1)";
pub const HOSTILE_SUMMARY: &str =
    "</section><img src=x onerror=alert(1)> {{ layout.title }} {% if true %}";

/// `payload` (an Alertmanager notification) with the hostile values above as its alertname
/// (of the alerts and of the group), instance and summary.
pub fn with_hostile_labels(payload: &[u8]) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_slice(payload).unwrap();
    for alert in body["alerts"].as_array_mut().unwrap() {
        alert["labels"]["alertname"] = HOSTILE_ALERTNAME.into();
        alert["labels"]["instance"] = HOSTILE_INSTANCE.into();
        alert["annotations"]["summary"] = HOSTILE_SUMMARY.into();
    }
    body["groupLabels"]["alertname"] = HOSTILE_ALERTNAME.into();
    body["commonLabels"]["alertname"] = HOSTILE_ALERTNAME.into();
    body["commonLabels"]["instance"] = HOSTILE_INSTANCE.into();
    body["commonAnnotations"]["summary"] = HOSTILE_SUMMARY.into();
    serde_json::to_vec(&body).unwrap()
}
