//! Unified diffs of file changes, with every secret masked and every control character
//! shown escaped.

use std::time::Duration;

use similar::TextDiff;

use super::printable;
use crate::apply::files::{Fetched, MAX_DIFF_BYTES};
use crate::secrets::{Secret, is_secret_name};

const MASK: &str = "********";

/// Secrets shorter than this are masked by key and position only, not wherever their text
/// appears: masking every `1d` of a diff would make it unreadable. Derived secrets are 43
/// characters long.
const MIN_MASKED_BY_VALUE: usize = 6;

/// Flags and configuration directives whose next word is a secret although their name
/// does not say so: `redis-cli -a PASS`, and Redis' `requirepass PASS` and `masterauth
/// PASS` (names [`is_secret_name`] accepts only with a dash or a colon).
const SECRET_FLAGS: [&str; 3] = ["-a", "requirepass", "masterauth"];

/// `text` with every secret masked: those synprov knows (derived and given), and any value
/// a key or a position marks as secret, so that an old file on a host, whose secrets came
/// from another key or an older synprov, shows none either: `password: VALUE`,
/// `POSTGRES_PASSWORD=VALUE`, `--requirepass VALUE`, `requirepass VALUE`, `redis-cli -a
/// VALUE`, `"password": "VALUE"`, `REDISCLI_AUTH=VALUE`, `scheme://user:VALUE@host`.
pub fn mask(text: &str, secrets: &[&Secret]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut line = line.to_string();
        for secret in secrets {
            if secret.expose().len() >= MIN_MASKED_BY_VALUE {
                line = line.replace(secret.expose(), MASK);
            }
        }
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line.as_str(), ""),
        };
        match setting(body) {
            Some(Setting::Secret { key_end }) => {
                out.push_str(&body[..key_end]);
                out.push(' ');
                out.push_str(MASK);
            }
            Some(Setting::Plain) => out.push_str(body),
            None => out.push_str(&mask_words(body)),
        }
        out.push_str(end);
    }
    out
}

/// A line that is one setting whose key is secret.
enum Setting {
    /// Mask everything after `key_end` (the byte after the `:` or `=`).
    Secret { key_end: usize },
    /// Its value is no secret (empty: a table follows; or a boolean).
    Plain,
}

/// The line as a whole-line setting with a secret key (`key: value`, `KEY=value`,
/// `key = value`, `- KEY=value`), or `None` for any other line.
fn setting(line: &str) -> Option<Setting> {
    let rest = line.trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let at = rest.find([':', '='])?;
    let key = rest[..at].trim_end().trim_matches(['"', '\'']);
    if key.is_empty() || key.contains(char::is_whitespace) || !is_secret_name(key) {
        return None;
    }
    if is_plain(rest[at + 1..].trim()) {
        return Some(Setting::Plain);
    }
    Some(Setting::Secret {
        key_end: line.len() - rest.len() + at + 1,
    })
}

/// Values that are never secrets: nothing, booleans, null, an already masked value, and a
/// shell expansion (`$VAR`, `$(command)`), which names where the secret comes from.
fn is_plain(value: &str) -> bool {
    matches!(value, "" | MASK | "true" | "false" | "null" | "~") || value.starts_with('$')
}

/// The characters between words: a secret synprov writes never holds one, and they
/// delimit values in YAML flow lists, JSON, shell commands and query strings.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || "\"'`[]{}(),;&|<>".contains(c)
}

/// What the previous words say of the next one.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Anything,
    /// A secret-named bare word (`"password"`): a `:` or `=` word makes the next secret.
    Separator,
    Secret,
}

/// The line with each word masked that follows a secret flag or key (`-a W`,
/// `--requirepass W`, `requirepass W`, `password: W`, `"password": "W"`), and the value
/// of each secret assignment (`--password=W`, `REDISCLI_AUTH=W`) and URL password
/// (`//user:W@`).
fn mask_words(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut expect = Expect::Anything;
    let mut rest = line;
    loop {
        let gap = rest.find(|c| !is_separator(c)).unwrap_or(rest.len());
        out.push_str(&rest[..gap]);
        rest = &rest[gap..];
        if rest.is_empty() {
            return out;
        }
        let len = rest.find(is_separator).unwrap_or(rest.len());
        let word = &rest[..len];
        rest = &rest[len..];
        let bare_separator = word == ":" || word == "=";
        expect = match expect {
            Expect::Secret if bare_separator => Expect::Secret,
            Expect::Secret if !is_plain(word) => {
                out.push_str(MASK);
                expect = Expect::Anything;
                continue;
            }
            Expect::Separator if bare_separator => Expect::Secret,
            _ if SECRET_FLAGS.contains(&word) => Expect::Secret,
            _ if word.starts_with('-') && !word.contains('=') && is_secret_name(word) => {
                Expect::Secret
            }
            _ => match word.strip_suffix([':', '=']) {
                Some(key) if is_secret_name(key) => Expect::Secret,
                Some(_) => Expect::Anything,
                None if is_secret_name(word) => Expect::Separator,
                None => Expect::Anything,
            },
        };
        out.push_str(&mask_in_word(word));
    }
}

/// `word` with the value of a secret assignment (`KEY=VALUE`, `--key=VALUE`) or the
/// password of a URL (`scheme://user:PASSWORD@host`) masked.
fn mask_in_word(word: &str) -> String {
    if let Some((key, value)) = word.split_once('=')
        && is_secret_name(key)
        && !is_plain(value)
    {
        return format!("{key}={MASK}");
    }
    if let Some(scheme_end) = word.find("://") {
        let authority_start = scheme_end + 3;
        let authority = &word[authority_start..];
        let authority = &authority[..authority.find('/').unwrap_or(authority.len())];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            let start = authority_start + colon + 1;
            let end = authority_start + at;
            return format!("{}{MASK}{}", &word[..start], &word[end..]);
        }
    }
    word.to_string()
}

/// How long one file's diff may take. Myers' algorithm is quadratic in the lines that
/// differ: two files of many distinct lines took minutes of CPU. Past this time, `similar`
/// stops looking for the smallest diff and shows what is left as removed and added lines.
const DIFF_TIME: Duration = Duration::from_secs(2);

/// The diff of a file that changes from `old` (as fetched from the host) to `new`, as
/// [`unified`] makes it; when either side is over [`MAX_DIFF_BYTES`], a line that gives
/// both sizes instead.
pub fn changed(path: &str, old: &Fetched, new: &str, secrets: &[&Secret], color: bool) -> String {
    match old {
        Fetched::Text(old)
            if old.len() as u64 <= MAX_DIFF_BYTES && new.len() as u64 <= MAX_DIFF_BYTES =>
        {
            unified(path, old, new, secrets, color)
        }
        _ => {
            let before = match old {
                Fetched::Text(old) => old.len() as u64,
                Fetched::TooLarge { bytes } => *bytes,
            };
            format!(
                "(changed, {before} bytes on the host, {} bytes now: diff omitted above {MAX_DIFF_BYTES} bytes)\n",
                new.len()
            )
        }
    }
}

/// The unified diff of `old` and `new` for `path`, masked and with control characters
/// escaped, coloured when `color`; at most [`DIFF_TIME`] is spent looking for it.
pub fn unified(path: &str, old: &str, new: &str, secrets: &[&Secret], color: bool) -> String {
    let old = printable(&mask(old, secrets)).into_owned();
    let new = printable(&mask(new, secrets)).into_owned();
    let path = printable(path);
    let text = TextDiff::configure()
        .timeout(DIFF_TIME)
        .diff_lines(&old, &new)
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
        let key = MasterKey::from_text("Gx7q2LmP9vR4tY8wZ1aB6cD3eF5hJ0kN").unwrap();
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
    fn secrets_are_masked_by_key_and_by_position_whatever_their_value() {
        for (line, masked) in [
            (
                r#"      test: ["CMD", "redis-cli", "-s", "/sockets/r.sock", "--no-auth-warning", "-a", "OLDPASS", "ping"]"#,
                r#"      test: ["CMD", "redis-cli", "-s", "/sockets/r.sock", "--no-auth-warning", "-a", "********", "ping"]"#,
            ),
            (
                "    command: redis-server --bind 10.0.0.1 --requirepass OLDPASS --port 6379",
                "    command: redis-server --bind 10.0.0.1 --requirepass ******** --port 6379",
            ),
            ("requirepass OLDPASS", "requirepass ********"),
            ("masterauth OLDPASS", "masterauth ********"),
            (
                "    command: app --password=OLDPASS --db-token OLD2",
                "    command: app --password=******** --db-token ********",
            ),
            (
                "      - REDISCLI_AUTH=OLDPASS",
                "      - REDISCLI_AUTH= ********",
            ),
            (
                "  test: sh -c 'REDISCLI_AUTH=OLDPASS redis-cli ping'",
                "  test: sh -c 'REDISCLI_AUTH=******** redis-cli ping'",
            ),
            ("SMTP_PASS=OLDPASS", "SMTP_PASS= ********"),
            (
                "  test: REDISCLI_AUTH=$$(sed -n 's/^requirepass //p' /r.conf) redis-cli ping",
                "  test: REDISCLI_AUTH=$$(sed -n 's/^requirepass //p' /r.conf) redis-cli ping",
            ),
            ("    password: OLDPASS", "    password: ********"),
            ("  api_key: 'OLDPASS'", "  api_key: ********"),
            (
                r#"  x: {"client_secret": "OLDPASS", "id": "app"}"#,
                r#"  x: {"client_secret": "********", "id": "app"}"#,
            ),
            (
                "  url: postgres://synapse:OLDPASS@db:5432/synapse?sslmode=off",
                "  url: postgres://synapse:********@db:5432/synapse?sslmode=off",
            ),
            (
                "  dsn: host=db user=synapse password=OLDPASS",
                "  dsn: host=db user=synapse password=********",
            ),
        ] {
            assert_eq!(mask(line, &[]), masked);
        }
    }

    #[test]
    fn paths_flags_and_booleans_near_secret_words_stay_readable() {
        for line in [
            "signing_key_path: \"/data/a.example.signing.key\"",
            "registration_shared_secret_path: /run/secrets/reg",
            "password_config:",
            "  enabled: true",
            "registration_requires_token: false",
            "suppress_key_server_warning: true",
            "  command: redis-cli -s /sockets/r.sock --no-auth-warning ping",
            "  url: https://example.org/_matrix/client",
            "# the password is derived from the master key",
        ] {
            assert_eq!(mask(line, &[]), line);
        }
    }

    #[test]
    fn a_diff_of_an_old_compose_file_shows_no_old_redis_password() {
        let old = "services:\n  redis:\n    command: \"redis-server --bind 10.0.0.1 --port 6379 --requirepass OLDPASS --unixsocket /sockets/r.sock\"\n    healthcheck:\n      test: [\"CMD\", \"redis-cli\", \"-s\", \"/sockets/r.sock\", \"--no-auth-warning\", \"-a\", \"OLDPASS\", \"ping\"]\n";
        let new = "services:\n  redis:\n    command: \"redis-server /usr/local/etc/redis/redis.conf\"\n    healthcheck:\n      test: [\"CMD-SHELL\", \"true\"]\n";
        let diff = unified("docker-compose.yml", old, new, &[], false);
        assert!(
            diff.contains("-      test:") && !diff.contains("OLDPASS"),
            "{diff}"
        );
    }

    #[test]
    fn a_diff_shows_control_characters_escaped() {
        let diff = unified("f\x1b]0;x\x07", "a\n", "a\x1b[2J\rb\tc\n", &[], false);
        assert!(!diff.contains(['\x1b', '\r', '\x07']), "{diff:?}");
        assert!(diff.contains("+a\\x1b[2J\\x0db\tc\n"), "{diff}");
    }

    /// Lines `from..to`, each distinct.
    fn numbered(from: usize, to: usize) -> String {
        (from..to).map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn a_file_of_many_distinct_lines_on_each_side_is_shown_as_omitted() {
        let (old, new) = (numbered(0, 200_000), numbered(200_000, 400_000));
        let shown = changed("big", &Fetched::Text(old.clone()), &new, &[], false);
        assert_eq!(
            shown,
            format!(
                "(changed, {} bytes on the host, {} bytes now: diff omitted above 1048576 bytes)\n",
                old.len(),
                new.len()
            )
        );
    }

    #[test]
    fn a_diff_of_distinct_lines_under_the_limit_completes_and_shows_every_line() {
        let (old, new) = (numbered(0, 60_000), numbered(60_000, 120_000));
        assert!(old.len() as u64 <= MAX_DIFF_BYTES && new.len() as u64 <= MAX_DIFF_BYTES);
        let diff = changed("f", &Fetched::Text(old), &new, &[], false);
        assert!(
            diff.contains("\n-line 0\n") && diff.contains("\n+line 119999\n"),
            "{}",
            &diff[..200]
        );
    }

    #[test]
    fn a_file_just_over_the_limit_on_either_side_names_its_size_without_a_diff() {
        let over = "x".repeat(MAX_DIFF_BYTES as usize + 1);
        let from_host = changed(
            "f",
            &Fetched::TooLarge { bytes: 5 << 30 },
            "a\n",
            &[],
            false,
        );
        assert_eq!(
            from_host,
            "(changed, 5368709120 bytes on the host, 2 bytes now: diff omitted above 1048576 bytes)\n"
        );
        let rendered = changed("f", &Fetched::Text("a\n".into()), &over, &[], false);
        assert!(
            rendered.contains("2 bytes on the host, 1048577 bytes now: diff omitted"),
            "{rendered}"
        );
        let at_limit = "x".repeat(MAX_DIFF_BYTES as usize);
        let diff = changed("f", &Fetched::Text("a\n".into()), &at_limit, &[], false);
        assert!(diff.starts_with("--- a/f"), "{}", &diff[..100]);
    }

    #[test]
    fn a_diff_shows_the_changed_lines_only_around_context() {
        let diff = unified("f", "a\nb\nc\n", "a\nB\nc\n", &[], false);
        assert!(diff.contains("-b\n") && diff.contains("+B\n"), "{diff}");
    }
}
