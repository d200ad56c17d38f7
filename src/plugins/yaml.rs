//! YAML from a plugin, parsed into a value only when it has no aliases and no merge keys.
//!
//! Aliases are expanded once the text is parsed: eight kilobytes of flat alias fan-out
//! become megabytes of docker-compose.yml or homeserver.yaml. Merge keys (`<<`) are read
//! differently by the consumers (Compose merges, PyYAML refuses some forms Synapse would
//! otherwise accept). Plain data needs neither, so both are refused. Aliases are found by
//! an event parser, which reports each one before anything is expanded.

use saphyr_parser::{Event, Parser};
use serde_norway::Value;

/// The value of `text`; an alias, a merge key or a syntax error is refused with its line.
pub fn parse(text: &str) -> Result<Value, String> {
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| e.to_string())?;
        if let Event::Alias(_) = event {
            return Err(format!(
                "it uses a YAML alias at line {}: write the value out, aliases are not accepted from plugins",
                span.start.line()
            ));
        }
    }
    let value: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    no_merge_key(&value)?;
    Ok(value)
}

fn no_merge_key(value: &Value) -> Result<(), String> {
    match value {
        Value::Mapping(map) => map.iter().try_for_each(|(key, value)| {
            if key.as_str() == Some("<<") {
                return Err(
                    "it uses a YAML merge key (`<<`): write the keys out, merge keys are not accepted from plugins"
                        .to_string(),
                );
            }
            no_merge_key(key)?;
            no_merge_key(value)
        }),
        Value::Sequence(list) => list.iter().try_for_each(no_merge_key),
        Value::Tagged(tagged) => no_merge_key(&tagged.value),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_refused_wherever_they_are() {
        for text in [
            "a: &x 1\nb: *x\n",
            "a: &x [1]\nb: [*x, *x]\n",
            "- &x {a: 1}\n- {b: *x}\n",
            "? &k a\n: 1\n*k : 2\n",
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains("alias"), "{text:?}: {error}");
        }
    }

    #[test]
    fn merge_keys_are_refused_even_without_aliases() {
        let error = parse("a:\n  <<: {b: 1}\n").unwrap_err();
        assert!(error.contains("merge key"), "{error}");
        let error = parse("'<<': 1\n").unwrap_err();
        assert!(error.contains("merge key"), "{error}");
    }

    #[test]
    fn plain_data_and_anchors_alone_parse() {
        assert_eq!(
            parse("a: &x 1\nb: '*x'\nc: \"<<\"\n").unwrap()["b"].as_str(),
            Some("*x")
        );
        assert!(parse("{\"image\": \"x\"}").is_ok());
        assert!(parse("a: [1, 2").is_err());
    }
}
