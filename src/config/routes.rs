//! The `routes:` section: which alerts page whom, with which template and budget. Whom a route
//! reaches at an instant (its schedules resolved, its time intervals applied) is decided in
//! `routing`, when an SMS is planned.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::field::{NAME_RULE, count_in_range, valid_name};
use super::oncall::known_intervals;
use super::problem::{Problem, problem};
use crate::oncall::Schedule;
use crate::oncall::timeinterval::NamedIntervals;
use crate::routing::matcher::{Matcher, parse_matchers};
use crate::routing::policy::Policy;
use crate::routing::{Route, Target};
use crate::text::sms::MAX_SEGMENTS_CAP;
use crate::text::template::Templates;

// Every field has a default (see `document::deserialize_all`); what is required is checked
// when the config is validated.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    #[serde(default)]
    name: String,
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default)]
    to: Vec<String>,
    template: Option<String>,
    send_resolved: Option<bool>,
    max_segments: Option<usize>,
    #[serde(default)]
    gsm_only: bool,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    active_time_intervals: Vec<String>,
    #[serde(default)]
    mute_time_intervals: Vec<String>,
    #[serde(default)]
    ignore_quiet_hours: bool,
    escalation: Option<String>,
}

/// What a route's `to:` and its time intervals may name.
pub(super) struct Targets<'a> {
    /// Every name in the phone book, also those with problems.
    pub names: &'a HashSet<&'a str>,
    pub groups: &'a BTreeMap<String, Vec<String>>,
    /// Every schedule declared, also those with problems: a route that names one is not blamed
    /// for them a second time.
    pub schedule_names: &'a HashSet<String>,
    /// The schedules without problems.
    pub schedules: &'a BTreeMap<String, Schedule>,
    pub time_intervals: &'a NamedIntervals,
}

/// What a route's `escalation:` needs: a policy of that name, and a URL for the links to
/// acknowledge it.
pub(super) struct Escalation<'a> {
    pub policies: &'a BTreeMap<String, Policy>,
    pub external_url: Option<&'a str>,
}

impl Escalation<'_> {
    /// The `escalation:` of the route at `at`, naming `policy`.
    fn check(&self, policy: &str, at: &str, problems: &mut Vec<Problem>) {
        let field = format!("{at}.escalation");
        if !self.policies.contains_key(policy) {
            let known: Vec<&str> = self.policies.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none under escalation_policies".to_string()
            } else {
                known.join(", ")
            };
            problem(
                problems,
                &field,
                format!("unknown escalation policy {policy:?}; known: {known}"),
            );
        }
        if self.external_url.is_none() {
            problem(
                problems,
                field,
                "needs web.external_url: the SMS of an escalation carry a link to acknowledge it",
            );
        }
    }
}

pub(super) fn routes(
    raw: Vec<RawRoute>,
    targets: &Targets<'_>,
    escalation: &Escalation<'_>,
    templates: Option<&Templates>,
    problems: &mut Vec<Problem>,
) -> Vec<Route> {
    let mut seen_names = HashSet::new();
    let mut checked_templates = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("routes[{i}]");
        if r.name.is_empty() {
            problem(
                problems,
                format!("{at}.name"),
                "missing: every route needs a name",
            );
        } else if !valid_name(&r.name) {
            problem(
                problems,
                format!("{at}.name"),
                format!("invalid route name {:?}; {NAME_RULE}", r.name),
            );
        } else if !seen_names.insert(r.name.clone()) {
            problem(
                problems,
                format!("{at}.name"),
                format!("route name {:?} is used twice", r.name),
            );
        }
        let matchers = matchers(&r.matchers, &at, problems);
        match (r.to.is_empty(), &r.escalation) {
            (true, None) => problem(
                problems,
                format!("{at}.to"),
                "a route needs to (recipients, groups or schedules) or escalation (a policy)",
            ),
            (false, Some(_)) => problem(
                problems,
                &at,
                "to and escalation exclude each other: the policy says whom to page",
            ),
            (true, Some(policy)) => escalation.check(policy, &at, problems),
            (false, None) => {}
        }
        let reach = reach(&at, &r.to, targets, problems);
        for (field, names) in [
            ("active_time_intervals", &r.active_time_intervals),
            ("mute_time_intervals", &r.mute_time_intervals),
        ] {
            let field = format!("{at}.{field}");
            known_intervals(names, &field, targets.time_intervals, problems);
        }
        let template = r.template.unwrap_or_else(|| "default".to_string());
        if let Some(templates) = templates
            && let Err(e) = check_template(templates, &template, &mut checked_templates)
        {
            problem(problems, format!("{at}.template"), e);
        }
        let max_segments = count_in_range(
            r.max_segments.unwrap_or(1),
            MAX_SEGMENTS_CAP,
            &format!("{at}.max_segments"),
            problems,
        );
        out.push(Route {
            name: r.name,
            matchers,
            recipients: reach.recipients,
            template,
            send_resolved: r.send_resolved.unwrap_or(true),
            max_segments,
            gsm_only: r.gsm_only,
            continue_matching: r.continue_matching,
            schedules: reach.schedules,
            may_page: reach.may_page,
            active_time_intervals: r.active_time_intervals,
            mute_time_intervals: r.mute_time_intervals,
            ignore_quiet_hours: r.ignore_quiet_hours,
            escalation: r.escalation,
        });
    }
    out
}

/// The `matchers:` under `at`, each entry one or more Alertmanager matchers.
pub(super) fn matchers(entries: &[String], at: &str, problems: &mut Vec<Problem>) -> Vec<Matcher> {
    let mut matchers = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match parse_matchers(entry) {
            Ok(ms) => matchers.extend(ms),
            Err(e) => problem(problems, format!("{at}.matchers[{i}]"), e.to_string()),
        }
    }
    matchers
}

/// Whom a `to:` names.
pub(super) struct Reach {
    /// Phone-book names, groups expanded, each once, in the order written.
    pub recipients: Vec<String>,
    /// Resolved when an SMS is planned.
    pub schedules: Vec<String>,
    /// `recipients` and every person of the schedules.
    pub may_page: Vec<String>,
}

/// The `to:` under `at`: phone-book names, groups and schedules, each name known; the caller
/// says whether it may be empty.
pub(super) fn reach(
    at: &str,
    to: &[String],
    targets: &Targets<'_>,
    problems: &mut Vec<Problem>,
) -> Reach {
    let mut recipients: Vec<String> = Vec::new();
    let mut schedules: Vec<String> = Vec::new();
    for target in resolve(at, to, targets, problems) {
        match target {
            Target::Person(name) => add_once(&mut recipients, name),
            Target::Group { members, .. } => {
                for member in members {
                    add_once(&mut recipients, member);
                }
            }
            Target::Schedule(name) => add_once(&mut schedules, name),
        }
    }
    let mut may_page = recipients.clone();
    for person in schedules
        .iter()
        .filter_map(|s| targets.schedules.get(s))
        .flat_map(|s| s.people())
    {
        add_once(&mut may_page, person.to_string());
    }
    Reach {
        recipients,
        schedules,
        may_page,
    }
}

fn add_once(list: &mut Vec<String>, name: String) {
    if !list.contains(&name) {
        list.push(name);
    }
}

/// Each name of the `to:` under `at` as a person, group or schedule; an unknown one is a
/// problem at its place and left out.
pub(super) fn resolve(
    at: &str,
    to: &[String],
    targets: &Targets<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<Target> {
    let mut resolved = Vec::with_capacity(to.len());
    for (j, name) in to.iter().enumerate() {
        if targets.names.contains(name.as_str()) {
            resolved.push(Target::Person(name.clone()));
        } else if let Some(members) = targets.groups.get(name) {
            resolved.push(Target::Group {
                name: name.clone(),
                members: members.clone(),
            });
        } else if targets.schedule_names.contains(name) {
            resolved.push(Target::Schedule(name.clone()));
        } else {
            problem(
                problems,
                format!("{at}.to[{j}]"),
                format!("unknown recipient, group or schedule {name:?}"),
            );
        }
    }
    resolved
}

/// A template name is known, and the template renders the sample notification (tried once per
/// template, however many routes use it).
fn check_template(
    templates: &Templates,
    name: &str,
    rendered: &mut HashSet<String>,
) -> Result<(), String> {
    if !templates.has(name) {
        return Err(format!(
            "unknown template {name:?}; known: {}",
            templates.names().join(", ")
        ));
    }
    if rendered.insert(name.to_string()) {
        templates.test_render(name).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{load, problems};

    #[test]
    fn a_route_without_name_or_recipients_says_so_at_the_route() {
        let p = load("routes:\n  - matchers: ['a=\"b\"']\n").unwrap_err();
        let got: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "line 2: routes[0].name: missing: every route needs a name",
                "line 2: routes[0].to: a route needs to (recipients, groups or schedules) or \
                 escalation (a policy)",
            ]
        );
    }

    const ESCALATING: &str = "\
recipients: {alice: \"+4915228817386\"}
escalation_policies:
  critical: {steps: [{to: [alice]}]}
";

    #[test]
    fn a_route_escalates_by_a_known_policy_instead_of_texting_its_to() {
        let config = load(&format!(
            "{ESCALATING}web: {{external_url: https://pager.example.com}}\n\
             routes: [{{name: r, escalation: critical}}]\n"
        ))
        .unwrap();
        let route = &config.routes[0];
        assert_eq!(route.escalation.as_deref(), Some("critical"));
        assert!(route.recipients.is_empty() && route.schedules.is_empty());
        assert!(
            load(&format!("{ESCALATING}routes: [{{name: r, to: [alice]}}]\n"))
                .unwrap()
                .routes[0]
                .escalation
                .is_none()
        );
    }

    #[test]
    fn a_route_names_to_or_a_known_escalation_policy_and_the_external_url_is_set() {
        let listed = |routes: &str| {
            problems(&format!(
                "{ESCALATING}web: {{external_url: https://pager.example.com}}\nroutes:\n{routes}"
            ))
        };
        assert_eq!(
            listed("  - {name: r, escalation: critcal}\n"),
            ["routes[0].escalation: unknown escalation policy \"critcal\"; known: critical"]
        );
        assert_eq!(
            listed("  - {name: r, to: [alice], escalation: critical}\n"),
            ["routes[0]: to and escalation exclude each other: the policy says whom to page"]
        );
        assert_eq!(
            listed("  - {name: r}\n"),
            [
                "routes[0].to: a route needs to (recipients, groups or schedules) or escalation \
              (a policy)"
            ]
        );
        assert_eq!(
            problems(&format!(
                "{ESCALATING}routes: [{{name: r, escalation: critical}}]\n"
            )),
            [
                "routes[0].escalation: needs web.external_url: the SMS of an escalation carry a \
              link to acknowledge it"
            ]
        );
    }
}
