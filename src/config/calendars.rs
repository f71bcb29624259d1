//! `web.calendars`: the iCalendar feeds of schedules and people, each at a secret URL
//! (`/calendar/<token>.ics`). Calendar apps cannot send credentials, so the token is the
//! credential: given as a secret (inline or `token_file`), long, and of one feed only.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::problem::{Problem, problem};
use super::routes::Targets;
use super::secret::{Secret, secret_value};
use crate::oncall::calendar::Feed;

/// One feed: whose shifts it lists, and the token in its URL.
#[derive(Debug, Clone)]
pub struct CalendarFeed {
    pub feed: Feed,
    pub token: Secret,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalendar {
    schedule: Option<String>,
    person: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

/// The shortest token: 24 characters of 64 are 144 bits; nobody types it, an app keeps it.
const MIN_TOKEN: usize = 24;

pub(super) fn calendars(
    raw: Vec<RawCalendar>,
    base: &Path,
    targets: &Targets<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<CalendarFeed> {
    let mut feeds = Vec::new();
    // Every token taken so far, also by feeds with other problems, and by which feed.
    let mut taken: Vec<(usize, Secret)> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let at = format!("web.calendars[{i}]");
        let feed = feed(raw.schedule, raw.person, &at, targets, problems);
        // A problem with the token names the field it was written in.
        let token_field = if raw.token_file.is_some() && raw.token.is_none() {
            format!("{at}.token_file")
        } else {
            format!("{at}.token")
        };
        let Some(token) = secret_value(
            raw.token,
            raw.token_file,
            base,
            &format!("{at}.token"),
            problems,
        ) else {
            continue;
        };
        if let Err(message) = token_is_valid(token.expose_secret()) {
            problem(problems, &token_field, message);
            continue;
        }
        if let Some((j, _)) = taken
            .iter()
            .find(|(_, t)| t.expose_secret() == token.expose_secret())
        {
            problem(
                problems,
                &token_field,
                format!("the same token as web.calendars[{j}]; each feed needs its own"),
            );
            continue;
        }
        taken.push((i, token.clone()));
        if let Some(feed) = feed {
            feeds.push(CalendarFeed { feed, token });
        }
    }
    feeds
}

/// Whose shifts the feed at `at` lists: a schedule, or a person in at least one schedule (a
/// feed of anyone else would stay empty).
fn feed(
    schedule: Option<String>,
    person: Option<String>,
    at: &str,
    targets: &Targets<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Feed> {
    match (schedule, person) {
        (Some(_), Some(_)) => {
            problem(problems, at, "set schedule or person, not both");
            None
        }
        (None, None) => {
            problem(
                problems,
                at,
                "missing: set schedule (a schedule's shifts) or person (one person's shifts in every schedule)",
            );
            None
        }
        (Some(name), None) => {
            if targets.schedule_names.contains(&name) {
                return Some(Feed::Schedule(name));
            }
            let mut known: Vec<&str> = targets.schedule_names.iter().map(String::as_str).collect();
            known.sort_unstable();
            let known = if known.is_empty() {
                "none under schedules".to_string()
            } else {
                known.join(", ")
            };
            problem(
                problems,
                format!("{at}.schedule"),
                format!("unknown schedule {name:?}; known: {known}"),
            );
            None
        }
        (None, Some(name)) => {
            let field = format!("{at}.person");
            if !targets.names.contains(name.as_str()) {
                problem(
                    problems,
                    field,
                    format!("unknown recipient {name:?}; a person is a name from recipients"),
                );
                return None;
            }
            // A schedule with problems of its own is not built: it may well list the person.
            let all_built = targets.schedules.len() == targets.schedule_names.len();
            let scheduled = targets
                .schedules
                .values()
                .any(|s| s.people().contains(&name.as_str()));
            if !scheduled && all_built {
                problem(
                    problems,
                    field,
                    format!("{name:?} is in no schedule, so the feed would always be empty"),
                );
                return None;
            }
            Some(Feed::Person(name))
        }
    }
}

/// Long enough not to be guessed, and URL-safe, as it stands in the path. The message never
/// repeats the token.
fn token_is_valid(token: &str) -> Result<(), String> {
    if token.chars().count() < MIN_TOKEN {
        return Err(format!("must be at least {MIN_TOKEN} characters long"));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("may only use letters, digits, '-' and '_', as it stands in a URL".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::ExposeSecret;

    use crate::config::Config;
    use crate::config::tests::{load, no_env};
    use crate::oncall::calendar::Feed;

    const TOKEN: &str = "Zq3v-8Kp_x2LmN7rT4wY9bC1";
    const OTHER: &str = "Hd5s_Jf8-Qw2Er6Ty0Ui3Op7As";

    /// The problems of a config that is refused, each with its line.
    fn listed(yaml: &str) -> Vec<String> {
        load(yaml)
            .expect_err("config should be rejected")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A phone book of alice, bob, carol and dave, a schedule of alice and bob with carol as an
    /// override, a route, and `calendars` as written under `web:`.
    fn with_calendars(calendars: &str) -> String {
        format!(
            "recipients: {{alice: \"+4915228817386\", bob: \"+4915254599371\", carol: \"+4915123456789\", dave: \"+4915198765432\"}}\n\
             schedules: {{primary: {{time_zone: Europe/Berlin, rotation: {{members: [alice, bob], shift: 1w, start: '2026-01-05T09:00'}}, \
             overrides: [{{from: '2026-12-24T00:00', to: '2026-12-27T00:00', who: carol}}]}}}}\n\
             routes: [{{name: r, to: [primary]}}]\n\
             web:\n  calendars:\n{calendars}"
        )
    }

    #[test]
    fn feeds_of_a_schedule_and_of_people_in_it_with_inline_and_file_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("carol.token"), format!("  {OTHER}\n")).unwrap();
        let yaml = with_calendars(&format!(
            "    - {{schedule: primary, token: {TOKEN}}}\n\
             \x20   - {{person: carol, token_file: carol.token}}\n"
        ));
        let config = Config::from_yaml(&yaml, Path::new("x.yml"), dir.path(), &no_env).unwrap();
        let feeds: Vec<(&Feed, &str)> = config
            .web
            .calendars
            .iter()
            .map(|c| (&c.feed, c.token.expose_secret()))
            .collect();
        assert_eq!(
            feeds,
            [
                (&Feed::Schedule("primary".into()), TOKEN),
                (&Feed::Person("carol".into()), OTHER),
            ]
        );
        assert!(
            !format!("{:?}", config.web).contains(TOKEN),
            "no token in Debug output"
        );
    }

    #[test]
    fn each_mistake_in_a_feed_names_its_field_and_never_the_token() {
        let short = "tooShort-123";
        let odd = "has+plus/and=equals_aaaaaaaaaaaa";
        let listed = listed(&with_calendars(&format!(
            "    - {{schedule: secondary, token: {TOKEN}}}\n\
             \x20   - {{person: mallory, token: {OTHER}}}\n\
             \x20   - {{person: dave, token: {short}}}\n\
             \x20   - {{schedule: primary, token: \"{odd}\"}}\n\
             \x20   - {{schedule: primary, person: alice, token: {TOKEN}}}\n\
             \x20   - {{token: {TOKEN}}}\n\
             \x20   - {{schedule: primary}}\n\
             \x20   - {{schedule: primary, token: {TOKEN}, token_file: t}}\n\
             \x20   - {{schedule: primary, token_file: /nonexistent/calendar.token}}\n"
        )));
        assert_eq!(
            listed,
            [
                "line 6: web.calendars[0].schedule: unknown schedule \"secondary\"; known: primary",
                "line 7: web.calendars[1].person: unknown recipient \"mallory\"; a person is a name from recipients",
                "line 8: web.calendars[2].person: \"dave\" is in no schedule, so the feed would always be empty",
                "line 8: web.calendars[2].token: must be at least 24 characters long",
                "line 9: web.calendars[3].token: may only use letters, digits, '-' and '_', as it stands in a URL",
                "line 10: web.calendars[4]: set schedule or person, not both",
                "line 10: web.calendars[4].token: the same token as web.calendars[0]; each feed needs its own",
                "line 11: web.calendars[5]: missing: set schedule (a schedule's shifts) or person (one person's shifts in every schedule)",
                "line 11: web.calendars[5].token: the same token as web.calendars[0]; each feed needs its own",
                "line 12: web.calendars[6].token: missing: set it or its _file variant",
                "line 13: web.calendars[7].token: set it or its _file variant, not both",
                "line 14: web.calendars[8].token_file: cannot read /nonexistent/calendar.token: No such file or directory (os error 2)",
            ]
        );
        for line in &listed {
            for token in [TOKEN, OTHER, short, odd] {
                assert!(!line.contains(token), "{line}");
            }
        }
    }

    #[test]
    fn a_bad_token_from_a_file_is_named_by_the_file_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("primary.token"), "short\n").unwrap();
        std::fs::write(dir.path().join("again.token"), format!("{TOKEN}\n")).unwrap();
        let yaml = with_calendars(&format!(
            "    - {{schedule: primary, token_file: primary.token}}\n\
             \x20   - {{person: alice, token: {TOKEN}}}\n\
             \x20   - {{person: bob, token_file: again.token}}\n"
        ));
        let p = Config::from_yaml(&yaml, Path::new("x.yml"), dir.path(), &no_env).unwrap_err();
        let listed: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            listed,
            [
                "line 6: web.calendars[0].token_file: must be at least 24 characters long",
                "line 8: web.calendars[2].token_file: the same token as web.calendars[1]; each feed needs its own",
            ]
        );
    }

    #[test]
    fn unknown_keys_of_a_feed_are_refused() {
        assert_eq!(
            listed(&with_calendars(&format!(
                "    - {{schedule: primary, tokn: {TOKEN}}}\n"
            ))),
            [
                "line 6: web.calendars[0].tokn: unknown field `tokn`, expected one of `schedule`, `person`, `token`, `token_file`"
            ]
        );
    }
}
