//! Whatever a webhook carries, every SMS planned for it must be non-empty and within its route's
//! segment budget: an over-budget text is billed extra (or cut by the carrier), an empty one is a
//! lost page.
#![no_main]

use std::sync::OnceLock;

use alertmanager_sipgate::pipeline;
use alertmanager_sipgate::config::Config;
use alertmanager_sipgate::ingest::parse_alertmanager;
use alertmanager_sipgate::text::sms::{self, Encoding};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

/// A one-segment default route for `alice` and a two-segment `compact` GSM-only one for
/// `severity="page"` alerts that also go on to the default route for `bob`.
const CONFIG: &str = r#"
recipients:
  alice: "+4915228817386"
  bob: "+4915254599371"
routes:
  - name: pager
    matchers: ['severity="page"']
    to: [bob]
    template: compact
    gsm_only: true
    max_segments: 2
    continue: true
  - name: default
    to: [alice]
    max_segments: 1
"#;

/// Loaded once: loading compiles the templates, far slower than one fuzz iteration.
fn config() -> &'static Config {
    static CONFIG_ONCE: OnceLock<Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.yml");
        std::fs::write(&path, CONFIG).expect("write config");
        Config::load_with_env(&path, &|_| None).expect("the fuzz config is valid")
    })
}

fuzz_target!(|body: &[u8]| {
    let Ok(notification) = parse_alertmanager(body) else {
        return;
    };
    // Fixed, so that a crash reproduces from the input alone.
    let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid timestamp");
    let config = config();
    let plan = pipeline::plan(config, &notification, now);
    for sms in &plan.messages {
        let route = config
            .routes
            .iter()
            .find(|r| r.name == sms.route)
            .expect("messages name a configured route");
        assert!(!sms.text.trim().is_empty(), "blank SMS {:?}", sms.text);
        assert_eq!(sms.max_segments, route.max_segments);
        assert!(
            sms.size.segments <= sms.max_segments,
            "{} segments over a budget of {}: {:?}",
            sms.size.segments,
            sms.max_segments,
            sms.text
        );
        assert_eq!(sms::measure(&sms.text), sms.size);
        if route.gsm_only {
            assert_eq!(sms.size.encoding, Encoding::Gsm7, "{:?}", sms.text);
        }
    }
});
