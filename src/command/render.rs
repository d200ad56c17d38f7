//! `synprov render`: write every file locally, as it would be written on the hosts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{Context, IntoDiagnostic};
use synprov::parallel::each_at_once;
use synprov::plugins::{Limits, Plugins};
use synprov::render::{self, DeploymentFiles, HostFiles, Templates};
use synprov::secrets::MasterKey;
use synprov::ui::printable;

pub fn run(
    path: &Path,
    out: &Path,
    only_host: Option<&str>,
    roles: Option<&Path>,
) -> miette::Result<ExitCode> {
    let inventory = super::load_inventory(path)?;
    let key = MasterKey::for_inventory(path)?;
    let templates = Templates::load(roles)?;
    // Everything is rendered before anything is written: an error leaves no partial output.
    let plugins = Plugins::load(&inventory, Limits::default())?;
    let hosts = render::render(&inventory, &key, &templates, &plugins, only_host)?;
    // Hosts are written on every core, as they were rendered: the time goes to the
    // filesystem's creates and renames, which run side by side in distinct directories.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let written = each_at_once(&hosts, cores, |host| write_host(out, host));
    let mut count = 0;
    for (host, written) in hosts.iter().zip(written) {
        written?;
        for deployment in &host.deployments {
            println!(
                "{}/{}: {} files for {} ({})",
                printable(&host.host),
                printable(&deployment.deployment),
                deployment.files.len(),
                printable(&deployment.server_name),
                printable(&out_dir(out, host, deployment).display().to_string())
            );
            count += deployment.files.len();
        }
    }
    println!(
        "wrote {count} files to {}",
        printable(&out.display().to_string())
    );
    Ok(ExitCode::SUCCESS)
}

fn out_dir(out: &Path, host: &HostFiles, deployment: &DeploymentFiles) -> PathBuf {
    out.join(&host.host).join(&deployment.deployment)
}

/// Writes every file of `host` under `out/HOST/DEPLOYMENT/`, each renamed into place with its
/// exact mode, none synced: a render is a preview, made again byte for byte from the
/// inventory, so a power cut costs nothing a second `render` does not give back (a sync per
/// file made 1000 deployments take 16 s on an idle disk, a minute on a busy one). Nor is the
/// filesystem synced once at the end (`syncfs`): that waits for every dirty page of the
/// filesystem, other programs' too, so a busy disk would set the render's time again, and
/// it buys nothing `apply` relies on: `apply` renders again and writes to the hosts itself.
fn write_host(out: &Path, host: &HostFiles) -> miette::Result<()> {
    for deployment in &host.deployments {
        let dir = out_dir(out, host, deployment);
        for file in &deployment.files {
            let target = dir.join(&file.path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)
                    .into_diagnostic()
                    .wrap_err_with(|| format!("cannot create {}", parent.display()))?;
            }
            super::write_with_mode(
                &target,
                file.contents.as_bytes(),
                file.mode,
                super::Durability::Preview,
            )
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write {}", target.display()))?;
        }
    }
    Ok(())
}
