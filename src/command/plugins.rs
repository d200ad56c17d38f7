//! `synprov plugins list|check`: what the inventory's plugins are, and whether they work.

use std::fmt::Write;
use std::process::ExitCode;

use synprov::inventory;
use synprov::plugins::{Limits, Plugin, Plugins};
use synprov::render::{self, Templates};
use synprov::secrets::MasterKey;

use crate::cli::PluginsCommand;

pub fn run(action: PluginsCommand) -> miette::Result<ExitCode> {
    let (PluginsCommand::List { inventory: path } | PluginsCommand::Check { inventory: path }) =
        &action;
    let inventory = super::load_inventory(path)?;
    let plugins = Plugins::load(&inventory, Limits::default())?;
    if plugins.loaded.is_empty() {
        println!("{}: no [[plugins]]", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    for plugin in &plugins.loaded {
        print!("{}", synprov::ui::printable(&describe(plugin, &inventory)));
    }
    if let PluginsCommand::Check { .. } = action {
        // Run every plugin where it applies, as `render` would: outputs are checked and
        // merged, and nothing is written.
        let key = MasterKey::for_inventory(path)?;
        let templates = Templates::load(None)?;
        let hosts = render::render(&inventory, &key, &templates, &plugins, None)?;
        let files: usize = hosts
            .iter()
            .flat_map(|h| &h.deployments)
            .map(|d| d.files.len())
            .sum();
        let checks: usize = hosts
            .iter()
            .flat_map(|h| &h.deployments)
            .flat_map(|d| &d.health)
            .filter(|t| matches!(t.probe, synprov::health::Probe::Plugin(_)))
            .count();
        println!(
            "ok: {} plugin(s) loaded, configs valid; every host renders ({files} files, {checks} plugin health check(s))",
            plugins.loaded.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(plugin: &Plugin, inventory: &inventory::Inventory) -> String {
    let mut out = String::new();
    let applies: Vec<&str> = inventory
        .deployments
        .values()
        .filter(|d| plugin.spec.applies_to(inventory, d))
        .map(|d| d.name.as_str())
        .collect();
    let _ = writeln!(
        out,
        "{} ({} {}): {}",
        plugin.spec.name,
        plugin.metadata.name,
        plugin.metadata.version,
        plugin.metadata.description
    );
    let _ = writeln!(
        out,
        "  file: {} ({})",
        plugin.spec.path.display(),
        if plugin.cached {
            "compiled form from the cache"
        } else {
            "compiled now"
        }
    );
    let grants: Vec<String> = plugin.spec.allow.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "  allow: {}",
        if grants.is_empty() {
            "nothing beyond the confined default".to_string()
        } else {
            grants.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  sha256: {}",
        plugin
            .spec
            .sha256
            .as_deref()
            .map_or("not pinned".to_string(), |d| format!("{d} (pinned)"))
    );
    let _ = writeln!(
        out,
        "  deployments: {}",
        if applies.is_empty() {
            "none".to_string()
        } else {
            applies.join(", ")
        }
    );
    out
}
