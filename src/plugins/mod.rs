//! Custom roles as WebAssembly components (`[[plugins]]` in the inventory).
//!
//! A plugin sees one deployment on one host and returns what its role adds: files,
//! Compose services, homeserver.yaml settings, Nginx locations and health checks. It runs in
//! a sandbox with no WASI at all ([`sandbox`]), its compiled form is cached ([`cache`]), and
//! what it returns is checked before anything uses it ([`output`]): its services against
//! what the operator granted it ([`service`]), its Nginx locations parsed ([`nginx`]), its
//! YAML without aliases ([`yaml`]).

mod cache;
pub mod nginx;
pub mod output;
mod sandbox;
mod service;
pub mod yaml;

use miette::Diagnostic;
use thiserror::Error;

pub use output::{Contribution, PluginCheck};
pub use sandbox::Limits;

use crate::facts::Facts;
use crate::inventory::{Deployment, Inventory, PluginSpec};
use crate::secrets::{MasterKey, Secret};
use crate::topology::Topology;

/// Everything that can go wrong with a plugin; each names the plugin.
#[derive(Debug, Error, Diagnostic)]
pub enum PluginError {
    #[error("plugin `{plugin}`: cannot read {path}: {source}")]
    #[diagnostic(help(
        "check the `path` of the plugin in the inventory (relative to the inventory's directory)"
    ))]
    Read {
        plugin: String,
        path: String,
        source: std::io::Error,
    },

    #[error("plugin `{plugin}`: {path} is not a WebAssembly component: {message}")]
    #[diagnostic(help(
        "build the plugin for wasm32-unknown-unknown and wrap it with `wasm-tools component new` (see the README's plugin guide)"
    ))]
    Invalid {
        plugin: String,
        path: String,
        message: String,
    },

    #[error("plugin `{plugin}` imports {imports}, which the sandbox does not provide")]
    #[diagnostic(help(
        "a plugin may import only synprov's plugin interface (no WASI: no files, network, environment or clock); build it for wasm32-unknown-unknown, not wasm32-wasip1/p2"
    ))]
    ForbiddenImport { plugin: String, imports: String },

    #[error("plugin `{plugin}` does not export the plugin interface: {message}")]
    #[diagnostic(help("build it against the SDK in plugins/sdk (plugins/wit/plugin.wit)"))]
    WrongInterface { plugin: String, message: String },

    #[error("plugin `{plugin}` ran out of fuel in `{call}` (an endless loop?)")]
    #[diagnostic(help("a plugin call may execute at most {fuel} instructions' worth of fuel"))]
    OutOfFuel {
        plugin: String,
        call: String,
        fuel: u64,
    },

    #[error("plugin `{plugin}` went over its memory limit of {limit_mib} MiB in `{call}`")]
    #[diagnostic(help("a plugin's linear memory may not grow past {limit_mib} MiB"))]
    OutOfMemory {
        plugin: String,
        call: String,
        limit_mib: u64,
    },

    #[error("plugin `{plugin}` crashed in `{call}`: {message}")]
    #[diagnostic(help("a bug in the plugin (a panic or a trap): report it to its author"))]
    Trap {
        plugin: String,
        call: String,
        message: String,
    },

    #[error("plugin `{plugin}` refused its config: {message}")]
    #[diagnostic(help("fix the `config` table of the plugin in the inventory"))]
    Config { plugin: String, message: String },

    #[error("plugin `{plugin}` failed for {deployment} on {host}: {message}")]
    Failed {
        plugin: String,
        deployment: String,
        host: String,
        message: String,
    },

    #[error("plugin `{plugin}`, service `{service}`, field `{field}`: {why}")]
    #[diagnostic(help("{help}"))]
    Capability {
        plugin: String,
        service: String,
        field: String,
        why: String,
        help: String,
    },

    #[error("plugin `{plugin}`: {path} has SHA-256 {actual}, not the pinned {expected}")]
    #[diagnostic(help(
        "the file changed after the inventory was checked: check where it came from"
    ))]
    Digest {
        plugin: String,
        path: String,
        expected: String,
        actual: String,
    },

    #[error("plugin `{plugin}` returned something synprov refuses: {message}")]
    #[diagnostic(help("a bug in the plugin: report it to its author"))]
    BadOutput { plugin: String, message: String },
}

/// One deployment on one host: what a plugin is run for.
pub struct Scope<'a> {
    pub inventory: &'a Inventory,
    pub deployment: &'a Deployment,
    pub topology: &'a Topology,
    pub host: &'a str,
    /// The host's facts; None when rendering without connecting.
    pub facts: Option<&'a Facts>,
}

/// A plugin compiled and ready, with what it says about itself.
pub struct Plugin {
    pub spec: PluginSpec,
    pub metadata: Metadata,
    /// Whether the compiled form came from the cache.
    pub cached: bool,
    component: wasmtime::component::Component,
}

/// What a plugin says about itself.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    pub description: String,
}

/// The inventory's plugins, compiled and with their configs checked.
pub struct Plugins {
    sandbox: Option<sandbox::Sandbox>,
    pub loaded: Vec<Plugin>,
}

impl Plugins {
    /// No plugins: what rendering without an inventory's plugins uses.
    pub fn none() -> Plugins {
        Plugins {
            sandbox: None,
            loaded: Vec::new(),
        }
    }

    /// Compiles (or takes from the cache) every plugin of the inventory and checks its
    /// config; the first failure is the error.
    pub fn load(inventory: &Inventory, limits: Limits) -> Result<Plugins, PluginError> {
        if inventory.plugins.is_empty() {
            return Ok(Plugins::none());
        }
        let sandbox = sandbox::Sandbox::new(limits);
        let mut loaded = Vec::new();
        for spec in &inventory.plugins {
            let (component, cached) = sandbox.compile(spec)?;
            let metadata = sandbox.describe(spec, &component)?;
            sandbox.check_config(spec, &component)?;
            loaded.push(Plugin {
                spec: spec.clone(),
                metadata,
                cached,
                component,
            });
        }
        Ok(Plugins {
            sandbox: Some(sandbox),
            loaded,
        })
    }

    /// Whether any plugin adds to `deployment`.
    pub fn apply_to(&self, inventory: &Inventory, deployment: &Deployment) -> bool {
        self.loaded
            .iter()
            .any(|p| p.spec.applies_to(inventory, deployment))
    }

    /// What every plugin applying to the deployment adds on the host of `scope`, checked;
    /// secrets the plugins derived are pushed to `secrets` (for masking and 0600 modes).
    pub fn contribute(
        &self,
        scope: &Scope<'_>,
        key: &MasterKey,
        secrets: &mut Vec<Secret>,
    ) -> Result<Vec<Contribution>, PluginError> {
        let Some(sandbox) = &self.sandbox else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for plugin in self
            .loaded
            .iter()
            .filter(|p| p.spec.applies_to(scope.inventory, scope.deployment))
        {
            let raw = sandbox.contribute(plugin, scope, key, secrets)?;
            out.push(output::check(&plugin.spec, raw)?);
        }
        Ok(out)
    }
}
