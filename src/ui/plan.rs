//! A host's plan as the user reads it: installs, images, each file created, changed or
//! removed (with its masked diff, or its hashes when read from a plan file), services
//! recreated.

use std::fmt::Write;

use super::one_line;
use crate::apply::files::Fetched;
use crate::apply::{Prepared, megabytes};
use crate::plan::{Change, Sending};
use crate::render::{DeploymentFiles, HostFiles};
use crate::saved_plan::{FileRecord, SavedHost, SavedPlan, hash, short};
use crate::secrets::DeploymentSecrets;

/// The file whose settings `plan` explains: how Postgres was sized.
const POSTGRESQL_CONF: &str = "postgres/postgresql.conf";

/// A host's plan. `live`, the rendered files and what was found on the host, adds each
/// changed file's diff; without it (a plan read from a file, which keeps no contents) each
/// change shows its hashes, and the facts the plan was made against are shown first.
pub fn show(host: &SavedHost, live: Option<(&HostFiles, &Prepared)>, color: bool) -> String {
    let mut out = String::new();
    let count = host.changes;
    let _ = writeln!(
        out,
        "host {}: {}",
        one_line(&host.host),
        if count == 0 {
            "no changes".to_string()
        } else {
            format!("{count} change(s)")
        }
    );
    if live.is_none() {
        let _ = writeln!(
            out,
            "  facts: {} (digest {})",
            one_line(&host.facts.summary.to_string()),
            one_line(short(&host.facts.digest))
        );
    }
    if host.install_docker {
        let _ = writeln!(out, "  + install Docker");
    } else if host.start_docker {
        let _ = writeln!(out, "  ~ start Docker");
    }
    if host.install_compose {
        let _ = writeln!(out, "  + install Compose");
    }
    for image in &host.load_images {
        let _ = writeln!(
            out,
            "  + load image {}{}",
            one_line(&image.image),
            sent(host.sending.get(&image.image))
        );
    }
    for orphan in &host.orphans {
        let _ = writeln!(
            out,
            "  ? orphan: {} in {} is on the host but not in the inventory; left as it is \
             (`synprov destroy --host {} --deployment {}` removes it)",
            one_line(&orphan.name),
            one_line(&orphan.dir),
            one_line(&host.host),
            one_line(&orphan.name)
        );
    }
    for (index, deployment) in host.deployments.iter().enumerate() {
        for grants in &deployment.plugin_grants {
            let _ = writeln!(
                out,
                "  {}: plugin {} granted {}",
                one_line(&deployment.deployment),
                one_line(&grants.plugin),
                one_line(&grants.grants.join(", "))
            );
        }
        if deployment.interrupted {
            let recreate: Vec<_> = deployment.restart.iter().map(|s| one_line(s)).collect();
            let _ = writeln!(
                out,
                "  ~ {}: bring the stack up: the last apply wrote files but stopped before{}",
                one_line(&deployment.deployment),
                if recreate.is_empty() {
                    String::new()
                } else {
                    format!(" (recreating {})", recreate.join(", "))
                }
            );
        }
        if let Some(upgrade) = &deployment.upgrade {
            let _ = writeln!(
                out,
                "  ~ {}: upgrade {}: config check on the new image, workers stopped, main first",
                one_line(&deployment.deployment),
                one_line(&upgrade.to_string())
            );
        }
        if deployment.files.is_empty() {
            let _ = writeln!(
                out,
                "  {} ({}): {} file(s) unchanged",
                one_line(&deployment.deployment),
                one_line(&deployment.dir),
                deployment.unchanged
            );
            continue;
        }
        let _ = writeln!(
            out,
            "  {} ({}): {} to change, {} unchanged",
            one_line(&deployment.deployment),
            one_line(&deployment.dir),
            deployment.files.len(),
            deployment.unchanged
        );
        for change in &deployment.files {
            let (sign, word) = match change.change {
                Change::Create => ("+", "create"),
                Change::Update => ("~", "change"),
                Change::Delete => ("-", "remove"),
            };
            let _ = writeln!(out, "    {sign} {word} {}", one_line(&change.path));
            if change.path == POSTGRESQL_CONF && change.change != Change::Delete {
                for line in &deployment.postgres {
                    let _ = writeln!(out, "      postgres: {}", one_line(line));
                }
            }
            match live {
                Some((files, prepared)) => {
                    diff(&mut out, change, &files.deployments[index], prepared, color)
                }
                None => {
                    let _ = writeln!(
                        out,
                        "      sha256 {} -> {}",
                        one_line(&hash(&change.before)),
                        one_line(&hash(&change.after))
                    );
                }
            }
            if change.path == "docker-compose.yml" && change.change == Change::Update {
                let services = &deployment.services;
                for (label, list) in [
                    ("new services", &services.added),
                    ("services recreated", &services.recreated),
                    ("services removed", &services.removed),
                ] {
                    if !list.is_empty() {
                        let _ = writeln!(out, "      {label}: {}", one_line(&list.join(", ")));
                    }
                }
            }
        }
        if !deployment.removed_workers.is_empty() {
            let names: Vec<&str> = (deployment.removed_workers.iter())
                .map(|w| w.name.as_str())
                .collect();
            let _ = writeln!(
                out,
                "    - workers removed, with their logs and sockets: {}",
                one_line(&names.join(", "))
            );
        }
        if !deployment.restart.is_empty() {
            let _ = writeln!(
                out,
                "    services recreated for changed files: {}",
                one_line(&deployment.restart.join(", "))
            );
        }
        if !deployment.reload.is_empty() {
            let _ = writeln!(
                out,
                "    services reloaded for changed files: {}",
                one_line(&deployment.reload.join(", "))
            );
        }
    }
    out
}

/// The diff of a changed file, its secrets masked; nothing for a file kept as the host has
/// it, a note for one whose contents are hidden.
fn diff(
    out: &mut String,
    change: &FileRecord,
    rendered: &DeploymentFiles,
    prepared: &Prepared,
    color: bool,
) {
    let new = rendered.files.iter().find(|f| f.path == change.path);
    if new.is_some_and(|f| f.keep_existing) {
        return;
    }
    if let Some(what) = hidden_contents(&change.path) {
        let _ = writeln!(out, "      ({what}: contents hidden)");
        return;
    }
    // Read back from a generation record, the secret values are not known: a file that
    // holds them is not shown at all.
    let secrets = rendered.secrets.as_ref().map(DeploymentSecrets::all);
    let secrets = match &secrets {
        Some(secrets) => secrets.as_slice(),
        None if new.is_some_and(|f| f.secret) => {
            let _ = writeln!(out, "      (holds secrets: contents hidden)");
            return;
        }
        None => &[],
    };
    if change.change == Change::Update {
        let none = Fetched::Text(String::new());
        let old = prepared
            .old
            .get(&(rendered.deployment.clone(), change.path.clone()))
            .unwrap_or(&none);
        let new_text = new.map_or("", |f| f.contents.as_str());
        for line in super::diff::changed(&change.path, old, new_text, secrets, color).lines() {
            let _ = writeln!(out, "      {line}");
        }
    }
}

/// What a file whose contents are never shown, not even masked, holds: the keys, whose
/// secret spans lines, which no mask of a value or setting on one line covers; the files
/// that are one secret and nothing else, whose old contents (another master key's password)
/// no mask of a known value covers; and a DNS provider's credentials, named as the provider
/// names them.
fn hidden_contents(path: &str) -> Option<&'static str> {
    if path.ends_with(".signing.key") {
        Some("signing key")
    } else if path == crate::render::TLS_KEY {
        Some("TLS key")
    } else if path == crate::render::postgres::PASSWORD_FILE {
        Some("Postgres password")
    } else if path == crate::render::backup::PASSWORD_FILE {
        Some("backup password")
    } else if path == crate::render::acme::DNS_ENV {
        Some("DNS credentials")
    } else {
        None
    }
}

/// A plan file as `show` prints it: where it was made from, then each host's plan.
pub fn show_saved(plan: &SavedPlan) -> String {
    let mut out = format!(
        "plan made {} by synprov {} from {} (sha256 {}){}{}{}\n",
        plan.created.format("%Y-%m-%d %H:%M:%S UTC"),
        one_line(&plan.synprov_version),
        one_line(&plan.inventory.display().to_string()),
        one_line(short(&plan.inventory_sha256)),
        match &plan.roles {
            Some(roles) => format!(
                ", templates of --roles {} (sha256 {})",
                one_line(&roles.dir.display().to_string()),
                one_line(short(&roles.sha256))
            ),
            None => ", built-in templates".to_string(),
        },
        if plan.limit.is_empty() {
            String::new()
        } else {
            format!(", --limit {}", one_line(&plan.limit.join(",")))
        },
        if plan.files_only { ", files only" } else { "" }
    );
    for host in &plan.hosts {
        out += &show(host, None, false);
    }
    out
}

/// How much of an image is sent, when known: `: 12.3 of 590.0 MB to send (layers the host
/// has are skipped)`, or `: 590.0 MB` when all of it is.
fn sent(sending: Option<&Sending>) -> String {
    match sending {
        None => String::new(),
        Some(s) if s.bytes < s.of => format!(
            ": {} of {} MB to send (layers the host has are skipped)",
            megabytes(s.bytes),
            megabytes(s.of)
        ),
        Some(s) => format!(": {} MB", megabytes(s.of)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A saved plan of `host` whose deployment `d` changes `file` (a JSON file record),
    /// with Postgres sized as `postgres` says.
    fn saved(host: &str, file: serde_json::Value, postgres: &[&str]) -> SavedHost {
        let host = serde_json::json!({
            "host": host,
            "facts": {
                "digest": "0123456789abcdef0123",
                "summary": {"os": "debian 12", "arch": "x86_64", "init": "systemd",
                            "docker": "no Docker", "compose": "no Compose"}
            },
            "changes": 1, "install_docker": false, "start_docker": false,
            "install_compose": false, "load_images": [], "orphans": [],
            "deployments": [{
                "deployment": "d", "dir": "/opt/d", "unchanged": 3, "restart": [],
                "interrupted": false, "upgrade": null, "removed_workers": [],
                "services": {"added": [], "recreated": [], "removed": []},
                "plugin_grants": [], "postgres": postgres, "files": [file]
            }]
        });
        serde_json::from_value(host).unwrap()
    }

    /// A plan file is data from outside: what it names is printed escaped.
    #[test]
    fn a_saved_plan_shows_hashes_and_escapes_the_names_it_holds() {
        let file = serde_json::json!({"path": "synapse/x\r.yaml", "change": "update",
                                      "before": "aaaaaaaaaaaaaaaa", "after": "bbbbbbbbbbbbbbbb"});
        let host = saved("hs1\u{1b}[2J", file, &[]);
        assert_eq!(
            show(&host, None, false),
            "host hs1\\x1b[2J: 1 change(s)\n  \
             facts: debian 12, x86_64, systemd, no Docker, no Compose (digest 0123456789ab)\n  \
             d (/opt/d): 1 to change, 3 unchanged\n    \
             ~ change synapse/x\\x0d.yaml\n      \
             sha256 aaaaaaaaaaaa… -> bbbbbbbbbbbb…\n"
        );
    }

    #[test]
    fn an_image_shows_how_much_of_it_is_sent() {
        let file = serde_json::json!({"path": "a", "change": "create",
                                      "before": null, "after": "bbbbbbbbbbbbbbbb"});
        let mut host = saved("hs1", file, &[]);
        for image in ["synprov/synapse:1.164", "postgres:16", "nginx:1"] {
            host.load_images.push(crate::saved_plan::ImageLoad {
                image: image.into(),
                id: String::new(),
            });
        }
        let sending = |bytes, of| Sending { bytes, of };
        host.sending = [
            (
                "synprov/synapse:1.164".into(),
                sending(12_340_000, 590_000_000),
            ),
            ("postgres:16".into(), sending(151_000_000, 151_000_000)),
        ]
        .into();
        let shown = show(&host, None, false);
        assert!(
            shown.contains(
                "  + load image synprov/synapse:1.164: 12.3 of 590.0 MB to send \
                 (layers the host has are skipped)\n  \
                 + load image postgres:16: 151.0 MB\n  \
                 + load image nginx:1\n"
            ),
            "{shown}"
        );
    }

    #[test]
    fn a_changed_postgresql_conf_shows_how_postgres_is_sized() {
        let file = serde_json::json!({"path": "postgres/postgresql.conf", "change": "create",
                                      "before": null, "after": "bbbbbbbbbbbbbbbb"});
        let why = "shared_buffers 1GB (25% of 4GB RAM / 1 deployment)";
        let shown = show(&saved("hs1", file, &[why]), None, false);
        assert!(
            shown.contains(&format!(
                "    + create postgres/postgresql.conf\n      postgres: {why}\n"
            )),
            "{shown}"
        );
    }
}
