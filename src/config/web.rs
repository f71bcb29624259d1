//! The `web:` section: how a phone reaches the service's pages (the acknowledgement links that
//! escalating SMS carry), and the calendar feeds.

use std::path::Path;

use serde::Deserialize;

use super::calendars::{self, CalendarFeed, RawCalendar};
use super::field::base_url;
use super::problem::{Problem, problem};
use super::routes::Targets;

#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Absolute http(s) URL without a trailing slash, credentials, query or fragment: paths such
    /// as `/a/<code>` are appended to it.
    pub external_url: Option<String>,
    /// The feeds served at `/calendar/<token>.ics`.
    pub calendars: Vec<CalendarFeed>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    external_url: Option<String>,
    #[serde(default)]
    calendars: Vec<RawCalendar>,
}

pub(super) fn web_config(
    raw: RawWeb,
    base: &Path,
    targets: &Targets<'_>,
    problems: &mut Vec<Problem>,
) -> WebConfig {
    let external_url = raw.external_url.and_then(|url| {
        base_url(&url, "the link is sent by SMS to every person paged")
            .map_err(|message| problem(problems, "web.external_url", message))
            .ok()
    });
    let calendars = calendars::calendars(raw.calendars, base, targets, problems);
    WebConfig {
        external_url,
        calendars,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{PAGES_ALICE, load, problems};

    #[test]
    fn the_external_url_is_an_absolute_http_url_without_a_trailing_slash() {
        let web = |url: &str| format!("web: {{external_url: \"{url}\"}}\n{PAGES_ALICE}");
        for (written, kept) in [
            ("https://pager.example.com", "https://pager.example.com"),
            ("https://pager.example.com/", "https://pager.example.com"),
            ("http://10.0.0.1:9716/sms//", "http://10.0.0.1:9716/sms"),
        ] {
            let config = load(&web(written)).unwrap();
            assert_eq!(config.web.external_url.as_deref(), Some(kept), "{written}");
        }
        assert_eq!(load(PAGES_ALICE).unwrap().web.external_url, None);
        for (written, message) in [
            (
                "pager.example.com",
                "web.external_url: must be an http:// or https:// URL, got \"pager.example.com\"",
            ),
            (
                "ftp://pager.example.com",
                "web.external_url: must be an http:// or https:// URL, got \"ftp://pager.example.com\"",
            ),
            (
                "https://exa mple.com",
                "web.external_url: is not a valid URL (invalid international domain name), got \"https://exa mple.com\"",
            ),
            (
                "https://pager.example.com/?x=1",
                "web.external_url: must not have a query or fragment, got \"https://pager.example.com/?x=1\"",
            ),
            (
                "https://pager.example.com/#top",
                "web.external_url: must not have a query or fragment, got \"https://pager.example.com/#top\"",
            ),
        ] {
            assert_eq!(problems(&web(written)), [message], "{written}");
        }
        // Not echoed: a password in it would end up in logs.
        assert_eq!(
            problems(&web("https://admin:s3cret@pager.example.com")),
            [
                "web.external_url: must not carry credentials (user:password@); \
              the link is sent by SMS to every person paged"
            ]
        );
    }

    #[test]
    fn unknown_keys_of_web_are_refused() {
        assert_eq!(
            problems(&format!("web: {{external_uri: x}}\n{PAGES_ALICE}")),
            [
                "web.external_uri: unknown field `external_uri`, expected `external_url` or `calendars`"
            ]
        );
    }
}
