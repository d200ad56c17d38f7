//! `synprov import --host H --deployment D`: the secrets of a homeserver deployed before
//! synprov in D's deploy directory (by a script from the guide's files, or another
//! deployer) read from the host ([`synprov::ops::import`]) into `D.imported.toml` beside
//! the inventory (0600), and the directories synprov writes in handed to root alone (a
//! deployment made by hand often gives them to Synapse's user). The inventory then names
//! the file (`imported = "..."`), and
//! `plan` and `apply` take the homeserver over with its own key and secrets.

use std::process::ExitCode;

use synprov::ui::printable;

use crate::cli::HostTarget;

pub fn run(target: &HostTarget) -> miette::Result<ExitCode> {
    let on_host = super::host_deployments(target)?;
    let (name, dir) = on_host.one_deployment()?;
    let deployment = &on_host.inventory.deployments[name];
    let connection = on_host.connect(target)?;
    let secrets = synprov::ops::import::secrets(&connection, dir, &deployment.server_name)?;
    let loaded = super::load(&super::only_host(target))?;
    let files = loaded.render(&on_host.host.name, None)?;
    let paths: Vec<String> = (files.deployments.iter())
        .filter(|d| d.deployment == name)
        .flat_map(|d| d.files.iter().map(|f| f.path.clone()))
        .collect();
    let taken = synprov::ops::import::take_directories(&connection, dir, &paths)?;
    if !taken.is_empty() {
        println!(
            "made root's alone, as synprov's directories are (synprov writes only where no one else can): {}",
            taken
                .iter()
                .map(|d| printable(d).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let file = format!("{name}.imported.toml");
    let path = target
        .inventory
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(&file);
    let origin = format!("{}:{dir}", on_host.host.name);
    let text = secrets.to_toml(&origin);
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == text => {
            println!("{} already holds these secrets", path.display());
        }
        Ok(_) => {
            return Err(miette::miette!(
                help = "move it away if it is of an earlier import, then import again",
                "{} exists and holds other secrets",
                path.display()
            ));
        }
        Err(_) => {
            super::write_with_mode(&path, text.as_bytes(), 0o600)
                .map_err(|e| miette::miette!("cannot write {}: {e}", path.display()))?;
            println!(
                "wrote {} (0600): the signing key, registration shared secret, macaroon key, form secret and database password of `{name}` on {}",
                path.display(),
                printable(&origin)
            );
        }
    }
    if deployment.imported.as_ref() != Some(&secrets) {
        println!(
            "name it in the inventory, then `synprov plan` shows what taking over changes:\n\n  [deployments.{name}]\n  imported = \"{file}\""
        );
    }
    Ok(ExitCode::SUCCESS)
}
