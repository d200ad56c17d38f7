//! A plan file read as what it is: text from outside. Read whole only when it is a regular
//! file under [`MAX_PLAN_BYTES`]; then, before any of it is used or shown, no string in it
//! may hold a control character (synprov writes none: a line break in a name would print a
//! forged line), every hash must be one, and the paths it names must be absolute.

use std::path::Path;

use serde_json::Value;

use super::{SavedPlan, SavedPlanError};
use crate::regular_file;

/// The largest plan file read: a plan of a thousand hosts of forty files each is about
/// 10 MiB. Parsed, a plan of tiny strings takes some times its size in memory.
pub const MAX_PLAN_BYTES: u64 = 16 << 20;

/// The text of the file at `path` (a plan or an inventory: the caller tells), read as
/// [`regular_file::read`] reads, at most [`MAX_PLAN_BYTES`].
pub fn read_text(path: &Path) -> Result<String, SavedPlanError> {
    let unreadable = |why: String| SavedPlanError::Unreadable {
        path: path.display().to_string(),
        why,
    };
    let bytes = regular_file::read(path, MAX_PLAN_BYTES)
        .map_err(|refusal| unreadable(refusal.to_string()))?;
    String::from_utf8(bytes).map_err(|_| unreadable("it is not UTF-8 text".into()))
}

/// The first string of `value` (keys too) that holds a control character, by where it is
/// (`hosts[0].deployments[1].dir`), and the character.
pub fn control_character(value: &Value, at: &str) -> Option<(String, char)> {
    let bad = |text: &str| text.chars().find(|c| c.is_control());
    match value {
        Value::String(text) => bad(text).map(|c| (at.to_string(), c)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| control_character(item, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let at = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match bad(key) {
                Some(c) => Some((at, c)),
                None => control_character(item, &at),
            }
        }),
        _ => None,
    }
}

/// The first hash of `plan` that is not 64 lowercase hexadecimal digits, or path that is
/// not absolute, by what it is.
pub fn malformed(plan: &SavedPlan) -> Option<String> {
    let is_hash =
        |h: &str| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !plan.inventory.is_absolute() {
        return Some("its inventory path is not absolute".into());
    }
    if !is_hash(&plan.inventory_sha256) {
        return Some("its inventory_sha256 is not a SHA-256".into());
    }
    if let Some(roles) = &plan.roles {
        if !roles.dir.is_absolute() {
            return Some("its roles directory is not absolute".into());
        }
        if !is_hash(&roles.sha256) {
            return Some("the SHA-256 of its templates is not one".into());
        }
    }
    for host in &plan.hosts {
        if !is_hash(&host.facts.digest) {
            return Some(format!(
                "the facts digest of host {} is not a SHA-256",
                host.host
            ));
        }
        for deployment in &host.deployments {
            for file in &deployment.files {
                if [&file.before, &file.after]
                    .into_iter()
                    .flatten()
                    .any(|h| !is_hash(h))
                {
                    return Some(format!(
                        "a hash of {} in {} is not a SHA-256",
                        file.path, deployment.dir
                    ));
                }
            }
        }
    }
    None
}
