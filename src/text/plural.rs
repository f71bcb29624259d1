//! Counts in words: `1 route`, `2 routes`, `0 routes`.

/// `n` and the noun in the number it takes: `one` for exactly one, `many` otherwise.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(counted(0, "route", "routes"), "0 routes");
        assert_eq!(counted(1, "route", "routes"), "1 route");
        assert_eq!(counted(2, "alert", "alerts"), "2 alerts");
        assert_eq!(counted(1, "SMS", "SMS"), "1 SMS");
    }
}
