//! A saved host plan against the one made again at apply time: what differs, each in a
//! sentence that names the file or the fact, so that the operator knows what to look at.

use serde_json::Value;

use super::host::{FileRecord, SavedDeployment, SavedHost};
use crate::plan::Change;

/// What differs between the host's plan as saved and as made now; empty when the host
/// may be applied. Each deployment's files come first, then the rest of its plan; then the
/// system facts, the installs, images and orphans; a change of the facts' digest alone is
/// named when nothing else was.
pub fn differences(saved: &SavedHost, now: &SavedHost) -> Vec<String> {
    let mut out = Vec::new();
    for deployment in &saved.deployments {
        match now
            .deployments
            .iter()
            .find(|d| d.deployment == deployment.deployment)
        {
            Some(current) => deployment_differences(deployment, current, &mut out),
            None => out.push(format!(
                "deployment {} is no longer planned on the host",
                deployment.deployment
            )),
        }
    }
    for deployment in &now.deployments {
        if !saved
            .deployments
            .iter()
            .any(|d| d.deployment == deployment.deployment)
        {
            out.push(format!(
                "deployment {} was not in the plan",
                deployment.deployment
            ));
        }
    }
    for ((label, then), (_, current)) in saved
        .facts
        .summary
        .fields()
        .iter()
        .zip(now.facts.summary.fields())
    {
        if *then != current {
            out.push(format!("the host's {label} was `{then}`, now `{current}`"));
        }
    }
    // The rest, field by field: installs, images, orphans.
    let rest = |host: &SavedHost| {
        let mut value = serde_json::to_value(host).expect("a plan serializes");
        if let Value::Object(map) = &mut value {
            for derived in ["host", "facts", "changes", "deployments", "sending"] {
                map.remove(derived);
            }
        }
        value
    };
    value_differences("", &rest(saved), &rest(now), &mut out);
    if out.is_empty() && saved.facts.digest != now.facts.digest {
        out.push(format!(
            "the host's facts changed since the plan (digest {} now {})",
            short(&saved.facts.digest),
            short(&now.facts.digest)
        ));
    }
    out
}

fn deployment_differences(saved: &SavedDeployment, now: &SavedDeployment, out: &mut Vec<String>) {
    let path = |file: &FileRecord| format!("{}/{}", now.dir.trim_end_matches('/'), file.path);
    let find = |files: &'_ [FileRecord], wanted: &str| -> Option<FileRecord> {
        files.iter().find(|f| f.path == wanted).cloned()
    };
    for file in &saved.files {
        match find(&now.files, &file.path) {
            Some(current) if current == *file => {}
            Some(current) if current.before != file.before => out.push(format!(
                "{} changed on the host since the plan (sha256 {} now {})",
                path(file),
                hash(&file.before),
                hash(&current.before)
            )),
            Some(current) => out.push(format!(
                "{} would now be written otherwise (sha256 {} planned, {} now): the master \
                 key, the templates or a plugin render it differently",
                path(file),
                hash(&file.after),
                hash(&current.after)
            )),
            None if file.change == Change::Delete => out.push(format!(
                "{} was removed from the host since the plan (sha256 {} then)",
                path(file),
                hash(&file.before)
            )),
            None => out.push(format!(
                "{} changed on the host since the plan (sha256 {} now {}, what the plan writes)",
                path(file),
                hash(&file.before),
                hash(&file.after)
            )),
        }
    }
    for file in now
        .files
        .iter()
        .filter(|f| find(&saved.files, &f.path).is_none())
    {
        out.push(match file.change {
            // Unchanged when planned: the host then had what is rendered.
            Change::Update => format!(
                "{} changed on the host since the plan (sha256 {} now {})",
                path(file),
                hash(&file.after),
                hash(&file.before)
            ),
            Change::Create => format!("{} was removed from the host since the plan", path(file)),
            Change::Delete => format!(
                "{} is now to be removed: the host's manifest changed since the plan",
                path(file)
            ),
        });
    }
    let rest = |deployment: &SavedDeployment| {
        let mut value = serde_json::to_value(deployment).expect("a plan serializes");
        if let Value::Object(map) = &mut value {
            // Follow from the files, named above.
            for derived in ["files", "unchanged", "services"] {
                map.remove(derived);
            }
        }
        value
    };
    value_differences(
        &format!("{}: ", now.deployment),
        &rest(saved),
        &rest(now),
        out,
    );
}

/// Names each field of `then` and `now` (JSON objects, walked into) that differs.
fn value_differences(prefix: &str, then: &Value, now: &Value, out: &mut Vec<String>) {
    match (then, now) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let other = b.get(key).unwrap_or(&Value::Null);
                if let (Value::Object(_), Value::Object(_)) = (value, other) {
                    value_differences(&format!("{prefix}{key}."), value, other, out);
                } else if value != other {
                    out.push(format!("{prefix}{key} was {value}, now {other}"));
                }
            }
        }
        _ if then != now => out.push(format!("{prefix}was {then}, now {now}")),
        _ => {}
    }
}

/// The first 12 hex digits of a SHA-256, enough to tell two files apart when reading.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// A file's hash as messages show it: [`short`] and an ellipsis, or `absent`.
pub fn hash(hash: &Option<String>) -> String {
    hash.as_deref()
        .map_or_else(|| "absent".to_string(), |h| format!("{}…", short(h)))
}
