//! Panics caught where one bug must not take more down with it (a request, a background job):
//! what the panic said, for the one log line about it.

use std::any::Any;

/// The panic's message when it carried one (`panic!("...")` does), else empty.
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_of_a_panic_is_read_whether_it_was_formatted_or_not() {
        let plain = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        let formatted = std::panic::catch_unwind(|| panic!("{}", 42)).unwrap_err();
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(super::message(plain.as_ref()), "plain");
        assert_eq!(super::message(formatted.as_ref()), "42");
        assert_eq!(super::message(other.as_ref()), "");
    }
}
