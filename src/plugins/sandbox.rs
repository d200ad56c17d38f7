//! The sandbox: wasmtime's component model with nothing linked but `derive-secret`.
//!
//! No WASI is linked, so a plugin has no filesystem, network, environment or clock, and a
//! component importing anything else is refused before it runs. Every call gets a fresh
//! store (a trapped instance is unusable) with a fuel budget, a memory limit and a bound on
//! the data copied out of the guest.

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

use super::{PluginError, Scope, cache};
use crate::inventory::PluginSpec;
use crate::secrets::{MasterKey, Secret};
use crate::topology::Role;

wasmtime::component::bindgen!({
    path: "plugins/wit",
    world: "plugin",
});

use synprov::plugin::types;

/// The imports a plugin may have: the interface's types and the one host function.
const ALLOWED_IMPORTS: [&str; 2] = ["synprov:plugin/types@0.1.0", "derive-secret"];

/// What one plugin call may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Fuel per call: roughly the number of WebAssembly instructions.
    pub fuel: u64,
    pub memory_bytes: usize,
    /// Bytes the host copies out of the guest per call (strings and lists).
    pub copy_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: 2_000_000_000,
            memory_bytes: 64 << 20,
            copy_bytes: 16 << 20,
        }
    }
}

pub struct Sandbox {
    engine: Engine,
    linker: Linker<State>,
    limits: Limits,
}

/// A call's store data: its memory accounting and the secrets it derived.
struct State {
    memory_limit: usize,
    memory_exceeded: bool,
    secret: Option<SecretDeriver>,
}

/// Derives the plugin's secrets for one deployment and records them.
struct SecretDeriver {
    key: MasterKey,
    server_name: String,
    plugin: String,
    derived: Vec<Secret>,
}

impl ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_exceeded = true;
            wasmtime::bail!("memory limit");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl synprov::plugin::types::Host for State {}

impl PluginImports for State {
    fn derive_secret(&mut self, purpose: String) -> String {
        let Some(deriver) = &mut self.secret else {
            // describe and check-config have no deployment: nothing to derive for.
            return String::new();
        };
        let secret = deriver.key.derive(
            &deriver.server_name,
            &format!("plugin/{}/{purpose}", deriver.plugin),
        );
        let text = secret.expose().to_string();
        deriver.derived.push(secret);
        text
    }
}

impl Sandbox {
    pub fn new(limits: Limits) -> Sandbox {
        let mut config = Config::new();
        config.consume_fuel(true);
        // A trap is reported by its cause; the guest's backtrace means nothing to a user.
        config.wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config).expect("the sandbox's engine settings are valid");
        let mut linker = Linker::new(&engine);
        Plugin::add_to_linker::<_, HasSelf<State>>(&mut linker, |state| state)
            .expect("the plugin interface links");
        Sandbox {
            engine,
            linker,
            limits,
        }
    }

    /// The plugin's component, compiled or from the cache; refused when it imports
    /// anything outside the plugin interface. Returns whether it came from the cache.
    pub fn compile(&self, spec: &PluginSpec) -> Result<(Component, bool), PluginError> {
        let bytes = std::fs::read(&spec.path).map_err(|source| PluginError::Read {
            plugin: spec.name.clone(),
            path: spec.path.display().to_string(),
            source,
        })?;
        // The inventory's check compared the pin already; this compares the bytes compiled.
        if let Some(expected) = &spec.sha256 {
            let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if &actual != expected {
                return Err(PluginError::Digest {
                    plugin: spec.name.clone(),
                    path: spec.path.display().to_string(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let invalid = |e: wasmtime::Error| PluginError::Invalid {
            plugin: spec.name.clone(),
            path: spec.path.display().to_string(),
            message: format!("{e:#}"),
        };
        let (component, cached) = cache::load_or_compile(&self.engine, &bytes).map_err(invalid)?;
        let ty = component.component_type();
        let forbidden: Vec<String> = ty
            .imports(&self.engine)
            .filter(|(name, _)| !ALLOWED_IMPORTS.contains(name))
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        if !forbidden.is_empty() {
            return Err(PluginError::ForbiddenImport {
                plugin: spec.name.clone(),
                imports: forbidden.join(", "),
            });
        }
        Ok((component, cached))
    }

    pub fn describe(
        &self,
        spec: &PluginSpec,
        component: &Component,
    ) -> Result<super::Metadata, PluginError> {
        let (meta, _) = self.call(&spec.name, "describe", component, None, |p, s| {
            p.call_describe(s)
        })?;
        Ok(super::Metadata {
            name: meta.name,
            version: meta.version,
            description: meta.description,
        })
    }

    pub fn check_config(
        &self,
        spec: &PluginSpec,
        component: &Component,
    ) -> Result<(), PluginError> {
        let config = spec.config.to_string();
        self.call(&spec.name, "check-config", component, None, |p, s| {
            p.call_check_config(s, &config)
        })?
        .0
        .map_err(|message| PluginError::Config {
            plugin: spec.name.clone(),
            message,
        })
    }

    /// The plugin's contribution, unchecked; the secrets it derived go to `secrets`.
    pub fn contribute(
        &self,
        plugin: &super::Plugin,
        scope: &Scope<'_>,
        key: &MasterKey,
        secrets: &mut Vec<Secret>,
    ) -> Result<types::Contribution, PluginError> {
        let deployment = scope.deployment;
        let input = input(scope, &plugin.spec);
        let deriver = SecretDeriver {
            key: key.clone(),
            server_name: deployment.server_name.clone(),
            plugin: plugin.spec.name.clone(),
            derived: Vec::new(),
        };
        let (result, derived) = self.call(
            &plugin.spec.name,
            "contribute",
            &plugin.component,
            Some(deriver),
            |p, s| p.call_contribute(s, &input),
        )?;
        secrets.extend(derived);
        result.map_err(|message| PluginError::Failed {
            plugin: plugin.spec.name.clone(),
            deployment: deployment.name.clone(),
            host: scope.host.to_string(),
            message,
        })
    }

    /// One call in a fresh store, its failures named for what they are; returns the
    /// secrets it derived with its result.
    fn call<R>(
        &self,
        plugin: &str,
        call: &str,
        component: &Component,
        deriver: Option<SecretDeriver>,
        f: impl FnOnce(&Plugin, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<(R, Vec<Secret>), PluginError> {
        let mut store = Store::new(
            &self.engine,
            State {
                memory_limit: self.limits.memory_bytes,
                memory_exceeded: false,
                secret: deriver,
            },
        );
        store.limiter(|state| state);
        store
            .set_fuel(self.limits.fuel)
            .expect("fuel is enabled in the engine");
        store.set_hostcall_fuel(self.limits.copy_bytes);
        let instance = Plugin::instantiate(&mut store, component, &self.linker).map_err(|e| {
            PluginError::WrongInterface {
                plugin: plugin.to_string(),
                message: format!("{e:#}"),
            }
        })?;
        let result = f(&instance, &mut store).map_err(|e| self.failure(plugin, call, &store, e))?;
        let derived = store
            .data_mut()
            .secret
            .take()
            .map_or_else(Vec::new, |d| d.derived);
        Ok((result, derived))
    }

    fn failure(
        &self,
        plugin: &str,
        call: &str,
        store: &Store<State>,
        e: wasmtime::Error,
    ) -> PluginError {
        let (plugin, call) = (plugin.to_string(), call.to_string());
        if store.data().memory_exceeded {
            PluginError::OutOfMemory {
                plugin,
                call,
                limit_mib: (self.limits.memory_bytes >> 20) as u64,
            }
        } else if e.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
            PluginError::OutOfFuel {
                plugin,
                call,
                fuel: self.limits.fuel,
            }
        } else {
            PluginError::Trap {
                plugin,
                call,
                message: format!("{e:#}"),
            }
        }
    }
}

/// What the plugin is told about the deployment on the host.
fn input(scope: &Scope<'_>, spec: &PluginSpec) -> types::Input {
    let Scope {
        inventory,
        deployment,
        topology,
        host,
        facts,
    } = *scope;
    let machine = &inventory.hosts[host];
    types::Input {
        facts: facts.map(|f| types::Facts {
            os: f.os.clone(),
            arch: f.arch.clone(),
            docker: f.docker.clone(),
        }),
        deployment: types::Deployment {
            name: deployment.name.clone(),
            server_name: deployment.server_name.clone(),
            public_baseurl: deployment.public_baseurl.clone(),
            deploy_dir: deployment.deploy_dir.to_string(),
            host: host.to_string(),
            address: machine.address.clone(),
            private_address: machine.private_address.clone(),
            main_host: host == deployment.host,
            http_port: deployment.nginx.http_port,
            workers: topology
                .processes
                .iter()
                .filter_map(|p| match p.role {
                    Role::Worker(kind) => Some(types::Worker {
                        name: p.name.clone(),
                        kind: kind.stem().to_string(),
                        host: p.host.clone(),
                    }),
                    Role::Main => None,
                })
                .collect(),
        },
        config: spec.config.to_string(),
    }
}
