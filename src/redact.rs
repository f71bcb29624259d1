//! Masks phone numbers in text that comes from outside (Sipgate's error bodies and redirect
//! targets, transport errors, credential-check answers, inbound payload errors, the group key
//! of a notification) before it is logged or put into an answer. Remote parties write numbers
//! in any form, so the rule looks at digits, not at one spelling:
//!
//! a run of at least 7 ASCII digits, where one to three spaces, dashes, dots, slashes or
//! parentheses may stand between two digits, is a number. Its first 2 and last 2 digits stay,
//! every other digit becomes `*`; separators and a leading `+` stay as written. So
//! `+49 151 12345678` becomes `+49 *** ******78`, while HTTP statuses, ports and short counts
//! are left alone. Anything else that looks like such a run is masked too: a date with its time
//! (`2026-12-03 10:00` has 10 digits), an IPv4 address of 7 or more digits, a long timestamp.
//! That is the price of a rule simple enough to trust.

use std::borrow::Cow;

/// A run of at least this many digits is taken for a phone number.
const MIN_DIGITS: usize = 7;
/// Digits kept at each end of a masked number, so that a log reader can still tell numbers apart.
const KEPT: usize = 2;
/// What may stand between two digits of one number, at most `MAX_GAP` in a row.
const SEPARATORS: &[u8] = b" -./()";
const MAX_GAP: usize = 3;

/// `text` with every phone-number-like run of digits masked; borrowed when there is none.
pub fn phone_numbers(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut masked: Option<Vec<u8>> = None;
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        let digits = digits_of_number_at(bytes, at);
        at = digits.last().map_or(at, |last| last + 1);
        if digits.len() >= MIN_DIGITS {
            let out = masked.get_or_insert_with(|| bytes.to_vec());
            for &digit in &digits[KEPT..digits.len() - KEPT] {
                out[digit] = b'*';
            }
        }
    }
    match masked {
        None => Cow::Borrowed(text),
        // Only ASCII digits were replaced, by an ASCII `*`: still UTF-8, nothing is lost.
        Some(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// What stands after `/a/` in a link: the code, a credential.
const ACK_PATH: &str = "/a/";

/// `text` with the code of every acknowledgement link replaced by `*`, so that a log of an SMS
/// (dry-run) cannot acknowledge anything; borrowed when there is none.
pub fn ack_codes(text: &str) -> Cow<'_, str> {
    if !text.contains(ACK_PATH) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(ACK_PATH) {
        let (before, after) = rest.split_at(at + ACK_PATH.len());
        out.push_str(before);
        let code = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count();
        out.push_str(&"*".repeat(code));
        rest = &after[code..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Where the digits of the number that starts with the digit at `start` stand.
fn digits_of_number_at(bytes: &[u8], start: usize) -> Vec<usize> {
    let mut digits = vec![start];
    let mut next = start + 1;
    loop {
        let gap = bytes[next.min(bytes.len())..]
            .iter()
            .take(MAX_GAP)
            .take_while(|b| SEPARATORS.contains(b))
            .count();
        match bytes.get(next + gap) {
            Some(b) if b.is_ascii_digit() => {
                digits.push(next + gap);
                next += gap + 1;
            }
            _ => return digits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_of_acknowledgement_links_are_masked() {
        assert_eq!(
            ack_codes("FIRING x\nAck: https://p.example.com/a/Ab-_9AAAAAAAAAAAAAAAAAAA"),
            "FIRING x\nAck: https://p.example.com/a/************************"
        );
        assert_eq!(ack_codes("/a/xy and /a/z."), "/a/** and /a/*.");
        assert!(matches!(ack_codes("no link"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_way_of_writing_a_number_is_masked() {
        for (written, masked) in [
            ("+4915112345678", "+49*********78"),
            ("015112345678", "01********78"),
            ("+49 151 12345678", "+49 *** ******78"),
            ("0049 15112345678", "00** *********78"),
            ("(0151) 123-45678", "(01**) ***-***78"),
            ("0151/12345678", "01**/******78"),
            ("+49.151.12345678", "+49.***.******78"),
            ("0151 / 1234 5678", "01** / **** **78"),
            ("1234567", "12***67"),
        ] {
            assert_eq!(phone_numbers(written), masked, "{written}");
            let sentence = format!("invalid recipient {written}, try again");
            assert_eq!(
                phone_numbers(&sentence),
                format!("invalid recipient {masked}, try again")
            );
        }
    }

    #[test]
    fn short_numbers_stay() {
        for text in [
            "HTTP 404",
            "port 8080",
            "127.0.0.1:9716",
            "123456",
            "12-34-56",
            "os error 111",
            "+49 151",
            "line 1 column 42",
            "",
        ] {
            assert!(
                matches!(phone_numbers(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }

    #[test]
    fn separators_only_join_digits_when_few() {
        // Four separators in a row end a number: two short numbers stay.
        assert_eq!(phone_numbers("1234 -- 5678"), "1234 -- 5678");
        assert_eq!(phone_numbers("1234 - 5678"), "12** - **78");
        // Letters end a number, whatever follows.
        assert_eq!(phone_numbers("id 1234x5678"), "id 1234x5678");
    }

    #[test]
    fn the_documented_price_dates_and_long_timestamps() {
        assert_eq!(phone_numbers("2026-12-03"), "20**-**-03");
        assert_eq!(phone_numbers("at 1764600000"), "at 17******00");
    }

    #[test]
    fn text_around_numbers_and_multibyte_text_survive() {
        assert_eq!(
            phone_numbers("Empfänger 0151 12345678 ungültig ✗"),
            "Empfänger 01** ******78 ungültig ✗"
        );
        assert_eq!(
            phone_numbers("a 0151/12345678 and b +4917098765432."),
            "a 01**/******78 and b +49*********32."
        );
    }
}
