//! Phone numbers from the phone book, masked wherever they are shown.

use std::fmt;

/// An E.164 number from the phone book. `Display` and `Debug` mask the middle digits, so a number
/// that slips into a log line or error is still not readable.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts E.164 with optional spaces, dashes, dots or slashes between digits, as people write
    /// numbers in address books.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let compact: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '/'))
            .collect();
        let digits = compact.strip_prefix('+').ok_or_else(|| {
            "must be in international E.164 format starting with + and the country code, e.g. \"+4915228817386\"".to_string()
        })?;
        let valid = (7..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0');
        if !valid {
            return Err(
                "must be + followed by 7 to 15 digits (country code first, no leading 0), e.g. \"+4915228817386\""
                    .to_string(),
            );
        }
        Ok(PhoneNumber(compact))
    }

    pub fn e164(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        let keep_front = 6.min(self.0.len());
        let keep_back = 2.min(self.0.len().saturating_sub(keep_front));
        let hidden = self.0.len() - keep_front - keep_back;
        format!(
            "{}{}{}",
            &self.0[..keep_front],
            "*".repeat(hidden),
            &self.0[self.0.len() - keep_back..]
        )
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_masked_when_shown() {
        let n = PhoneNumber::parse("+4915228817386").unwrap();
        assert_eq!(n.to_string(), "+49152******86");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+49152******86)");
        assert!(PhoneNumber::parse("+49").is_err());
        assert!(PhoneNumber::parse("+0049151").is_err());
        assert!(PhoneNumber::parse("+49151abc45678").is_err());
    }
}
