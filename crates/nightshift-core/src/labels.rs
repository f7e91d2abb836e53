//! The rule for host labels (config `labels`, front matter `requires:`) and host names
//! (config `host`, front matter `host:`).

/// A host label (config `labels`, front matter `requires:`): letters, digits, `.`, `_`
/// and `-`.
pub fn validate_label(label: &str) -> Result<(), String> {
    validate_name("a label", label)
}

/// A host name (config `host`, front matter `host:`): the same characters as a label.
pub fn validate_host(name: &str) -> Result<(), String> {
    validate_name("a host name", name)
}

fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "`{name}`: {c:?} is not allowed in {what} (use letters, digits, `.`, `_`, `-`)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_letters_digits_dots_underscores_dashes() {
        for good in ["gpu", "macos-14", "x86_64", "v1.2", "A"] {
            assert_eq!(validate_label(good), Ok(()), "{good}");
        }
        for bad in ["", "gp u", "a/b", "é", "a,b", "a:b"] {
            assert!(validate_label(bad).is_err(), "{bad:?}");
        }
    }
}
