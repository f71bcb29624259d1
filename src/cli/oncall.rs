//! `oncall`: who is on call in each schedule, until when, and the next handoffs.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::load_config;
use crate::oncall::ShowYear;

/// Who is on call in each schedule at `at`, and the next `next` handoffs, in the schedule's zone.
pub(super) fn oncall(path: &Path, at: DateTime<Utc>, next: usize) -> anyhow::Result<()> {
    let config = load_config(path)?;
    if config.schedules.is_empty() {
        println!("{}: no schedules", path.display());
    }
    let year = ShowYear::OutsideYearOf(at);
    for schedule in config.schedules.values() {
        let view = schedule.view(at, next);
        println!("{} ({})", view.schedule, view.time_zone);
        println!(
            "  on call: {:<12} since {}  until {}",
            view.on_call,
            schedule.local(Some(view.since), year),
            schedule.local(view.until, year)
        );
        for handoff in &view.next {
            println!(
                "  then:    {:<12} from  {}  until {}",
                handoff.who,
                schedule.local(Some(handoff.at), year),
                schedule.local(handoff.until, year)
            );
        }
    }
    Ok(())
}
