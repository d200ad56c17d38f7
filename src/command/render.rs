//! `synprov render`: write every file locally, as it would be written on the hosts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
                write_with_mode(&target, file.contents.as_bytes(), file.mode)
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

/// Writes `target` with exactly `mode`, whatever the umask, and never with more: the data
/// goes into a new file beside it, created with `mode` (which the umask can only narrow),
/// set to `mode` exactly through its descriptor, then renamed over `target`. A secret is
/// never readable by others, not even for a moment, and an existing `target` with a wider
/// mode (a render of an older version) is replaced, not written through.
fn write_with_mode(target: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let staged = target.with_file_name(format!(".{name}.synprov-new"));
    match fs::remove_file(&staged) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&staged)?;
    let written = file
        .set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&staged, target));
    if written.is_err() {
        let _ = fs::remove_file(&staged);
    }
    written
}
