//! The SDK for synprov plugins: the bindings of `plugins/wit/plugin.wit`, and helpers.
//!
//! A plugin implements [`Guest`] and calls [`export_plugin!`]:
//!
//! ```ignore
//! use synprov_plugin_sdk::*;
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn describe() -> Metadata { metadata!("Says hello") }
//!     fn check_config(_config: String) -> Result<(), String> { Ok(()) }
//!     fn contribute(input: Input) -> Result<Contribution, String> {
//!         let mut out = Contribution::default();
//!         out.files.push(File::new("hello.txt", format!("hello from {}\n", input.deployment.server_name)));
//!         Ok(out)
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! Build it for `wasm32-unknown-unknown`, then make it a component with
//! `wasm-tools component new` (scripts/build-plugins.sh does both).

/// The generated bindings, in a module: at the crate root the exported macro would clash
/// with its own re-export.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "synprov_plugin_sdk::bindings",
    });
}

pub use bindings::synprov::plugin::types::{
    Deployment, Facts, File, HealthCheck, HttpCheck, Location, Service, Worker,
};
pub use bindings::{Contribution, Guest, Input, Metadata, derive_secret, export_plugin};

/// The plugin's name and version from its Cargo.toml, and a description.
#[macro_export]
macro_rules! metadata {
    ($description:expr) => {
        $crate::Metadata {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: $description.to_string(),
        }
    };
}

/// Parses the plugin's config table; the error names the field, for `check-config`.
pub fn parse_config<T: serde::de::DeserializeOwned>(config: &str) -> Result<T, String> {
    serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))
}

impl Default for Contribution {
    fn default() -> Self {
        Contribution {
            files: Vec::new(),
            services: Vec::new(),
            homeserver: String::new(),
            locations: Vec::new(),
            health_checks: Vec::new(),
        }
    }
}

impl File {
    /// A file with synprov's default mode (0644, or 0600 when it holds a derived secret).
    pub fn new(path: impl Into<String>, contents: impl Into<String>) -> File {
        File {
            path: path.into(),
            contents: contents.into(),
            mode: None,
            owner: None,
            used_by: Vec::new(),
        }
    }

    /// The same file, owned by `uid:gid` (the user its service runs as).
    pub fn owned_by(mut self, uid: u32, gid: u32) -> File {
        self.owner = Some((uid, gid));
        self
    }

    /// The same file, restarting `service` when it changes.
    pub fn used_by(mut self, service: &str) -> File {
        self.used_by.push(service.to_string());
        self
    }
}

/// A value as YAML: JSON is valid YAML, and serde_json quotes every string safely.
pub fn yaml(value: &serde_json::Value) -> String {
    value.to_string()
}
