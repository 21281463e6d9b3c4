//! Words for the guest's shell.

/// Single-quotes `s` for the guest's shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_quote_inside_survives() {
        assert_eq!(super::quote("it's"), r"'it'\''s'");
    }
}
