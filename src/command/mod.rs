//! One module per command. Each loads what it needs, calls the library, and prints.

pub mod apply;
pub mod check;
pub mod plan;
pub mod plugins;
pub mod render;
pub mod rollback;

use std::collections::BTreeMap;
use std::path::PathBuf;

use synprov::apply::Prepared;
use synprov::inventory::{self, Amount, Inventory};
use synprov::plugins::{Limits, Plugins};
use synprov::render::{HostFiles, Templates};
use synprov::rollout;
use synprov::secrets::MasterKey;
use synprov::transport::{ConnectOptions, Connection};
use synprov::ui::progress::{self, Mode};

use crate::cli::Target;

/// The inventory and every file of the chosen hosts, rendered before connecting anywhere:
/// a bad inventory fails before any host is touched.
pub struct Loaded {
    pub inventory: Inventory,
    pub hosts: Vec<HostFiles>,
    pub options: ConnectOptions,
    key: MasterKey,
    templates: Templates,
    plugins: Plugins,
}

/// Loads the inventory and shows its warnings (valid but dangerous values) on stderr.
pub fn load_inventory(path: &std::path::Path) -> miette::Result<Inventory> {
    let mut inventory = inventory::load(path)?;
    for warning in std::mem::take(&mut inventory.warnings) {
        let report = format!("{:?}", miette::Report::new(warning));
        eprintln!("{}", synprov::ui::printable_report(&report));
    }
    Ok(inventory)
}

pub fn load(target: &Target) -> miette::Result<Loaded> {
    let inventory = load_inventory(&target.inventory)?;
    let selected = inventory.select(&target.limit).map_err(|message| {
        miette::miette!(help = "`synprov check` lists the hosts", "{message}")
    })?;
    let key = MasterKey::for_inventory(&target.inventory)?;
    let templates = Templates::load(target.roles.as_deref())?;
    let plugins = Plugins::load(&inventory, Limits::default())?;
    let hosts = synprov::render::render(&inventory, &key, &templates, &plugins, None)?
        .into_iter()
        .filter(|h| selected.contains(&h.host))
        .collect();
    Ok(Loaded {
        inventory,
        hosts,
        options: connect_options(target.known_hosts.clone()),
        key,
        templates,
        plugins,
    })
}

/// Runs `work` on the loaded hosts as `[rollout]` and the flags say, showing progress;
/// returns the results after the display has finished.
pub fn roll_out(
    loaded: &Loaded,
    target: &Target,
    batched: bool,
    work: &rollout::Work,
) -> Vec<rollout::HostResult> {
    let hosts: Vec<String> = loaded.hosts.iter().map(|h| h.host.clone()).collect();
    let policy = &loaded.inventory.rollout;
    let parallel = target.parallel.unwrap_or(policy.parallel).max(1) as usize;
    let (stages, batch, max_failures) = if batched {
        let stages = rollout::stages(&hosts, |host| loaded.inventory.prerequisites(host));
        (stages, policy.batch, policy.max_failures)
    } else {
        (vec![hosts], None, Amount::Percent(100))
    };
    let (events, received) = std::sync::mpsc::channel();
    let mode = Mode::choose(target.json);
    let display = std::thread::spawn(move || progress::show(received, mode));
    let results = rollout::run(&stages, batch, parallel, max_failures, work, &events);
    drop(events);
    let _ = display.join();
    if mode != Mode::Json {
        print!("{}", progress::recap(&results));
        for result in &results {
            if let rollout::Status::Failed(report) = &result.status {
                eprintln!("{}", synprov::ui::printable_report(report));
            }
        }
    }
    results
}

/// A failure as a host's result: the whole report (location, cause, fix); the recap shows
/// its first line, and it is printed in full on stderr at the end.
pub fn failed(report: miette::Report) -> String {
    format!("{report:?}").trim_end().to_string()
}

pub fn connect_options(known_hosts: Option<PathBuf>) -> ConnectOptions {
    let mut options = ConnectOptions::default();
    if let Some(path) = known_hosts {
        options.known_hosts = path;
    }
    options
}

/// Images to stream to `files.host`: those its part of each deployment that asks for
/// preloading runs.
fn preload_images(inventory: &Inventory, files: &HostFiles) -> Vec<String> {
    let mut images: Vec<String> = files
        .deployments
        .iter()
        .filter(|d| inventory.deployments[&d.deployment].images.preload)
        .flat_map(|d| {
            let own = inventory.deployments[&d.deployment].images_on(&files.host);
            own.into_iter()
                .map(ToString::to_string)
                .chain(d.plugin_images.iter().cloned())
        })
        .collect();
    images.sort();
    images.dedup();
    images
}

/// Connects to a loaded host and prepares its plan; a failure is the host's result. When
/// plugins add to the host, its files are first rendered again with the host's facts, which
/// the plugins are told (one more round trip, for the facts alone).
pub fn connect_and_prepare(
    loaded: &Loaded,
    host: &str,
    step: &dyn Fn(String),
) -> Result<(Connection, Prepared, HostFiles), String> {
    let files = loaded
        .hosts
        .iter()
        .find(|h| h.host == host)
        .expect("a selected host");
    step("gathering facts".into());
    let prepare = || -> miette::Result<(Connection, Prepared, HostFiles)> {
        let local_images: BTreeMap<String, String> =
            synprov::apply::images::local_ids(&preload_images(&loaded.inventory, files))?;
        let connection = Connection::open(&loaded.inventory.hosts[host], &loaded.options)?;
        let plugins_apply = files.deployments.iter().any(|d| {
            (loaded.plugins).apply_to(
                &loaded.inventory,
                &loaded.inventory.deployments[&d.deployment],
            )
        });
        let files = if plugins_apply {
            step("running plugins with the host's facts".into());
            let facts = synprov::apply::host_facts(&connection)?;
            synprov::render::render_host(
                &loaded.inventory,
                &loaded.key,
                &loaded.templates,
                &loaded.plugins,
                host,
                Some(&facts),
            )?
        } else {
            files.clone()
        };
        let prepared = synprov::apply::prepare(&connection, &files, &local_images)?;
        Ok((connection, prepared, files))
    };
    prepare().map_err(failed)
}
