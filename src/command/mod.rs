//! One module per command. Each loads what it needs, calls the library, and prints.

pub mod apply;
pub mod check;
pub mod plan;
pub mod render;
pub mod rollback;

use std::collections::BTreeMap;
use std::path::PathBuf;

use synprov::apply::Prepared;
use synprov::inventory::{self, Inventory};
use synprov::render::{HostFiles, Templates};
use synprov::secrets::MasterKey;
use synprov::transport::{ConnectOptions, Connection};

use crate::cli::Target;

/// The inventory and every file of the chosen hosts, rendered before connecting anywhere:
/// a bad inventory fails before any host is touched.
pub struct Loaded {
    pub inventory: Inventory,
    pub hosts: Vec<HostFiles>,
    pub options: ConnectOptions,
}

pub fn load(target: &Target) -> miette::Result<Loaded> {
    let inventory = inventory::load(&target.inventory)?;
    let key = MasterKey::for_inventory(&target.inventory)?;
    let templates = Templates::load(target.roles.as_deref())?;
    let hosts = synprov::render::render(&inventory, &key, &templates, target.host.as_deref())?;
    Ok(Loaded {
        inventory,
        hosts,
        options: connect_options(target.known_hosts.clone()),
    })
}

pub fn connect_options(known_hosts: Option<PathBuf>) -> ConnectOptions {
    let mut options = ConnectOptions::default();
    if let Some(path) = known_hosts {
        options.known_hosts = path;
    }
    options
}

/// Images to stream to `files.host`: those of its deployments that ask for preloading.
fn preload_images(inventory: &Inventory, files: &HostFiles) -> Vec<String> {
    let mut images: Vec<String> = files
        .deployments
        .iter()
        .map(|d| &inventory.deployments[&d.deployment])
        .filter(|d| d.images.preload)
        .flat_map(|d| d.images.all().map(String::clone))
        .collect();
    images.sort();
    images.dedup();
    images
}

/// Connects to a host and prepares its plan.
pub fn connect_and_prepare(
    loaded: &Loaded,
    files: &HostFiles,
) -> miette::Result<(Connection, Prepared)> {
    let host = &loaded.inventory.hosts[&files.host];
    let local_images: BTreeMap<String, String> =
        synprov::apply::images::local_ids(&preload_images(&loaded.inventory, files))?;
    let connection = Connection::open(host, &loaded.options)?;
    let prepared = synprov::apply::prepare(&connection, files, &local_images)?;
    Ok((connection, prepared))
}
