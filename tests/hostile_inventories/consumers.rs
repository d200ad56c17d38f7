//! The rendered files read the way their consumers read them: PyYAML (Synapse's parser),
//! Nginx's tokenizer and `nginx -t`, Compose's own `config`, Postgres' rules for
//! `postgresql.conf`, and `KEY=VALUE` env files.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value as Json;

// --- YAML, as Synapse reads it ---

/// For each line of stdin (a JSON list of paths), loads each file with PyYAML's
/// `safe_load` (what Synapse does) and prints one line of JSON: for each path, the value or
/// the error. Values JSON cannot hold exactly are tagged: `{"$float": REPR}` (Python's
/// shortest exact text, `nan` and `inf` included), `{"$timestamp": ISO}`, `{"$map": [[k, v],
/// ...]}` for keys that are not strings, `{"$other": TYPE}`.
const PYYAML: &str = r#"
import datetime, json, sys, yaml

def plain(v):
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return {"$float": repr(v)}
    if isinstance(v, (datetime.date, datetime.datetime)):
        return {"$timestamp": v.isoformat()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v):
            return {k: plain(x) for k, x in v.items()}
        return {"$map": [[plain(k), plain(x)] for k, x in v.items()]}
    return {"$other": type(v).__name__}

for line in sys.stdin:
    out = {}
    for path in json.loads(line):
        try:
            with open(path, encoding="utf-8") as f:
                out[path] = {"value": plain(yaml.safe_load(f))}
        except Exception as e:
            out[path] = {"error": "%s: %s" % (type(e).__name__, e)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"#;

/// Fails the test, saying what to install, when `python3` cannot import PyYAML.
pub fn require_pyyaml() {
    let found = Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs PyYAML, the YAML parser Synapse reads its config with: install it with `apt-get install python3-yaml` (or `pip install pyyaml`), or run scripts/install-test-deps.sh"
    );
}

/// One Python process for the whole run (its start costs more than the loading). It ends
/// when the test process does: its stdin closes.
struct Loader {
    _process: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn loader() -> &'static Mutex<Loader> {
    static LOADER: OnceLock<Mutex<Loader>> = OnceLock::new();
    LOADER.get_or_init(|| {
        require_pyyaml();
        let mut child = Command::new("python3")
            .args(["-c", PYYAML])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Mutex::new(Loader {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            _process: child,
        })
    })
}

/// Every file of `paths` as PyYAML loads it: the value, or the parser's error.
pub fn pyyaml(paths: &[PathBuf]) -> BTreeMap<PathBuf, Result<Json, String>> {
    let mut loader = loader()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut request = serde_json::to_string(paths).unwrap();
    request.push('\n');
    loader.stdin.write_all(request.as_bytes()).unwrap();
    loader.stdin.flush().unwrap();
    let mut answer = String::new();
    loader.stdout.read_line(&mut answer).unwrap();
    assert!(
        !answer.is_empty(),
        "the PyYAML loader stopped (see its error above)"
    );
    let answers: BTreeMap<PathBuf, Json> = serde_json::from_str(&answer).unwrap();
    answers
        .into_iter()
        .map(|(path, answer)| {
            let result = match answer.get("error") {
                Some(error) => Err(error.as_str().unwrap_or_default().to_string()),
                None => Ok(answer["value"].clone()),
            };
            (path, result)
        })
        .collect()
}

// --- Nginx ---

/// A directive as Nginx's parser sees it: name, arguments (quotes removed), and whether it
/// opens a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: bool,
}

/// The directives of one Nginx file, by the rules of Nginx's `ngx_conf_read_token`: words
/// end at whitespace, `;` and `{` (not the `{` of `${name}`); `}` closes a block only where
/// a word would start; `#` starts a comment only there too; `"` and `'` quote, and `\`
/// escapes the next character. An error means Nginx could not read the file either
/// (an unclosed quote or block, a stray `}`).
pub fn nginx_directives(text: &str) -> Result<Vec<Directive>, String> {
    let mut directives = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            ';' | '{' => {
                let mut words = std::mem::take(&mut words).into_iter();
                let name = words.next().ok_or(format!("`{c}` without a directive"))?;
                directives.push(Directive {
                    name,
                    args: words.collect(),
                    block: c == '{',
                });
                if c == '{' {
                    depth += 1;
                }
            }
            '}' => {
                if !words.is_empty() {
                    return Err(format!("`}}` after `{}` without `;`", words.join(" ")));
                }
                depth = depth.checked_sub(1).ok_or("a `}` closes no block")?;
            }
            '"' | '\'' => {
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => return Err("an unclosed quote".into()),
                        Some('\\') => word.extend(chars.next()),
                        Some(q) if q == c => break,
                        Some(other) => word.push(other),
                    }
                }
                words.push(word);
            }
            _ => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    // Inside a word only whitespace, `;` and `{` end it: `}` is part of
                    // it, and so is the `{` of a `${variable}`.
                    let variable = word.ends_with('$') && next == '{';
                    if next.is_whitespace() || next == ';' || (next == '{' && !variable) {
                        break;
                    }
                    chars.next();
                    if next == '\\' {
                        word.extend(chars.next());
                    } else {
                        word.push(next);
                    }
                }
                words.push(word);
            }
        }
    }
    if !words.is_empty() {
        return Err(format!("`{}` without `;` at the end", words.join(" ")));
    }
    if depth != 0 {
        return Err(format!("{depth} block(s) not closed"));
    }
    Ok(directives)
}

// --- Compose ---

/// `docker compose config --format json` in `dir`, as synprov runs Compose on a host: in
/// the deployment's directory, with no `-f`. The merged model, or Compose's error.
pub fn compose_config(dir: &Path) -> Result<Json, String> {
    let command = crate::common::compose();
    let output = Command::new(&command[0])
        .args(&command[1..])
        .args(["config", "--format", "json"])
        .current_dir(dir)
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("compose printed no JSON: {e}"))
}

// --- postgresql.conf ---

/// The settings of a `postgresql.conf`, in file order, by the rules of Postgres'
/// `guc-file.l`: `name = value` or `name value`, `#` comments, values quoted with `'` (a
/// quote doubled or after `\` is part of the value) or bare words. An error is a line
/// Postgres refuses.
pub fn postgres_settings(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (number, line) in text.split('\n').enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line:?}", number + 1);
        let mut rest = line.trim_start_matches([' ', '\t', '\r', '\x0c']);
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Err(at("not a setting name"));
        }
        rest = rest[name_end..].trim_start_matches([' ', '\t', '\r']);
        if let Some(after) = rest.strip_prefix('=') {
            rest = after.trim_start_matches([' ', '\t', '\r']);
        }
        let value = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(at("an unclosed quote")),
                    Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                    Some((i, '\'')) if quoted[i + 1..].starts_with('\'') => {
                        value.push('\'');
                        chars.next();
                    }
                    Some((i, '\'')) => break i + 1,
                    Some((_, c)) => value.push(c),
                }
            };
            rest = &quoted[end..];
            value
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '#')
                .unwrap_or(rest.len());
            let value = rest[..end].to_string();
            if value.is_empty() || value.contains(['\'', '=']) {
                return Err(at("not a value"));
            }
            rest = &rest[end..];
            value
        };
        let rest = rest.trim_start_matches([' ', '\t', '\r']);
        if !(rest.is_empty() || rest.starts_with('#')) {
            return Err(at("text after the value"));
        }
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

// --- env files ---

/// The `KEY=VALUE` lines of an env file, in order, skipping blank lines and `#` comments.
/// An error is a line of another shape.
pub fn env_lines(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .filter(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .ok_or_else(|| format!("not a KEY=VALUE line: {line:?}"))?;
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_words_split_at_semicolons_and_quotes_hold_them() {
        let directives =
            nginx_directives("# c { ;\nallow all; allow \"a; b\";\nlocation / { deny all; }\n")
                .unwrap();
        let names: Vec<(&str, Vec<&str>)> = directives
            .iter()
            .map(|d| (d.name.as_str(), d.args.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            names,
            [
                ("allow", vec!["all"]),
                ("allow", vec!["a; b"]),
                ("location", vec!["/"]),
                ("deny", vec!["all"]),
            ]
        );
        let tricky = nginx_directives("return 200 ${x}a}b;").unwrap();
        assert_eq!(tricky[0].args, ["200", "${x}a}b"]);
        assert!(nginx_directives("a {").is_err());
        assert!(nginx_directives("}").is_err());
        assert!(nginx_directives("allow 'x;").is_err());
    }

    #[test]
    fn postgres_settings_follow_its_quoting_and_comments() {
        let settings = postgres_settings(
            "# c\nport = 5432\ntimezone 'It''s # here' # c\nx = 'a\\'b'\n\nlog_timezone='UTC'",
        )
        .unwrap();
        assert_eq!(
            settings,
            [
                ("port".to_string(), "5432".to_string()),
                ("timezone".to_string(), "It's # here".to_string()),
                ("x".to_string(), "a'b".to_string()),
                ("log_timezone".to_string(), "UTC".to_string()),
            ]
        );
        assert!(postgres_settings("timezone = 'a\n'").is_err());
        assert!(postgres_settings("timezone = 'a' b").is_err());
    }

    #[test]
    fn env_files_are_key_value_lines() {
        assert_eq!(
            env_lines("# c\nA=1\n\nB_2=x=y\n").unwrap(),
            [("A".into(), "1".into()), ("B_2".into(), "x=y".into())]
        );
        assert!(env_lines("A=1\nEurope/Paris\n").is_err());
    }
}
