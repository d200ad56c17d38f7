//! The admin contact Synapse shows to users.

/// A `mailto:` URL or a bare email address (made a `mailto:` URL, as Synapse's docs write
/// it): an `@` between a local part and a DNS name, no spaces or control characters.
pub fn admin_contact(text: &str) -> Result<String, String> {
    super::no_control_characters(text)?;
    let address = text.strip_prefix("mailto:").unwrap_or(text);
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or("it is not an email address (no `@`)")?;
    if local.is_empty() || local.len() > 64 || local.contains(char::is_whitespace) {
        return Err("the part before `@` needs 1 to 64 characters and no spaces".into());
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
            "a@exa mple.org",
            "a@b\nc",
            "@example.org",
            "a@",
        ] {
            assert!(admin_contact(bad).is_err(), "{bad:?}");
        }
    }
}
