//! Durations as an SMS says them: the two largest units, short.

use std::time::Duration;

/// `45s`, `12m`, `1h 5m`, `2d 3h`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short() {
        let d = |s| short(Duration::from_secs(s));
        assert_eq!(
            [d(45), d(600), d(3600), d(3900), d(86_400), d(97_200)],
            ["45s", "10m", "1h", "1h 5m", "1d", "1d 3h"]
        );
    }
}
