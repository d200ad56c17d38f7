//! YAML that PyYAML, the parser Synapse reads its config with, reads back as the same value.
//!
//! PyYAML implements YAML 1.1, where a plain `yes`, `on` or `n` is a boolean and `1e300`
//! (no dot) is a string; general emitters (serde_norway) follow YAML 1.2 and write them
//! bare. So this emitter quotes every string and key that is not a plain identifier of no
//! special meaning, and writes every float with a dot and a signed exponent.

use std::fmt::Write;

use serde_json::{Map, Number, Value};

/// `value` (a mapping) as a block-style YAML document.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(map, 0, false, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// With `after_dash`, the first key follows a sequence item's `- ` on its line.
fn mapping(map: &Map<String, Value>, indent: usize, after_dash: bool, out: &mut String) {
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 || !after_dash {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&self::key(key));
        out.push(':');
        nested(value, indent + 2, out);
    }
}

fn sequence(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => mapping(map, indent + 2, true, out),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                sequence(inner, indent + 2, out);
            }
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

/// A value after `key:`: on the same line when it is a scalar or empty.
fn nested(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            mapping(map, indent, false, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            sequence(items, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => quoted(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Integers as they are; floats always with a dot and, when they have an exponent, a signed
/// one (`1.0e+300`), as YAML 1.1's float pattern requires.
fn number(n: &Number) -> String {
    match n.as_f64().filter(|_| n.is_f64()) {
        Some(f) => {
            let text = format!("{f:?}");
            match text.split_once('e') {
                Some((mantissa, exponent)) => {
                    let mantissa = if mantissa.contains('.') {
                        mantissa.to_string()
                    } else {
                        format!("{mantissa}.0")
                    };
                    let sign = if exponent.starts_with('-') { "" } else { "+" };
                    format!("{mantissa}e{sign}{exponent}")
                }
                None => text,
            }
        }
        None => n.to_string(),
    }
}

/// A key bare when it is a lowercase identifier that means nothing else in YAML 1.1.
fn key(text: &str) -> String {
    const SPECIAL: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "inf", "nan",
    ];
    let identifier = text.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if identifier && !SPECIAL.contains(&text) {
        text.to_string()
    } else {
        quoted(text)
    }
}

/// A double-quoted scalar: JSON's escapes are a subset of YAML's, and serde_json escapes
/// every control character.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    let _ = write!(out, "{}", Value::String(text.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_and_floats_keep_their_yaml_1_1_meaning() {
        let value = json!({
            "server_name": "example.org",
            "on": "yes",
            "big": 1e300,
            "small": 1.5e-7,
            "plain": 0.5,
            "count": 3,
            "list": [{"a": 1, "b": [true, null]}, "x", []],
            "empty": {},
            "nested": {"deep": {"x": "y"}},
            "text": "a\nb: c\u{1b}",
        });
        assert_eq!(
            to_string(&value),
            "big: 1.0e+300\ncount: 3\nempty: {}\nlist:\n  - a: 1\n    b:\n      - true\n      - null\n  - \"x\"\n  - []\nnested:\n  deep:\n    x: \"y\"\n\"on\": \"yes\"\nplain: 0.5\nserver_name: \"example.org\"\nsmall: 1.5e-7\ntext: \"a\\nb: c\\u001b\"\n"
        );
    }
}
