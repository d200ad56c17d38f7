//! The Handlebars templates of every rendered file: embedded from `roles/`, each
//! replaceable by a file of the same path in a directory the user gives.

use std::path::Path;

use handlebars::{Handlebars, handlebars_helper};
use rust_embed::RustEmbed;
use serde::Serialize;

use super::RenderError;

#[derive(RustEmbed)]
#[folder = "roles/"]
#[include = "*/templates/*.hbs"]
struct Embedded;

/// The template set used for one run.
pub struct Templates {
    registry: Handlebars<'static>,
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
        for path in Embedded::iter() {
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
            registry
                .register_template_string(&template_name(&path), text)
                .map_err(|e| RenderError::Template {
                    name: path.to_string(),
                    message: e.to_string(),
                })?;
        }
        Ok(Templates { registry })
    }

    /// Renders template `name` (`role/file`, e.g. `nginx/maps.conf`) with `context`.
    pub fn render(&self, name: &str, context: &impl Serialize) -> Result<String, RenderError> {
        self.registry
            .render(name, context)
            .map_err(|e| RenderError::Template {
                name: name.to_string(),
                message: e.to_string(),
            })
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
            .render("nginx/private.conf", &serde_json::json!({}))
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
