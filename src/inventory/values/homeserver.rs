//! The `[deployments.NAME.homeserver]` table: free Synapse settings, checked for what YAML
//! (as Synapse's PyYAML reads it) or Synapse could not take with the meaning written.

/// The longest key of the table.
const MAX_KEY_LEN: usize = 256;

/// A value the table may not hold: the dotted key path and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub path: String,
    pub why: String,
}

/// Refuses TOML datetimes (Synapse has no datetime setting, and they would reach YAML as
/// odd strings), NaN and infinities, the YAML merge key `<<` (PyYAML would merge instead of
/// setting it), control characters other than newline and tab, and empty tables (merged
/// over a default that is not a table, such as `listeners`, one would silently remove it).
pub fn check_homeserver_table(table: &toml::Table) -> Result<(), Refusal> {
    for (key, value) in table {
        check_entry(key, value, key)?;
    }
    Ok(())
}

fn check_entry(key: &str, value: &toml::Value, path: &str) -> Result<(), Refusal> {
    let refuse = |why: &str| {
        Err(Refusal {
            path: path.to_string(),
            why: why.to_string(),
        })
    };
    if key == "<<" {
        return refuse(
            "`<<` is YAML's merge key: Synapse would merge the value instead of setting a key",
        );
    }
    if key.chars().any(char::is_control) {
        return refuse("a key holds a control character");
    }
    // YAML allows an implicit key of at most 1024 characters; no Synapse setting comes near.
    if key.len() > MAX_KEY_LEN {
        return refuse("a key is longer than 256 bytes: no Synapse setting is");
    }
    match value {
        toml::Value::Datetime(_) => {
            refuse("a TOML date or time has no meaning in homeserver.yaml: write it as a string")
        }
        toml::Value::Float(f) if !f.is_finite() => {
            refuse("NaN and infinities are not settings: give a finite number")
        }
        toml::Value::String(s) if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            refuse("a string holds a control character other than newline and tab")
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                check_entry("", item, &format!("{path}[{index}]"))?;
            }
            Ok(())
        }
        toml::Value::Table(table) if table.is_empty() => refuse(
            "an empty table sets nothing where the default is a table, and replaces the default with nothing where it is not: remove it, or give the settings it should hold",
        ),
        toml::Value::Table(table) => {
            for (k, v) in table {
                check_entry(k, v, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), Refusal> {
        check_homeserver_table(&text.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn yaml_merge_keys_datetimes_and_non_finite_numbers_are_refused_with_their_path() {
        assert_eq!(check("a = { \"<<\" = 1 }").unwrap_err().path, "a.<<");
        assert_eq!(check("when = 1979-05-27").unwrap_err().path, "when");
        assert_eq!(check("x = [1, nan]").unwrap_err().path, "x[1]");
        assert!(check("x = inf").is_err());
        assert!(check(&format!("{} = 0", "a".repeat(1025))).is_err());
        assert!(check("x = \"a\\u001bb\"").is_err());
        assert_eq!(check("listeners = {}").unwrap_err().path, "listeners");
        assert_eq!(
            check("redis = { enabled = true }\n[database.args]\n")
                .unwrap_err()
                .path,
            "database.args"
        );
        assert_eq!(check("x = [1, {}]").unwrap_err().path, "x[1]");
        assert!(
            check("max_upload_size = \"50M\"\nurl_preview = { ok = true, n = 1.5 }\nt = \"a\\nb\"")
                .is_ok()
        );
    }
}
