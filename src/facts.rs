//! What a host has now: system, Docker, Compose, and per deployment the files synprov
//! manages there (their hashes) and the images present. Data only, low in the house: render,
//! sizing, plugins and plan read it; [`crate::gather`] fills it from a host.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::generations::index::Indexed;
use crate::host_data::{ManagedPath, ServiceName};
use crate::layers::Sha256Digest;

/// The host's init system, which decides how Docker is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Init {
    Systemd,
    SysV,
    /// No init system that can start services (a container, this build machine).
    None,
}

/// Which Compose the host has (found by its file: running it would cost a Go start-up on
/// every host of every plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Compose {
    /// The `docker compose` plugin, at this path.
    V2(String),
    /// The legacy `docker-compose` program, at this path.
    V1(String),
    Missing,
}

/// What one deployment's directory holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeployedState {
    /// Paths synprov wrote last time (relative to the deploy directory).
    pub manifest: Vec<ManagedPath>,
    /// SHA-256 of each managed file present, by path.
    pub hashes: BTreeMap<String, String>,
    /// Set when an apply wrote files but stopped before the stack was up on them: the
    /// services it was to recreate.
    pub pending: Option<Vec<ServiceName>>,
    /// The ID of the image Synapse's main container runs, when asked for
    /// ([`crate::gather::DeploymentQuery::main_image`]) and the container exists: a rebuild of its image
    /// under the same tag is an upgrade, which only this ID tells.
    pub main_image: Option<String>,
}

/// Serialized only for a digest of what a plan was made against (`saved_plan`).
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub os: String,
    pub arch: String,
    pub package_manager: Option<String>,
    pub init: Init,
    /// The Docker client's version, when installed.
    pub docker: Option<String>,
    /// Whether the Docker daemon runs (a `dockerd` process and its socket).
    pub docker_running: bool,
    pub compose: Compose,
    /// Left out of the digest: free space changes by itself between a plan and its apply.
    #[serde(skip)]
    pub free_kb: u64,
    /// `MemTotal` of `/proc/meminfo`; 0 when not found. Postgres is sized from it.
    pub memory_kb: u64,
    /// Processors this host's processes may run on (`nproc`); 0 when not found.
    pub cores: u32,
    /// Image ID by image reference, for the images asked about.
    pub images: BTreeMap<String, String>,
    /// The chain IDs of the layers the host's images hold, asked for with the images: a
    /// layer the host holds is not sent. Left out of the digest: it says how
    /// much is sent, never what the host ends up with.
    #[serde(skip)]
    pub layer_chains: BTreeSet<Sha256Digest>,
    pub deployments: BTreeMap<String, DeployedState>,
    /// Every deployment synprov recorded on the host, as its index names them.
    pub indexed: Vec<Indexed>,
}

/// Whether `id` is an image ID as Docker prints it (`sha256:` and 64 hex digits): what a
/// host says is one is checked before it is used.
pub fn is_image_id(id: &str) -> bool {
    id.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The manifest of managed files inside a deploy directory: their paths, each followed by a
/// NUL (so that any path reads back as itself). Read too when written by an older synprov,
/// one path per line ([`crate::gather::nul_paths`]).
pub const MANIFEST: &str = ".synprov/manifest";

/// Written with the files, removed once the stack is up on them: while it exists, an apply
/// was interrupted in between. NUL-terminated words (one per line when written by an older
/// synprov): `up`, then the services to recreate.
pub const PENDING: &str = ".synprov/pending";
