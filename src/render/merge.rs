//! Settings merged over the rendered homeserver.yaml: first the plugins' (a key synprov or
//! another plugin already sets to another value is a conflict), then the inventory's
//! `homeserver` table (the user's word wins).

use serde_json::{Map, Value};

use super::RenderError;
use crate::plugins::{Contribution, PluginError};

const PATH: &str = "synapse/homeserver.yaml";

pub fn homeserver(
    yaml: &mut String,
    contributions: &[Contribution],
    extra: &Map<String, Value>,
) -> Result<(), RenderError> {
    let additions: Vec<(&str, &Value)> = contributions
        .iter()
        .filter_map(|c| c.homeserver.as_ref().map(|h| (c.plugin.as_str(), h)))
        .collect();
    if additions.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let invalid = |e: &dyn std::fmt::Display| RenderError::InvalidYaml {
        path: PATH.into(),
        message: e.to_string(),
    };
    let mut base: Value = serde_norway::from_str(yaml).map_err(|e| invalid(&e))?;
    for (plugin, addition) in &additions {
        merge_strict(&mut base, addition, "").map_err(|(key, old, new)| {
            PluginError::BadOutput {
                plugin: plugin.to_string(),
                message: format!(
                    "it sets `{key}` in homeserver.yaml to {new}, which is already set to {old}"
                ),
            }
        })?;
    }
    merge_over(&mut base, &Value::Object(extra.clone()));
    let header: String = yaml
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut sources: Vec<String> = additions
        .iter()
        .map(|(plugin, _)| format!("plugin `{plugin}`"))
        .collect();
    if !extra.is_empty() {
        sources.push("the inventory's `homeserver` table".into());
    }
    *yaml = format!(
        "{header}# Settings from {} are merged in.\n{}",
        sources.join(", "),
        super::pyyaml::to_string(&base)
    );
    Ok(())
}

/// `extra` over `base`: its keys win, tables merge key by key.
fn merge_over(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge_over(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra.clone(),
    }
}

/// `addition` into `base`: tables merge key by key; setting a key that holds another value
/// is a conflict, returned as (dotted key, old value, new value).
fn merge_strict(
    base: &mut Value,
    addition: &Value,
    prefix: &str,
) -> Result<(), (String, String, String)> {
    let (Value::Object(base), Value::Object(addition)) = (base, addition) else {
        unreachable!("both sides are mappings")
    };
    for (key, value) in addition {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match base.get_mut(key) {
            None => {
                base.insert(key.clone(), value.clone());
            }
            Some(old) if old == value => {}
            Some(old) if old.is_object() && value.is_object() => {
                merge_strict(old, value, &dotted)?;
            }
            Some(old) => return Err((dotted, old.to_string(), value.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plugin_may_add_but_not_change() {
        let mut base = json!({ "a": 1, "t": { "x": 1 } });
        assert!(merge_strict(&mut base, &json!({ "b": 2, "t": { "y": 2 } }), "").is_ok());
        assert_eq!(base, json!({ "a": 1, "b": 2, "t": { "x": 1, "y": 2 } }));
        let conflict = merge_strict(&mut base, &json!({ "t": { "x": 5 } }), "").unwrap_err();
        assert_eq!(conflict, ("t.x".into(), "1".into(), "5".into()));
    }

    #[test]
    fn the_inventory_wins() {
        let mut base = json!({ "a": 1, "t": { "x": 1 } });
        merge_over(&mut base, &json!({ "t": { "x": 2 } }));
        assert_eq!(base, json!({ "a": 1, "t": { "x": 2 } }));
    }
}
