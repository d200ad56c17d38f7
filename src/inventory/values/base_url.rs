//! The URL clients reach the homeserver at.

/// `text` as an http(s) URL with a host, no user or password, no query or fragment, ending
/// in `/` (Synapse builds its links by appending to it). The `url` crate's parser
/// normalises and percent-encodes it, so what is written is what a client would use.
pub fn public_baseurl(text: &str) -> Result<String, String> {
    super::no_control_characters(text)?;
    let mut url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("it is not an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it holds a user name or password".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("it has a query (`?`) or fragment (`#`)".into());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url.into())
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
}
