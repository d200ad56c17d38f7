//! Unified diffs of file changes, with every secret masked.

use similar::TextDiff;

use crate::secrets::Secret;

const MASK: &str = "********";

/// Key names whose values are secret even when synprov does not know the value (an old
/// file on the host may hold secrets of another master key).
const SECRET_KEYS: [&str; 5] = ["secret", "password", "macaroon", "requirepass", "signing"];

/// `text` with every known secret, and the value of every secret-looking key, masked.
pub fn mask(text: &str, secrets: &[&Secret]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut line = line.to_string();
        for secret in secrets {
            line = line.replace(secret.expose(), MASK);
        }
        let lower = line.to_ascii_lowercase();
        if SECRET_KEYS.iter().any(|k| lower.contains(k))
            && let Some(at) = line.find([':', '='])
        {
            let value = line[at + 1..].trim();
            if !value.is_empty() && value != MASK {
                let end = if line.ends_with('\n') { "\n" } else { "" };
                line = format!("{} {MASK}{end}", &line[..=at]);
            }
        }
        out.push_str(&line);
    }
    out
}

/// The unified diff of `old` and `new` for `path`, masked, coloured when `color`.
pub fn unified(path: &str, old: &str, new: &str, secrets: &[&Secret], color: bool) -> String {
    let (old, new) = (mask(old, secrets), mask(new, secrets));
    let text = TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .missing_newline_hint(false)
        .to_string();
    if !color {
        return text;
    }
    text.lines()
        .map(|line| {
            let code = match line.as_bytes().first() {
                _ if line.starts_with("---") || line.starts_with("+++") => "\x1b[1m",
                Some(b'-') => "\x1b[31m",
                Some(b'+') => "\x1b[32m",
                Some(b'@') => "\x1b[36m",
                _ => "",
            };
            if code.is_empty() {
                format!("{line}\n")
            } else {
                format!("{code}{line}\x1b[0m\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKey;

    #[test]
    fn known_and_unknown_secrets_are_masked() {
        let key = MasterKey::from_text("0123456789abcdef0123456789abcdef").unwrap();
        let secrets = key.secrets_for("a.example");
        let known = secrets.form_secret.expose();
        let text = format!(
            "form_secret: \"{known}\"\nregistration_shared_secret: \"old-unknown\"\nserver_name: a\nPOSTGRES_PASSWORD=hunter2\n"
        );
        let masked = mask(&text, &secrets.all());
        assert!(
            !masked.contains(known)
                && !masked.contains("old-unknown")
                && !masked.contains("hunter2"),
            "{masked}"
        );
        assert!(masked.contains("server_name: a"));
    }

    #[test]
    fn a_diff_shows_the_changed_lines_only_around_context() {
        let diff = unified("f", "a\nb\nc\n", "a\nB\nc\n", &[], false);
        assert!(diff.contains("-b\n") && diff.contains("+B\n"), "{diff}");
    }
}
