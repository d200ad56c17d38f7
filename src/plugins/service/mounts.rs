//! Mounts and files of a plugin's service: bind mounts only of the plugin's own directory,
//! relative paths rewritten into it (`./conf` is `./plugins/NAME/conf`), no named volumes,
//! no `env_file` from elsewhere; and which mounts the container may write to.

use serde_norway::{Mapping, Value};

use super::{Refusal, Rules, plain_keys, refuse, show};

/// A bind mount the container may write to: its field and its source, relative to the
/// deploy directory (`plugins/NAME/...`). synprov must never write a file below it: the
/// container could put a symbolic link there that synprov's next write would follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritableMount {
    pub field: String,
    pub source: String,
}

impl Rules<'_> {
    pub(super) fn volumes(&self, value: &mut Value) -> Result<Vec<WritableMount>, Refusal> {
        let list = value
            .as_sequence_mut()
            .ok_or_else(|| refuse("volumes", "is not a list"))?;
        let mut writable = Vec::new();
        for (i, volume) in list.iter_mut().enumerate() {
            let field = format!("volumes[{i}]");
            let bind = match volume {
                Value::String(text) => {
                    let (rewritten, bind) = self.short_volume(&field, text)?;
                    *text = rewritten;
                    bind
                }
                Value::Mapping(map) => self.long_volume(&field, map)?,
                _ => return Err(refuse(&field, "is not a volume")),
            };
            if let Some((source, read_only)) = bind
                && !read_only
            {
                writable.push(WritableMount {
                    field,
                    source: source.trim_start_matches("./").to_string(),
                });
            }
        }
        Ok(writable)
    }

    /// The rewritten mount, and its bind source with whether it is read-only.
    fn short_volume(
        &self,
        field: &str,
        text: &str,
    ) -> Result<(String, Option<(String, bool)>), Refusal> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [target] if target.starts_with('/') => return Ok((text.to_string(), None)),
            [source, target] => (*source, *target, None),
            [source, target, mode] => (*source, *target, Some(*mode)),
            _ => {
                return Err(refuse(
                    field,
                    format!("`{text}` is not `./DIR:/PATH[:MODE]`"),
                ));
            }
        };
        if !target.starts_with('/') {
            return Err(refuse(field, format!("`{text}` mounts at a relative path")));
        }
        if let Some(mode) = mode
            && !mode
                .split(',')
                .all(|m| ["ro", "rw", "z", "Z", "cached", "delegated", "consistent"].contains(&m))
        {
            return Err(refuse(
                field,
                format!(
                    "`{text}` has the mode `{mode}`: only ro, rw, z, Z, cached, delegated, consistent"
                ),
            ));
        }
        let source = self.bind_source(field, source)?;
        let read_only = mode.is_some_and(|m| m.split(',').any(|m| m == "ro"));
        let rewritten = match mode {
            Some(mode) => format!("{source}:{target}:{mode}"),
            None => format!("{source}:{target}"),
        };
        Ok((rewritten, Some((source, read_only))))
    }

    /// Checks and rewrites a long-syntax mount; returns its bind source with whether it is
    /// read-only.
    fn long_volume(
        &self,
        field: &str,
        map: &mut Mapping,
    ) -> Result<Option<(String, bool)>, Refusal> {
        let allowed = [
            "type",
            "source",
            "target",
            "read_only",
            "bind",
            "volume",
            "tmpfs",
            "consistency",
        ];
        if let Some(key) = map
            .keys()
            .find(|k| k.as_str().is_none_or(|k| !allowed.contains(&k)))
        {
            return Err(refuse(
                field,
                format!("sets {}, which a plugin's volume may not", show(key)),
            ));
        }
        let sub_ok = |name: &str, keys: &[&str]| {
            map.get(name)
                .is_none_or(|v| v.as_mapping().is_some_and(|m| plain_keys(m, keys)))
        };
        if !sub_ok("bind", &["create_host_path", "selinux"])
            || !sub_ok("volume", &["nocopy"])
            || !sub_ok("tmpfs", &["size", "mode"])
        {
            return Err(refuse(
                field,
                "sets bind, volume or tmpfs options a plugin's volume may not (bind propagation, subpaths)",
            ));
        }
        let source = map
            .get("source")
            .map(|s| s.as_str().unwrap_or_default().to_string());
        match (map.get("type").and_then(Value::as_str), source) {
            (Some("bind"), Some(source)) => {
                let rewritten = self.bind_source(field, &source)?;
                map.insert("source".into(), rewritten.clone().into());
                let read_only = map.get("read_only").and_then(Value::as_bool) == Some(true);
                Ok(Some((rewritten, read_only)))
            }
            (Some("volume" | "tmpfs"), None) => Ok(None),
            (Some("volume"), Some(source)) => Err(refuse(
                field,
                format!(
                    "mounts the named volume `{source}`: a plugin's service may mount only directories of its own"
                ),
            )),
            _ => Err(refuse(
                field,
                "is not a bind mount with a source, an anonymous volume or a tmpfs",
            )),
        }
    }

    /// A bind mount's source: a path inside the plugin's directory, rewritten to
    /// `./plugins/NAME/...`; anything else is named in the refusal.
    fn bind_source(&self, field: &str, source: &str) -> Result<String, Refusal> {
        if let Some(inside) = self.inside(source, true) {
            return Ok(inside);
        }
        let why = if source.ends_with("docker.sock") {
            format!("mounts the Docker socket (`{source}`), which is root on the host")
        } else if source.starts_with(['/', '~', '.']) {
            format!(
                "mounts `{source}`, outside the plugin's own directory: a plugin's service may mount only `./PATH` (its directory plugins/{}/ under the deploy directory)",
                self.plugin
            )
        } else {
            format!(
                "mounts the named volume `{source}`: a plugin's service may mount only directories of its own (`./PATH`)"
            )
        };
        Err(refuse(field, why))
    }

    /// `./a/b` (or `a/b` when `dot` is false) as `./plugins/NAME/a/b`; None when the path
    /// is not plain and relative.
    fn inside(&self, path: &str, dot: bool) -> Option<String> {
        let rest = match path.strip_prefix("./") {
            Some(rest) => rest,
            None if path == "." => "",
            None if !dot => path,
            None => return None,
        };
        let plain = rest.is_empty()
            || rest
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\\'));
        let base = format!("./plugins/{}", self.plugin);
        plain.then(|| {
            if rest.is_empty() {
                base
            } else {
                format!("{base}/{rest}")
            }
        })
    }

    pub(super) fn env_files(&self, value: &mut Value) -> Result<(), Refusal> {
        let rewrite = |path: &mut Value, field: String| -> Result<(), Refusal> {
            let text = path.as_str().unwrap_or_default();
            let inside = self.inside(text, false).ok_or_else(|| {
                refuse(
                    &field,
                    format!("reads `{text}`, not a file in the plugin's own directory"),
                )
            })?;
            *path = inside.into();
            Ok(())
        };
        match value {
            Value::String(_) => rewrite(value, "env_file".into()),
            Value::Sequence(list) => {
                for (i, entry) in list.iter_mut().enumerate() {
                    let field = format!("env_file[{i}]");
                    match entry {
                        Value::Mapping(map) if plain_keys(map, &["path", "required", "format"]) => {
                            let path = map
                                .get_mut("path")
                                .ok_or_else(|| refuse(&field, "has no path"))?;
                            rewrite(path, field)?;
                        }
                        other => rewrite(other, field)?,
                    }
                }
                Ok(())
            }
            _ => Err(refuse("env_file", "is not a file or a list of files")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition after the check, and the mounts the container may write to.
    fn checked(definition: &str) -> (String, Vec<String>) {
        let mut value: Value = serde_norway::from_str(definition).unwrap();
        let rules = Rules {
            plugin: "p",
            allow: &[],
            own: &[],
        };
        let writable = rules
            .check(&mut value)
            .unwrap()
            .into_iter()
            .map(|m| format!("{} {}", m.field, m.source))
            .collect();
        (serde_norway::to_string(&value).unwrap(), writable)
    }

    #[test]
    fn writable_bind_mounts_are_reported_read_only_ones_not() {
        let (_, writable) = checked(
            "image: x\nvolumes: ['./conf:/c:ro', './data:/d', './logs:/l:rw,z', {type: bind, source: ./state, target: /s}, {type: bind, source: ./k, target: /k, read_only: true}]\n",
        );
        assert_eq!(
            writable,
            [
                "volumes[1] plugins/p/data",
                "volumes[2] plugins/p/logs",
                "volumes[3] plugins/p/state"
            ]
        );
    }

    #[test]
    fn relative_paths_are_rewritten_into_the_plugins_directory() {
        let (text, _) = checked(
            "image: x\nvolumes: ['./conf:/etc/x:ro', '.:/all', {type: bind, source: ./data, target: /data}, '/scratch']\nenv_file: [app.env, {path: ./b.env}]\n",
        );
        for expected in [
            "./plugins/p/conf:/etc/x:ro",
            "./plugins/p:/all",
            "source: ./plugins/p/data",
            "- /scratch",
            "- ./plugins/p/app.env",
            "path: ./plugins/p/b.env",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
