//! The URL clients reach the homeserver at.
//!
//! It reaches Synapse's YAML (`public_baseurl`), Nginx's configuration, the
//! `.well-known` answers and every client, and each reads a URL its own way: a `%2e%2e`
//! that one decodes and another does not, a backslash that browsers take for `/`, a
//! Unicode host one converts to IDNA and another sends raw, `1.2.3` that a URL parser
//! makes into `1.2.0.3`. So only a plain URL is taken, one that every reader sees the same:
//! `http` or `https`, `://`, a host (a DNS name of ASCII letters, digits and `-`, an
//! IPv4 address, or a bracketed IPv6 address), an optional `:PORT`, and a path of letters,
//! digits, `-`, `.`, `_`, `~` and `/`. No user or password, query, fragment, percent
//! escape, space, quote, backslash, brace or semicolon, no `.` or `..` segment, no empty
//! segment (`//`). A host in Unicode is refused with its IDNA form (`xn--...`) to write
//! instead.

use super::check_server_name;

/// The characters of a path besides ASCII letters and digits: RFC 3986's unreserved ones
/// and the separator.
const PATH_PUNCTUATION: &str = "-._~/";

/// `text` as a plain http(s) URL (see the module), ending in `/` (Synapse builds its links
/// by appending to it), as the `url` crate writes it (the host in lowercase, a default
/// port left out).
pub fn public_baseurl(text: &str) -> Result<String, String> {
    super::no_control_characters(text)?;
    let (scheme, rest) = text
        .split_once("://")
        .ok_or("it is not an http or https URL")?;
    if !matches!(scheme, "http" | "https") {
        return Err("it is not an http or https URL".into());
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    check_authority(authority)?;
    check_path(path)?;
    let mut url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url.into())
}

/// `host[:port]`, no user or password: a Matrix server name's grammar, in ASCII.
fn check_authority(authority: &str) -> Result<(), String> {
    if authority.is_empty() {
        return Err("it has no host".into());
    }
    if authority.contains('@') {
        return Err("it holds a user name or password".into());
    }
    if !authority.is_ascii() {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        let ascii = url::Host::parse(host).map_or_else(
            |_| "its IDNA form (`xn--...`)".to_string(),
            |h| format!("`{h}`"),
        );
        return Err(format!(
            "its host is not ASCII, and readers differ on how to send it: write {ascii} instead"
        ));
    }
    check_server_name(authority).map_err(|why| format!("its host or port: {why}"))
}

/// The path: plain characters, no dot segment, no empty segment but a trailing `/`.
fn check_path(path: &str) -> Result<(), String> {
    if let Some(c) = path
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !PATH_PUNCTUATION.contains(*c))
    {
        return Err(match c {
            '?' | '#' => "it has a query (`?`) or fragment (`#`)".to_string(),
            '%' => "its path holds a percent escape: write the character itself, from letters, digits, `-`, `.`, `_`, `~` and `/`".to_string(),
            _ => format!(
                "its path holds {c:?}: a base URL's path takes letters, digits, `-`, `.`, `_`, `~` and `/` only"
            ),
        });
    }
    let inner = path.strip_prefix('/').unwrap_or(path);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if !inner.is_empty()
        && inner
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(
            "its path has an empty, `.` or `..` segment, which readers resolve differently".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_is_an_http_url_ending_in_a_slash() {
        assert_eq!(
            public_baseurl("https://matrix.example.org").unwrap(),
            "https://matrix.example.org/"
        );
        assert_eq!(
            public_baseurl("http://a.example:8008/sub").unwrap(),
            "http://a.example:8008/sub/"
        );
        assert_eq!(
            public_baseurl("https://Matrix.Example.org:443/a-b/c_d.e~f/").unwrap(),
            "https://matrix.example.org/a-b/c_d.e~f/"
        );
        assert_eq!(
            public_baseurl("http://[::1]:8008/").unwrap(),
            "http://[::1]:8008/"
        );
        assert_eq!(
            public_baseurl("https://192.0.2.1/").unwrap(),
            "https://192.0.2.1/"
        );
        for bad in [
            "ftp://example.org/",
            "https://user:pw@example.org/",
            "https://example.org/?x=1",
            "https://example.org/#a",
            "https://example.org/\n",
            "example.org",
            "https://",
        ] {
            assert!(public_baseurl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn what_its_readers_would_read_differently_is_refused() {
        for (bad, why) in [
            ("https://example.org/a b/", "holds ' '"),
            ("https://example.org/a\"b/", "holds '\"'"),
            ("https://example.org/a'b/", "holds '\\''"),
            ("https://example.org\\evil.org/", "its host"),
            ("https://example.org/a\\b/", "holds '\\\\'"),
            ("https://example.org/{x}/", "holds '{'"),
            ("https://example.org/a;b/", "holds ';'"),
            ("https://example.org/$host/", "holds '$'"),
            ("https://example.org/%2e%2e/", "percent escape"),
            ("https://ex%61mple.org/", "its host"),
            ("https://example.org/a/../b/", "segment"),
            ("https://example.org/./", "segment"),
            ("https://example.org//x/", "segment"),
            (
                "https://bücher.example/",
                "write `xn--bcher-kva.example` instead",
            ),
            ("https://example.org/é/", "holds 'é'"),
            ("https://1.2.3/", "its last part is a number"),
            ("https://example.org:0/", "the port must be"),
            ("https://example.org:+443/", "the port must be"),
            ("https://example.org:99999/", "the port must be"),
            ("https://[::1/", "closing"),
            ("HTTPS://example.org/", "not an http"),
        ] {
            let error = public_baseurl(bad).expect_err(bad);
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }
}
