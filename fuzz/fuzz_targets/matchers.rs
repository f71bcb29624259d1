//! Matchers come from hand-edited config: the parser must never panic, and whatever it accepts
//! must print in a form that reads back as the same matcher (config dumps and error messages
//! quote matchers that way).
#![no_main]

use alertmanager_sipgate::routing::matcher::parse_matchers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let Ok(matchers) = parse_matchers(input) else {
        return;
    };
    for m in matchers {
        let shown = m.to_string();
        assert_eq!(
            parse_matchers(&shown),
            Ok(vec![m]),
            "{input:?} printed as {shown}"
        );
    }
});
