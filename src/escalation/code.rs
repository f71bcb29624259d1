//! Acknowledgement codes: the credential in the link of a page. A code names its incident (so
//! that one read finds it) and carries 72 random bits (so that it cannot be guessed); both parts
//! are URL-safe base64.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of the incident id and of the secret part: 12 characters each.
const PART: usize = 9;
/// Characters of a code.
pub const LENGTH: usize = 24;

/// The id of the incident of `route` and alert group `group`: the same on every replica, a hash
/// so that no label value reaches a state-store key.
pub fn incident_id(route: &str, group: &str) -> String {
    let mut hash = Sha256::new();
    hash.update((route.len() as u64).to_be_bytes());
    hash.update(route.as_bytes());
    hash.update(group.as_bytes());
    URL_SAFE_NO_PAD.encode(&hash.finalize()[..PART])
}

#[derive(Debug, thiserror::Error)]
#[error("the operating system gave no random bytes: {0}")]
pub struct NoRandom(String);

/// A new code for incident `id`.
pub fn new_code(id: &str) -> Result<String, NoRandom> {
    let mut secret = [0u8; PART];
    getrandom::fill(&mut secret).map_err(|e| NoRandom(e.to_string()))?;
    Ok(format!("{id}{}", URL_SAFE_NO_PAD.encode(secret)))
}

/// The incident a well-formed code names; `None` for anything else, which no incident has.
pub fn incident_of(code: &str) -> Option<&str> {
    let well_formed = code.len() == LENGTH
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| &code[..LENGTH / 2])
}

/// Compares a code from a request with one on record in constant time.
pub fn same(given: &str, kept: &str) -> bool {
    given.len() == kept.len() && bool::from(given.as_bytes().ct_eq(kept.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_names_its_incident_and_differs_every_time() {
        let id = incident_id("critical", "{}:{alertname=\"DiskFull\"}");
        assert_eq!(id.len(), LENGTH / 2);
        let (a, b) = (new_code(&id).unwrap(), new_code(&id).unwrap());
        assert_eq!(a.len(), LENGTH);
        assert_ne!(a, b);
        assert_eq!(incident_of(&a), Some(id.as_str()));
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
    }

    #[test]
    fn the_id_depends_on_route_and_group() {
        assert_ne!(incident_id("a", "g"), incident_id("b", "g"));
        assert_ne!(incident_id("a", "g"), incident_id("a", "h"));
        // Length-prefixed: the boundary between route and group counts.
        assert_ne!(incident_id("ab", "c"), incident_id("a", "bc"));
    }

    #[test]
    fn malformed_codes_name_no_incident() {
        for code in [
            "",
            "short",
            &"a".repeat(25),
            "aaaaaaaaaaaa/aaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaä",
        ] {
            assert_eq!(incident_of(code), None, "{code:?}");
        }
    }
}
