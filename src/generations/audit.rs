//! Who did what, when: the origin of a generation, and the audit log's lines.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::transport::Holder;

/// Who ran a command, from where, when, with which synprov and inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub at: DateTime<Utc>,
    pub user: String,
    pub controller: String,
    /// The command, as `apply` or `rollback --to 3`.
    pub command: String,
    pub synprov: String,
    /// SHA-256 of the inventory file, when the command read one for the deployment.
    #[serde(default)]
    pub inventory_sha256: Option<String>,
}

impl Origin {
    /// This run of synprov: the local user and machine (each reduced to a plain word, so
    /// that no value from the environment can forge a line of the audit log), now.
    pub fn here(command: &str, inventory_sha256: Option<String>) -> Origin {
        Origin {
            at: Utc::now(),
            user: plain_word(&whoami::username()),
            controller: plain_word(&whoami::fallible::hostname().unwrap_or_default()),
            command: command.to_string(),
            synprov: env!("CARGO_PKG_VERSION").to_string(),
            inventory_sha256,
        }
    }

    /// This run as the holder of a deployment's lock, which its record on the host names
    /// to a run that finds the lock busy: since the command started.
    pub fn holder(&self) -> Holder {
        Holder {
            user: self.user.clone(),
            controller: self.controller.clone(),
            pid: std::process::id(),
            command: format!("synprov {}", self.command),
            since: self.at,
        }
    }

    /// `user@controller`.
    pub fn who(&self) -> String {
        format!("{}@{}", self.user, self.controller)
    }

    /// The audit line of this command's `result` on `generation`.
    pub fn entry(&self, generation: Option<u32>, result: &str) -> AuditEntry {
        AuditEntry {
            at: self.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            who: self.who(),
            command: plain_line(&self.command),
            generation,
            result: plain_line(result),
        }
    }
}

/// `text` with every character but letters, digits and `._-` replaced by `_`, at most 64
/// characters; `unknown` when empty.
fn plain_word(text: &str) -> String {
    let word: String = text
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if word.is_empty() {
        "unknown".into()
    } else {
        word
    }
}

/// One line of text: control characters (tabs, line breaks) become spaces.
fn plain_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One line of the audit log: `TIME<TAB>USER@HOST<TAB>COMMAND<TAB>generation N|-<TAB>RESULT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: String,
    pub who: String,
    pub command: String,
    pub generation: Option<u32>,
    pub result: String,
}

impl AuditEntry {
    /// The line, without its line break. The generation is `$n` when the script that
    /// records the generation fills it in: see [`AuditEntry::prefix_and_result`].
    pub fn line(&self) -> String {
        let generation = self
            .generation
            .map_or("-".to_string(), |n| format!("generation {n}"));
        format!(
            "{}\t{}\t{}\t{generation}\t{}",
            self.at, self.who, self.command, self.result
        )
    }

    /// The parts of the line before and after the generation field, for a script that
    /// knows the generation's number only on the host.
    pub fn prefix_and_result(&self) -> (String, String) {
        (
            format!("{}\t{}\t{}", self.at, self.who, self.command),
            self.result.clone(),
        )
    }

    /// Reads a line of the log; a line that is not one is skipped.
    pub fn parse(line: &str) -> Option<AuditEntry> {
        let mut fields = line.split('\t');
        let (at, who, command, generation, result) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let generation = match generation {
            "-" => None,
            g => Some(g.strip_prefix("generation ")?.parse().ok()?),
        };
        Some(AuditEntry {
            at: at.to_string(),
            who: who.to_string(),
            command: command.to_string(),
            generation,
            result: result.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_line_reads_back_as_itself_and_no_value_can_add_a_line() {
        let mut origin = Origin::here("apply", None);
        origin.command = "apply\nforged\tline".into();
        let entry = origin.entry(Some(3), "failed:\nunhealthy");
        let line = entry.line();
        assert!(!line.contains('\n'), "{line:?}");
        assert_eq!(
            AuditEntry::parse(&line).map(|e| e.generation),
            Some(Some(3))
        );
        assert_eq!(plain_word("al ice\n$(x)"), "al_ice___x_");
        assert_eq!(plain_word(""), "unknown");
        assert_eq!(AuditEntry::parse("not a line"), None);
    }
}
