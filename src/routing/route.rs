//! A route as the config defines it: which alerts it takes (matchers), who it pages, and how
//! their SMS look and when they are held back.

use crate::routing::matcher::Matcher;

/// One entry of `routes:`, validated.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matchers: Vec<Matcher>,
    /// Phone-book names, groups expanded, each once, in the order written.
    pub recipients: Vec<String>,
    pub template: String,
    pub send_resolved: bool,
    pub max_segments: usize,
    /// Replace characters that would force UCS-2 (half the capacity) by GSM-7 look-alikes.
    pub gsm_only: bool,
    pub continue_matching: bool,
    /// Schedules in `to:`: whoever is on call when the SMS is planned.
    pub schedules: Vec<String>,
    /// Everyone the route can page: `recipients` and every person of its schedules.
    pub may_page: Vec<String>,
    /// When set, the route sends only inside one of these intervals.
    pub active_time_intervals: Vec<String>,
    /// The route sends nothing inside these intervals.
    pub mute_time_intervals: Vec<String>,
    /// Pages through the recipients' quiet hours.
    pub ignore_quiet_hours: bool,
    /// The escalation policy that pages instead of `to:`; its recipients are then empty.
    pub escalation: Option<String>,
}
