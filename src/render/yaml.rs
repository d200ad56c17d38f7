//! Every rendered YAML file is read back before it leaves synprov: a template that emits
//! broken YAML (one of the user's own, given with `--roles`) must fail here, naming the file,
//! not on the host.
//!
//! The file is read as serde_norway reads it into a `Value` (libyaml's grammar, one document,
//! aliases only to known anchors, no key twice in a mapping), but nothing is kept: building
//! and dropping the value tree took a third of rendering a large fleet, and the tree was
//! never used.
//!
//! A document already read is not read again: the log configs (one per worker type) and
//! the workers' configs (one per worker name) are the same in every deployment, half of a
//! fleet's YAML.

use std::collections::HashSet;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_norway::Value;

use super::RenderError;

/// Refuses `contents` when `path` names a YAML file (`.yaml`, `.yml`, Synapse's
/// `.log.config`) that does not parse; other files pass unread.
pub fn check(path: &str, contents: &str) -> Result<(), RenderError> {
    let is_yaml =
        path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".log.config");
    if !is_yaml || READ.contains(contents) {
        return Ok(());
    }
    serde_norway::from_str::<Node>(contents).map_err(|e| RenderError::InvalidYaml {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    READ.insert(contents);
    Ok(())
}

/// Documents read and found valid, kept whole (so no two documents can be mistaken for one
/// another) while they are small and few: what repeats across a fleet's deployments is a
/// few dozen configs of workers and their logs, of a kilobyte or less each.
static READ: LazyLock<ReadDocuments> = LazyLock::new(ReadDocuments::default);

#[derive(Default)]
struct ReadDocuments(Mutex<HashSet<Box<str>>>);

impl ReadDocuments {
    const MOST: usize = 256;
    const LARGEST: usize = 2048;

    fn contains(&self, document: &str) -> bool {
        document.len() <= Self::LARGEST && self.0.lock().expect("read documents").contains(document)
    }

    fn insert(&self, document: &str) {
        let mut read = self.0.lock().expect("read documents");
        if document.len() <= Self::LARGEST && read.len() < Self::MOST {
            read.insert(document.into());
        }
    }
}

/// A YAML node read and dropped, with the checks deserializing a `Value` makes: the same
/// visits, so the same documents are refused with the same errors.
struct Node;

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(Node)
    }
}

impl<'de> Visitor<'de> for Node {
    type Value = Node;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node)
    }

    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node)
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Node, A::Error> {
        while items.next_element::<Node>()?.is_some() {}
        Ok(Node)
    }

    /// Keys are read whole (they are short), as a `Value` reads them, to find one given twice.
    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Node, A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = entries.next_key::<Value>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(duplicate(&key)));
            }
            entries.next_value::<Node>()?;
            keys.insert(key);
        }
        Ok(Node)
    }

    /// A tagged node (`!tag value`): the tag must not be empty.
    fn visit_enum<A: EnumAccess<'de>>(self, tagged: A) -> Result<Node, A::Error> {
        let (tag, contents) = tagged.variant::<String>()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        de::VariantAccess::newtype_variant::<Node>(contents)
    }
}

/// The error a `Value` gives for `key` met twice in one mapping.
fn duplicate(key: &Value) -> String {
    match key {
        Value::Null => "duplicate entry with null key".into(),
        Value::Bool(b) => format!("duplicate entry with key `{b}`"),
        Value::Number(n) => format!("duplicate entry with key {n}"),
        Value::String(s) => format!("duplicate entry with key {s:?}"),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => {
            "duplicate entry in YAML map".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every document a `Value` refuses is refused, and every one it reads is read.
    #[test]
    fn yaml_is_refused_exactly_when_serde_norway_refuses_it_as_a_value() {
        for text in [
            "a: 1\nb: [1, 2]\nc: {d: e}\n",
            "a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n",
            "- !custom {a: 1}\n- !!str 3\n",
            "a: 1\na: 2\n",
            "{1: a, 1: b}\n",
            "~: a\nnull: b\n",
            "true: a\ntrue: b\n",
            "? [1, 2]\n: a\n? [1, 2]\n: b\n",
            "a: *unknown\n",
            "a: 1\n---\nb: 2\n",
            "a: [1, 2\n",
            "a: b: c\n",
            "key: \"unterminated\n",
            "\ta: 1\n",
            "",
            "x: 99999999999999999999999\n",
        ] {
            let value = serde_norway::from_str::<Value>(text).map_err(|e| e.to_string());
            let node = check("f.yaml", text).map_err(|e| match e {
                RenderError::InvalidYaml { message, .. } => message,
                other => panic!("{other}"),
            });
            assert_eq!(
                node.is_ok(),
                value.is_ok(),
                "{text:?}: {node:?} / {value:?}"
            );
            if let (Err(node), Err(value)) = (node, value) {
                assert_eq!(node, value, "{text:?}");
            }
        }
    }

    /// A document read once is not read again, but only a valid one is remembered: a broken
    /// document is refused each time it is rendered.
    #[test]
    fn a_valid_document_is_remembered_and_a_broken_one_refused_every_time() {
        let valid = "version: 1\nremembered: a_valid_document_is_remembered\n";
        assert!(!READ.contains(valid));
        check("a.log.config", valid).unwrap();
        assert!(READ.contains(valid));
        let broken = "remembered: [a_broken_document\n";
        for _ in 0..2 {
            assert!(check("a.log.config", broken).is_err());
            assert!(!READ.contains(broken));
        }
        let large = format!("a: {}\n", "x".repeat(ReadDocuments::LARGEST));
        check("a.yaml", &large).unwrap();
        assert!(!READ.contains(&large));
    }

    #[test]
    fn only_yaml_files_are_read() {
        assert!(check("nginx/nginx.conf", "a: [").is_ok());
        for path in ["a.yaml", "docker-compose.yml", "log.config/x.log.config"] {
            assert!(check(path, "a: [").is_err(), "{path}");
        }
    }
}
