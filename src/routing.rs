//! Picks who gets texted: each alert walks the routes in order, and every recipient ends up with one
//! SMS per notification covering all of their alerts.

use crate::config::Route;
use crate::matcher::matches_all;
use crate::payload::{Alert, AlertStatus, Notification};

/// One SMS to be: a recipient and the alerts it covers. Template and budget come from `route`, the
/// first route that gave this recipient an alert.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub route: &'a Route,
    pub recipient: &'a str,
    pub alerts: Vec<&'a Alert>,
}

/// A recipient whose only alerts were resolved ones on routes with `send_resolved: false`.
#[derive(Debug)]
pub struct HeldResolved<'a> {
    pub route: &'a Route,
    pub recipient: &'a str,
}

#[derive(Debug, Default)]
pub struct Routing<'a> {
    pub deliveries: Vec<Delivery<'a>>,
    pub held_resolved: Vec<HeldResolved<'a>>,
    /// Alerts no route matched: counted and logged, never sent.
    pub unrouted: Vec<&'a Alert>,
}

struct Entry<'a> {
    recipient: &'a str,
    route: Option<&'a Route>,
    held_by: Option<&'a Route>,
    alerts: Vec<&'a Alert>,
}

/// Routes `notification`; `recipients_of` says who a route texts (its schedules resolved).
pub fn route<'a>(
    notification: &'a Notification,
    routes: &'a [Route],
    recipients_of: impl Fn(&'a Route) -> Vec<&'a str>,
) -> Routing<'a> {
    let mut entries: Vec<Entry<'a>> = Vec::new();
    let mut unrouted = Vec::new();
    for alert in &notification.alerts {
        let mut matched = false;
        for route in routes {
            if !matches_all(&route.matchers, &alert.labels) {
                continue;
            }
            matched = true;
            let held = alert.status == AlertStatus::Resolved && !route.send_resolved;
            for recipient in recipients_of(route) {
                let index = match entries.iter().position(|e| e.recipient == recipient) {
                    Some(i) => i,
                    None => {
                        entries.push(Entry {
                            recipient,
                            route: None,
                            held_by: None,
                            alerts: Vec::new(),
                        });
                        entries.len() - 1
                    }
                };
                let entry = &mut entries[index];
                if held {
                    entry.held_by.get_or_insert(route);
                } else if !entry.alerts.iter().any(|a| std::ptr::eq(*a, alert)) {
                    entry.route.get_or_insert(route);
                    entry.alerts.push(alert);
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
        ..Routing::default()
    };
    for entry in entries {
        match (entry.route, entry.held_by) {
            (Some(route), _) => routing.deliveries.push(Delivery {
                route,
                recipient: entry.recipient,
                alerts: entry.alerts,
            }),
            (None, Some(route)) => routing.held_resolved.push(HeldResolved {
                route,
                recipient: entry.recipient,
            }),
            (None, None) => {}
        }
    }
    routing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::parse_matchers;
    use crate::payload::Labels;

    fn static_recipients(route: &Route) -> Vec<&str> {
        route.recipients.iter().map(String::as_str).collect()
    }

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
        }
    }

    fn alert(name: &str, severity: &str, status: AlertStatus) -> Alert {
        Alert {
            status,
            labels: Labels::from([
                ("alertname".to_string(), name.to_string()),
                ("severity".to_string(), severity.to_string()),
            ]),
            annotations: Labels::new(),
            starts_at: None,
            ends_at: None,
            generator_url: String::new(),
            fingerprint: name.to_string(),
            extras: Default::default(),
        }
    }

    fn notification(alerts: Vec<Alert>) -> Notification {
        Notification {
            source: crate::payload::Source::Alertmanager,
            receiver: "sms".into(),
            status: AlertStatus::Firing,
            group_key: "{}:{}".into(),
            group_labels: Labels::new(),
            common_labels: Labels::new(),
            common_annotations: Labels::new(),
            external_url: String::new(),
            truncated_alerts: 0,
            extras: Default::default(),
            alerts,
        }
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
        let n = notification(vec![alert("A", "critical", AlertStatus::Firing)]);
        let routing = route(&n, &routes, static_recipients);
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
        let n = notification(vec![alert("A", "critical", AlertStatus::Firing)]);
        assert_eq!(
            summary(&route(&n, &routes, static_recipients)),
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
        let n = notification(vec![
            alert("A", "critical", AlertStatus::Firing),
            alert("B", "warning", AlertStatus::Firing),
            alert("C", "info", AlertStatus::Firing),
        ]);
        let routing = route(&n, &routes, static_recipients);
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
        let n = notification(vec![
            alert("A", "critical", AlertStatus::Resolved),
            alert("B", "warning", AlertStatus::Resolved),
            alert("C", "warning", AlertStatus::Firing),
        ]);
        let routing = route(&n, &routes, static_recipients);
        assert_eq!(
            summary(&routing),
            vec![
                s("critical", "alice", &["A", "C"]),
                s("warning", "bob", &["C"])
            ]
        );
        let n = notification(vec![alert("B", "warning", AlertStatus::Resolved)]);
        let routing = route(&n, &routes, static_recipients);
        assert!(routing.deliveries.is_empty());
        let held: Vec<_> = routing
            .held_resolved
            .iter()
            .map(|h| (h.route.name.as_str(), h.recipient))
            .collect();
        assert_eq!(held, vec![("warning", "bob"), ("warning", "alice")]);
    }

    #[test]
    fn no_routes_means_everything_is_unrouted() {
        let n = notification(vec![alert("A", "critical", AlertStatus::Firing)]);
        let routing = route(&n, &[], static_recipients);
        assert!(routing.deliveries.is_empty());
        assert_eq!(routing.unrouted.len(), 1);
    }
}
