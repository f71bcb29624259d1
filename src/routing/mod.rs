//! Picks who gets texted: each alert walks the routes in order, and every recipient ends up with one
//! SMS per notification covering all of their alerts (and one more, held back, for the alerts
//! that reach them in their quiet hours).

pub mod matcher;
pub mod policy;
pub mod route;
pub mod rules;
pub mod target;

pub use route::Route;
pub use rules::{At, Rules};
pub use target::Target;

use crate::model::alert::{Alert, AlertStatus, Notification};
use crate::model::outcome::SuppressReason;
use crate::routing::matcher::matches_all;

/// One SMS to be: a recipient and the alerts it covers. Template and budget come from `route`, the
/// first route that gave this recipient an alert.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub route: &'a Route,
    pub recipient: &'a str,
    pub alerts: Vec<&'a Alert>,
    /// Alerts that reach the recipient in their quiet hours: held back and counted, not sent.
    pub quiet: bool,
}

/// A recipient who gets no SMS from this notification on purpose: its routes do not send
/// resolved alerts, or are muted now.
#[derive(Debug)]
pub struct Held<'a> {
    pub route: &'a Route,
    pub recipient: &'a str,
    pub reason: SuppressReason,
}

/// The alerts of a notification that a route with an escalation policy took: they open or
/// update that route's incident instead of paging anyone directly.
#[derive(Debug)]
pub struct Escalated<'a> {
    pub route: &'a Route,
    pub alerts: Vec<&'a Alert>,
}

#[derive(Debug, Default)]
pub struct Routing<'a> {
    pub deliveries: Vec<Delivery<'a>>,
    pub escalated: Vec<Escalated<'a>>,
    pub held: Vec<Held<'a>>,
    /// Alerts no route matched: counted and logged, never sent.
    pub unrouted: Vec<&'a Alert>,
}

#[derive(Default)]
struct Entry<'a> {
    route: Option<&'a Route>,
    alerts: Vec<&'a Alert>,
}

impl<'a> Entry<'a> {
    fn add(&mut self, route: &'a Route, alert: &'a Alert) {
        if !self.alerts.iter().any(|a| std::ptr::eq(*a, alert)) {
            self.route.get_or_insert(route);
            self.alerts.push(alert);
        }
    }
}

/// Everything a notification gives one recipient.
struct Recipient<'a> {
    name: &'a str,
    send: Entry<'a>,
    quiet: Entry<'a>,
    held: Option<(&'a Route, SuppressReason)>,
}

/// Routes `notification` by `rules`: each alert on each route it matches, for each recipient of
/// that route, goes into their SMS, their quiet-hours SMS, or nowhere (muted, resolved).
pub fn route<'a>(
    notification: &'a Notification,
    routes: &'a [Route],
    rules: &impl Rules<'a>,
) -> Routing<'a> {
    let mut recipients: Vec<Recipient<'a>> = Vec::new();
    let mut escalated: Vec<Escalated<'a>> = Vec::new();
    let mut unrouted = Vec::new();
    for alert in &notification.alerts {
        let mut matched = false;
        for route in routes {
            if !matches_all(&route.matchers, &alert.labels) {
                continue;
            }
            matched = true;
            if route.escalation.is_some() {
                // A muted route opens no incident, but its resolved alerts still end one;
                // quiet hours hold no escalation back.
                if !rules.muted(route) || alert.status == AlertStatus::Resolved {
                    match escalated.iter_mut().find(|e| std::ptr::eq(e.route, route)) {
                        Some(entry) => entry.alerts.push(alert),
                        None => escalated.push(Escalated {
                            route,
                            alerts: vec![alert],
                        }),
                    }
                }
                if !route.continue_matching {
                    break;
                }
                continue;
            }
            let resolved_held = alert.status == AlertStatus::Resolved && !route.send_resolved;
            let muted = rules.muted(route);
            for name in rules.recipients(route) {
                let index = match recipients.iter().position(|r| r.name == name) {
                    Some(i) => i,
                    None => {
                        recipients.push(Recipient {
                            name,
                            send: Entry::default(),
                            quiet: Entry::default(),
                            held: None,
                        });
                        recipients.len() - 1
                    }
                };
                let recipient = &mut recipients[index];
                if muted {
                    recipient.held.get_or_insert((route, SuppressReason::Muted));
                } else if resolved_held {
                    recipient
                        .held
                        .get_or_insert((route, SuppressReason::SendResolved));
                } else if rules.quiet(route, name) {
                    recipient.quiet.add(route, alert);
                } else {
                    recipient.send.add(route, alert);
                }
            }
            if !route.continue_matching {
                break;
            }
        }
        if !matched {
            unrouted.push(alert);
        }
    }
    let mut routing = Routing {
        unrouted,
        escalated,
        ..Routing::default()
    };
    for mut r in recipients {
        // An alert that one of its routes sends anyway is not held back for quiet hours too.
        let sent = &r.send.alerts;
        r.quiet
            .alerts
            .retain(|a| !sent.iter().any(|s| std::ptr::eq(*s, *a)));
        let mut any = false;
        for (entry, quiet) in [(r.send, false), (r.quiet, true)] {
            if let (Some(route), false) = (entry.route, entry.alerts.is_empty()) {
                any = true;
                routing.deliveries.push(Delivery {
                    route,
                    recipient: r.name,
                    alerts: entry.alerts,
                    quiet,
                });
            }
        }
        if let (false, Some((route, reason))) = (any, r.held) {
            routing.held.push(Held {
                route,
                recipient: r.name,
                reason,
            });
        }
    }
    routing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::matcher::parse_matchers;

    /// Each route's own recipients; `muted` routes and `quiet` (route, recipient) pairs.
    #[derive(Default)]
    struct Fixed {
        muted: Vec<&'static str>,
        quiet: Vec<(&'static str, &'static str)>,
    }

    impl<'a> Rules<'a> for Fixed {
        fn recipients(&self, route: &'a Route) -> Vec<&'a str> {
            route.recipients.iter().map(String::as_str).collect()
        }
        fn muted(&self, route: &Route) -> bool {
            self.muted.contains(&route.name.as_str())
        }
        fn quiet(&self, route: &Route, recipient: &str) -> bool {
            self.quiet.contains(&(route.name.as_str(), recipient))
        }
    }

    const STATIC: Fixed = Fixed {
        muted: Vec::new(),
        quiet: Vec::new(),
    };

    fn r(name: &str, matchers: &str, to: &[&str], send_resolved: bool, cont: bool) -> Route {
        Route {
            name: name.to_string(),
            matchers: parse_matchers(matchers).unwrap(),
            recipients: to.iter().map(|s| s.to_string()).collect(),
            template: "default".to_string(),
            send_resolved,
            max_segments: 1,
            gsm_only: false,
            continue_matching: cont,
            schedules: Vec::new(),
            may_page: to.iter().map(|s| s.to_string()).collect(),
            active_time_intervals: Vec::new(),
            mute_time_intervals: Vec::new(),
            ignore_quiet_hours: false,
            escalation: None,
        }
    }

    fn alert(name: &str, severity: &str, status: AlertStatus) -> Alert {
        Alert::new(status, &[("alertname", name), ("severity", severity)]).fingerprint(name)
    }

    fn summary(routing: &Routing<'_>) -> Vec<(String, String, Vec<String>)> {
        routing
            .deliveries
            .iter()
            .map(|d| {
                (
                    d.route.name.clone(),
                    d.recipient.to_string(),
                    d.alerts.iter().map(|a| a.fingerprint.clone()).collect(),
                )
            })
            .collect()
    }

    fn s(route: &str, to: &str, alerts: &[&str]) -> (String, String, Vec<String>) {
        (
            route.to_string(),
            to.to_string(),
            alerts.iter().map(|a| a.to_string()).collect(),
        )
    }

    #[test]
    fn first_matching_route_wins() {
        let routes = vec![
            r(
                "critical",
                r#"severity="critical""#,
                &["alice", "bob"],
                true,
                false,
            ),
            r("all", "", &["carol"], true, false),
        ];
        let n = Notification::of(vec![alert("A", "critical", AlertStatus::Firing)]);
        let routing = route(&n, &routes, &STATIC);
        assert_eq!(
            summary(&routing),
            vec![s("critical", "alice", &["A"]), s("critical", "bob", &["A"])]
        );
        assert!(routing.unrouted.is_empty());
    }

    #[test]
    fn continue_lets_later_routes_match_too() {
        let routes = vec![
            r("audit", "", &["carol"], true, true),
            r(
                "critical",
                r#"severity="critical""#,
                &["alice"],
                true,
                false,
            ),
            r("never", "", &["dave"], true, false),
        ];
        let n = Notification::of(vec![alert("A", "critical", AlertStatus::Firing)]);
        assert_eq!(
            summary(&route(&n, &routes, &STATIC)),
            vec![s("audit", "carol", &["A"]), s("critical", "alice", &["A"])]
        );
    }

    #[test]
    fn one_sms_per_recipient_covers_all_their_alerts_once() {
        let routes = vec![
            r(
                "critical",
                r#"severity="critical""#,
                &["alice", "bob"],
                true,
                true,
            ),
            r(
                "warning",
                r#"severity=~"warning|critical""#,
                &["alice"],
                true,
                false,
            ),
        ];
        let n = Notification::of(vec![
            alert("A", "critical", AlertStatus::Firing),
            alert("B", "warning", AlertStatus::Firing),
            alert("C", "info", AlertStatus::Firing),
        ]);
        let routing = route(&n, &routes, &STATIC);
        assert_eq!(
            summary(&routing),
            vec![
                s("critical", "alice", &["A", "B"]),
                s("critical", "bob", &["A"])
            ]
        );
        assert_eq!(routing.unrouted.len(), 1);
        assert_eq!(routing.unrouted[0].fingerprint, "C");
    }

    #[test]
    fn resolved_alerts_respect_send_resolved() {
        let routes = vec![
            r(
                "critical",
                r#"severity="critical""#,
                &["alice"],
                true,
                false,
            ),
            r(
                "warning",
                r#"severity="warning""#,
                &["bob", "alice"],
                false,
                false,
            ),
        ];
        let n = Notification::of(vec![
            alert("A", "critical", AlertStatus::Resolved),
            alert("B", "warning", AlertStatus::Resolved),
            alert("C", "warning", AlertStatus::Firing),
        ]);
        let routing = route(&n, &routes, &STATIC);
        assert_eq!(
            summary(&routing),
            vec![
                s("critical", "alice", &["A", "C"]),
                s("warning", "bob", &["C"])
            ]
        );
        let n = Notification::of(vec![alert("B", "warning", AlertStatus::Resolved)]);
        let routing = route(&n, &routes, &STATIC);
        assert!(routing.deliveries.is_empty());
        let held: Vec<_> = routing
            .held
            .iter()
            .map(|h| (h.route.name.as_str(), h.recipient, h.reason))
            .collect();
        assert_eq!(
            held,
            vec![
                ("warning", "bob", SuppressReason::SendResolved),
                ("warning", "alice", SuppressReason::SendResolved)
            ]
        );
    }

    /// alice gets warnings and, through `continue`, critical alerts: what each route does with
    /// its own alerts decides, whichever alert comes first in the notification.
    #[test]
    fn muting_and_quiet_hours_hold_back_only_the_alerts_of_their_route() {
        let routes = vec![
            r("warnings", r#"severity="warning""#, &["alice"], true, false),
            r(
                "critical",
                r#"severity="critical""#,
                &["alice"],
                true,
                false,
            ),
        ];
        let n = Notification::of(vec![
            alert("W", "warning", AlertStatus::Firing),
            alert("C", "critical", AlertStatus::Firing),
        ]);
        let muted = Fixed {
            muted: vec!["warnings"],
            ..Fixed::default()
        };
        let routing = route(&n, &routes, &muted);
        assert_eq!(summary(&routing), vec![s("critical", "alice", &["C"])]);
        assert!(
            routing.held.is_empty(),
            "alice gets an SMS, so nothing is reported held"
        );

        let quiet = Fixed {
            quiet: vec![("warnings", "alice")],
            ..Fixed::default()
        };
        let routing = route(&n, &routes, &quiet);
        let deliveries: Vec<_> = routing
            .deliveries
            .iter()
            .map(|d| (d.route.name.as_str(), d.quiet, d.alerts.len()))
            .collect();
        assert_eq!(
            deliveries,
            vec![("critical", false, 1), ("warnings", true, 1)]
        );

        let all_muted = Fixed {
            muted: vec!["warnings", "critical"],
            ..Fixed::default()
        };
        let routing = route(&n, &routes, &all_muted);
        assert!(routing.deliveries.is_empty());
        assert_eq!(routing.held.len(), 1);
        assert_eq!(routing.held[0].reason, SuppressReason::Muted);
    }

    #[test]
    fn no_routes_means_everything_is_unrouted() {
        let n = Notification::of(vec![alert("A", "critical", AlertStatus::Firing)]);
        let routing = route(&n, &[], &STATIC);
        assert!(routing.deliveries.is_empty());
        assert_eq!(routing.unrouted.len(), 1);
    }
}
