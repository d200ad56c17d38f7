//! `synprov render`: write every file locally, as it would be written on the hosts.

mod staged;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{IntoDiagnostic, WrapErr};
use synprov::plugins::{Limits, Plugins};
use synprov::render::{self, HostFiles, Templates};
use synprov::secrets::MasterKey;
use synprov::ui::printable;

use staged::StagedDeployment;

/// A deployment's files staged under `--out`, and what is said of them once in place.
struct Staged {
    host: String,
    deployment: String,
    server_name: String,
    files: usize,
    staged: StagedDeployment,
}

pub fn run(
    path: &Path,
    out: &Path,
    only_host: Option<&str>,
    roles: Option<&Path>,
) -> miette::Result<ExitCode> {
    let inventory = super::load_inventory(path)?;
    let key = MasterKey::for_inventory(path)?;
    let templates = Templates::load(roles)?;
    let plugins = Plugins::load(&inventory, Limits::default())?;
    // Each host's files are staged by the thread that rendered it while the others still
    // render, and put in place once every host has rendered: an error anywhere (dropping
    // what was staged) leaves no file of this render behind.
    let staged = render::render_each(&inventory, &key, &templates, &plugins, only_host, |host| {
        stage_host(out, &host)
    })?
    .into_iter()
    .collect::<miette::Result<Vec<_>>>()?;
    let mut count = 0;
    for deployment in staged.into_iter().flatten() {
        let dir = out_dir(out, &deployment.host, &deployment.deployment);
        deployment
            .staged
            .commit()
            .into_diagnostic()
            .wrap_err("cannot put the rendered files in place")?;
        println!(
            "{}/{}: {} files for {} ({})",
            printable(&deployment.host),
            printable(&deployment.deployment),
            deployment.files,
            printable(&deployment.server_name),
            printable(&dir.display().to_string())
        );
        count += deployment.files;
    }
    println!(
        "wrote {count} files to {}",
        printable(&out.display().to_string())
    );
    Ok(ExitCode::SUCCESS)
}

fn out_dir(out: &Path, host: &str, deployment: &str) -> PathBuf {
    out.join(host).join(deployment)
}

/// Stages every file of `host` under `out/HOST/DEPLOYMENT/`. None is synced: a render is a
/// preview, made again byte for byte from the inventory, so a power cut costs nothing a
/// second `render` does not give back (a sync per file made 1000 deployments take 16 s on
/// an idle disk, a minute on a busy one). Nor is the filesystem synced at the end
/// (`syncfs`): that waits for every dirty page of the filesystem, other programs' too, and
/// buys nothing `apply` relies on: `apply` renders again and writes to the hosts itself.
fn stage_host(out: &Path, host: &HostFiles) -> miette::Result<Vec<Staged>> {
    host.deployments
        .iter()
        .map(|deployment| {
            let dir = out_dir(out, &host.host, &deployment.deployment);
            let staged = StagedDeployment::write(&dir, &deployment.files)
                .into_diagnostic()
                .wrap_err("cannot write the rendered files")?;
            Ok(Staged {
                host: host.host.clone(),
                deployment: deployment.deployment.clone(),
                server_name: deployment.server_name.clone(),
                files: deployment.files.len(),
                staged,
            })
        })
        .collect()
}
