//! The Handlebars templates of every rendered file: embedded from `roles/`, each
//! replaceable by a file of the same path in a directory the user gives.

use std::path::Path;

use handlebars::{Handlebars, handlebars_helper};
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use super::RenderError;

#[derive(RustEmbed)]
#[folder = "roles/"]
#[include = "*/templates/*.hbs"]
struct Embedded;

/// The template set used for one run.
pub struct Templates {
    registry: Handlebars<'static>,
    sha256: String,
}

// A YAML scalar, quoted and escaped: a JSON string is a valid YAML double-quoted scalar,
// so no value from the inventory can break the document's structure.
handlebars_helper!(yaml: |value: Json| serde_json::to_string(value).unwrap_or_default());

impl Templates {
    /// The templates shipped in the binary, overridden by `ROLE/templates/NAME.hbs` files
    /// found in `override_dir`.
    pub fn load(override_dir: Option<&Path>) -> Result<Templates, RenderError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper("yaml", Box::new(yaml));
        let mut digest = Sha256::new();
        // Sorted: the hash must not depend on the order the files are listed in.
        let mut paths: Vec<_> = Embedded::iter().collect();
        paths.sort();
        for path in paths {
            let file = Embedded::get(&path).expect("listed by iter");
            let text = String::from_utf8_lossy(&file.data).into_owned();
            let text = match override_dir.map(|dir| dir.join(path.as_ref())) {
                Some(custom) if custom.is_file() => {
                    std::fs::read_to_string(&custom).map_err(|source| {
                        RenderError::TemplateRead {
                            path: custom.display().to_string(),
                            source,
                        }
                    })?
                }
                _ => text,
            };
            // Each name and text with its length first: no two sets hash alike.
            for part in [path.as_bytes(), text.as_bytes()] {
                digest.update((part.len() as u64).to_le_bytes());
                digest.update(part);
            }
            registry
                .register_template_string(&template_name(&path), text)
                .map_err(|e| RenderError::Template {
                    name: path.to_string(),
                    message: e.to_string(),
                })?;
        }
        Ok(Templates {
            registry,
            sha256: hex::encode(digest.finalize()),
        })
    }

    /// The SHA-256 of the templates in effect, built-in and overridden: a saved plan
    /// records it, and `apply PLAN` refuses templates that differ.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Renders template `name` (`role/file`, e.g. `nginx/maps.conf`) with `values`.
    pub fn render(&self, name: &str, values: &Values) -> Result<String, RenderError> {
        self.registry
            .render_with_context(name, &values.0)
            .map_err(|e| RenderError::Template {
                name: name.to_string(),
                message: e.to_string(),
            })
    }
}

/// What templates are rendered with, taken as it is: given a value to serialize instead,
/// handlebars copies the whole tree for every file (the six Nginx files share one, with
/// every route of Synapse's workers).
pub struct Values(handlebars::Context);

impl From<serde_json::Value> for Values {
    fn from(value: serde_json::Value) -> Values {
        Values(handlebars::Context::from(value))
    }
}

/// `nginx/templates/maps.conf.hbs` is registered as `nginx/maps.conf`.
fn template_name(path: &str) -> String {
    path.trim_end_matches(".hbs")
        .replacen("/templates/", "/", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_drop_the_templates_folder_and_extension() {
        assert_eq!(
            template_name("nginx/templates/maps.conf.hbs"),
            "nginx/maps.conf"
        );
    }

    #[test]
    fn the_hash_of_the_templates_changes_with_an_override_and_only_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let builtin = Templates::load(None).unwrap();
        let empty = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(builtin.sha256(), empty.sha256());
        std::fs::create_dir_all(dir.path().join("nginx/templates")).unwrap();
        std::fs::write(dir.path().join("nginx/templates/private.conf.hbs"), "x\n").unwrap();
        let custom = Templates::load(Some(dir.path())).unwrap();
        assert_ne!(custom.sha256(), builtin.sha256());
        assert_eq!(custom.sha256().len(), 64);
    }

    #[test]
    fn a_file_in_the_override_directory_replaces_the_embedded_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("nginx/templates")).unwrap();
        std::fs::write(
            dir.path().join("nginx/templates/private.conf.hbs"),
            "deny all; # custom\n",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let out = templates
            .render("nginx/private.conf", &serde_json::json!({}).into())
            .unwrap();
        assert_eq!(out, "deny all; # custom\n");
    }

    #[test]
    fn yaml_values_are_quoted_so_they_cannot_inject_keys() {
        let templates = Templates::load(None).unwrap();
        let out = templates
            .registry
            .render_template("k: {{yaml v}}", &serde_json::json!({"v": "a\nevil: true"}))
            .unwrap();
        assert_eq!(out, "k: \"a\\nevil: true\"");
    }
}
