//! The admin contact Synapse shows to users.

/// A `mailto:` URL or a bare email address (made a `mailto:` URL, as Synapse's docs write
/// it): an `@` between a local part and a DNS name. The local part is RFC 5322's unquoted
/// form (letters, digits, `.` and ``!#$%&'*+-/=?^_`{|}~``): nothing invisible, no second
/// `mailto:` hiding behind one.
pub fn admin_contact(text: &str) -> Result<String, String> {
    super::no_control_characters(text)?;
    let address = text.strip_prefix("mailto:").unwrap_or(text);
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or("it is not an email address (no `@`)")?;
    let atext = |c: char| c.is_ascii_alphanumeric() || ".!#$%&'*+-/=?^_`{|}~".contains(c);
    if local.is_empty() || local.len() > 64 || !local.chars().all(atext) {
        return Err(
            "the part before `@` needs 1 to 64 letters, digits or .!#$%&'*+-/=?^_`{|}~".into(),
        );
    }
    super::check_dns_name(domain)
        .map_err(|why| format!("the part after `@` is not a DNS name: {why}"))?;
    Ok(format!("mailto:{address}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_is_a_mailto_url() {
        assert_eq!(
            admin_contact("admin@example.org").unwrap(),
            "mailto:admin@example.org"
        );
        assert_eq!(
            admin_contact("mailto:a.b+c@example.org").unwrap(),
            "mailto:a.b+c@example.org"
        );
        for bad in [
            "admin",
            "a b@example.org",
            "\u{feff}mailto:admin@example.org",
            "a:b@example.org",
            "a@exa mple.org",
            "a@b\nc",
            "@example.org",
            "a@",
        ] {
            assert!(admin_contact(bad).is_err(), "{bad:?}");
        }
    }
}
