//! A host's plan as the user reads it: installs, images, each file created, changed or
//! removed (with its masked diff), services recreated.

use std::fmt::Write;

use super::printable;
use crate::apply::Prepared;
use crate::plan::{Change, compose_service_changes};
use crate::render::HostFiles;
use crate::secrets::DeploymentSecrets;

pub fn show(files: &HostFiles, prepared: &Prepared, color: bool) -> String {
    let plan = &prepared.plan;
    let mut out = String::new();
    let count = plan.change_count();
    let _ = writeln!(
        out,
        "host {}: {}",
        printable(&plan.host),
        if count == 0 {
            "no changes".to_string()
        } else {
            format!("{count} change(s)")
        }
    );
    if plan.install_docker {
        let _ = writeln!(out, "  + install Docker");
    } else if plan.start_docker {
        let _ = writeln!(out, "  ~ start Docker");
    }
    if plan.install_compose {
        let _ = writeln!(out, "  + install Compose");
    }
    for image in &plan.load_images {
        let _ = writeln!(out, "  + load image {}", printable(image));
    }
    for orphan in &plan.orphans {
        let _ = writeln!(
            out,
            "  ? orphan: {} in {} is on the host but not in the inventory; left as it is \
             (`synprov destroy --host {} --deployment {}` removes it)",
            printable(&orphan.name),
            printable(&orphan.dir),
            printable(&plan.host),
            printable(&orphan.name)
        );
    }
    for (deployment, deployment_files) in plan.deployments.iter().zip(&files.deployments) {
        for (plugin, grants) in &deployment_files.plugin_grants {
            let grants: Vec<String> = grants.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  {}: plugin {plugin} granted {}",
                deployment.deployment,
                grants.join(", ")
            );
        }
        if deployment.interrupted {
            let recreate: Vec<_> = deployment.restart.iter().map(|s| printable(s)).collect();
            let _ = writeln!(
                out,
                "  ~ {}: bring the stack up: the last apply wrote files but stopped before{}",
                printable(&deployment.deployment),
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
                "  ~ {}: upgrade Synapse {} -> {}: config check on the new image, workers stopped, main first",
                printable(&deployment.deployment),
                printable(&upgrade.from),
                printable(&upgrade.to)
            );
        }
        if deployment.changes.is_empty() {
            let _ = writeln!(
                out,
                "  {} ({}): {} file(s) unchanged",
                printable(&deployment.deployment),
                printable(&deployment.dir),
                deployment.unchanged
            );
            continue;
        }
        let _ = writeln!(
            out,
            "  {} ({}): {} to change, {} unchanged",
            printable(&deployment.deployment),
            printable(&deployment.dir),
            deployment.changes.len(),
            deployment.unchanged
        );
        let secrets = deployment_files
            .secrets
            .as_ref()
            .map(DeploymentSecrets::all);
        for change in &deployment.changes {
            let (sign, word) = match change.change {
                Change::Create => ("+", "create"),
                Change::Update => ("~", "change"),
                Change::Delete => ("-", "remove"),
            };
            let _ = writeln!(out, "    {sign} {word} {}", printable(&change.path));
            let new = deployment_files
                .files
                .iter()
                .find(|f| f.path == change.path);
            if new.is_some_and(|f| f.keep_existing) {
                continue;
            }
            if change.path.ends_with(".signing.key") {
                let _ = writeln!(out, "      (signing key: contents hidden)");
                continue;
            }
            // Read back from a generation record, the secret values are not known: a file
            // that holds them is not shown at all.
            let secrets = match &secrets {
                Some(secrets) => secrets.as_slice(),
                None if new.is_some_and(|f| f.secret) => {
                    let _ = writeln!(out, "      (holds secrets: contents hidden)");
                    continue;
                }
                None => &[],
            };
            let old = prepared
                .old
                .get(&(deployment.deployment.clone(), change.path.clone()))
                .map_or("", String::as_str);
            let new_text = new.map_or("", |f| f.contents.as_str());
            if change.change == Change::Update {
                for line in
                    super::diff::unified(&change.path, old, new_text, secrets, color).lines()
                {
                    let _ = writeln!(out, "      {line}");
                }
            }
            if change.path == "docker-compose.yml" && change.change == Change::Update {
                let (added, changed, removed) = compose_service_changes(old, new_text);
                for (label, list) in [
                    ("new services", added),
                    ("services recreated", changed),
                    ("services removed", removed),
                ] {
                    if !list.is_empty() {
                        let _ = writeln!(out, "      {label}: {}", printable(&list.join(", ")));
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
                printable(&names.join(", "))
            );
        }
        if !deployment.restart.is_empty() {
            let _ = writeln!(
                out,
                "    services recreated for changed files: {}",
                printable(
                    &deployment
                        .restart
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            );
        }
    }
    out
}
