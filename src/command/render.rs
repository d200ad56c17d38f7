//! `synprov render`: write every file locally, as it would be written on the hosts.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use miette::{Context, IntoDiagnostic};
use synprov::plugins::{Limits, Plugins};
use synprov::render::{self, Templates};
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
    let mut count = 0;
    for host in &hosts {
        for deployment in &host.deployments {
            let dir = out.join(&host.host).join(&deployment.deployment);
            for file in &deployment.files {
                let target = dir.join(&file.path);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)
                        .into_diagnostic()
                        .wrap_err_with(|| format!("cannot create {}", parent.display()))?;
                }
                super::write_with_mode(&target, file.contents.as_bytes(), file.mode)
                    .into_diagnostic()
                    .wrap_err_with(|| format!("cannot write {}", target.display()))?;
                count += 1;
            }
            println!(
                "{}/{}: {} files for {} ({})",
                printable(&host.host),
                printable(&deployment.deployment),
                deployment.files.len(),
                printable(&deployment.server_name),
                printable(&dir.display().to_string())
            );
        }
    }
    println!(
        "wrote {count} files to {}",
        printable(&out.display().to_string())
    );
    Ok(ExitCode::SUCCESS)
}
