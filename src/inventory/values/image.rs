//! Container image references.

use super::checked_string;

/// An image reference in the OCI distribution grammar (`name[:tag][@digest]`), kept as the
/// user wrote it (a local tag is not rewritten to `docker.io/...`). The grammar has no `$`,
/// so Compose can never interpolate a variable in it, nor whitespace or quotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef(String);

checked_string!(ImageRef);

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        // The grammar (and the parser) also accept what no engine pulls: leading dashes.
        if text.starts_with('-') {
            return Err("an image reference cannot start with `-`".into());
        }
        let reference = text
            .parse::<oci_spec::distribution::Reference>()
            .map_err(|e| {
                format!("not an image reference ({e}); e.g. \"matrixdotorg/synapse:v1.163.0\"")
            })?;
        // The parser lets upper case through in the repository; the grammar and Docker do not.
        if reference
            .repository()
            .chars()
            .any(|c| c.is_ascii_uppercase())
        {
            return Err("a repository name is lowercase".into());
        }
        Ok(ImageRef(text.to_string()))
    }

    /// A built-in default, known to be valid.
    pub(crate) fn builtin(text: &'static str) -> ImageRef {
        ImageRef(text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_the_oci_grammar() {
        for good in [
            "matrixdotorg/synapse:latest",
            "postgres:16-alpine",
            "registry.example.org:5000/team/synapse:v1.163.0",
            "synprov-test/synapse:1.163",
            "redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(ImageRef::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "${HOME}/x",
            "redis:${TAG}",
            "nginx:latest\n  privileged: true",
            "Upper/case",
            "a b",
            "",
            "-x",
            "redis:'",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
