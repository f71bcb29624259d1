//! Wrong credentials in URLs (acknowledgement codes, calendar tokens) counted per client
//! address, an IPv6 /64 as one, so that a guesser gets 429 after a few instead of 404 forever.
//! A right credential is always served: codes and tokens are far too long to guess, and a
//! guesser behind the same proxy or NAT must not lock out the person on call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

/// Wrong codes one client address may try within `GUESS_WINDOW`.
pub const GUESSES: u32 = 10;
pub const GUESS_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond, the one whose window started first is forgotten.
const REMEMBERED: usize = 10_000;

/// Wrong codes per client address, for the 429. One for all workers, so that guesses spread
/// over connections count together.
#[derive(Debug, Default)]
pub struct Guesses {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Guesses {
    /// Whether `client` may try a code now.
    #[cfg(test)]
    fn allowed(&self, client: IpAddr, now: Instant) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&network(client)).is_none_or(|(since, count)| {
            now.duration_since(*since) >= GUESS_WINDOW || *count < GUESSES
        })
    }

    /// Counts a wrong code from `client`; whether it was within the limit.
    pub(crate) fn wrong(&self, client: IpAddr, now: Instant) -> bool {
        let client = network(client);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED && !seen.contains_key(&client) {
            seen.retain(|_, (since, _)| now.duration_since(*since) < GUESS_WINDOW);
            if seen.len() >= REMEMBERED
                && let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(a, _)| *a)
            {
                seen.remove(&oldest);
            }
        }
        let entry = seen.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= GUESS_WINDOW {
            *entry = (now, 0);
        }
        // Checked and counted under one lock, so that a burst of guesses cannot all pass.
        let allowed = entry.1 < GUESSES;
        entry.1 = entry.1.saturating_add(1);
        allowed
    }
}

/// The address guesses are counted by: an IPv6 client has a /64 to itself.
fn network(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

/// The address a request came from, as the guesses count it.
pub fn client(request: &HttpRequest) -> IpAddr {
    request
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_wrong_guesses_for_a_window() {
        let guesses = Guesses::default();
        let (one, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let start = Instant::now();
        for _ in 0..GUESSES {
            assert!(guesses.allowed(one, start));
            guesses.wrong(one, start);
        }
        assert!(!guesses.allowed(one, start));
        assert!(guesses.allowed(other, start));
        assert!(guesses.allowed(one, start + GUESS_WINDOW));
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_the_table_stays_bounded() {
        let guesses = Guesses::default();
        let start = Instant::now();
        let host = |n: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, n]);
        for n in 0..GUESSES as u16 {
            guesses.wrong(host(n), start);
        }
        assert!(
            !guesses.allowed(host(999), start),
            "another address of the same /64"
        );
        assert!(guesses.allowed(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]), start));
        for n in 0..(REMEMBERED as u32 + 50) {
            guesses.wrong(IpAddr::from(n.to_be_bytes()), start);
        }
        let seen = guesses.seen.lock().unwrap().len();
        assert!(seen <= REMEMBERED, "{seen}");
    }
}
