//! What a host has now, gathered in one round trip: system, Docker, Compose, and per
//! deployment the files synprov manages there (their hashes) and the images present.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::confine;
use crate::generations::index::{self, Indexed};
use crate::host_data::{MANIFEST_ENTRIES, ManagedPath, Refused, ServiceName};
use crate::layers::{Sha256Digest, listed_chain_ids};
use crate::sh;
use crate::shell::{Command, Script, print_nul_terminated};
use crate::transport::{Connection, OutputLimit};

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
    /// ([`DeploymentQuery::main_image`]) and the container exists: a rebuild of its image
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

/// A deployment directory and the files to hash in it.
pub struct DeploymentQuery<'a> {
    pub name: &'a str,
    pub dir: &'a str,
    pub paths: Vec<&'a str>,
    /// Ask for the image ID main's container runs ([`DeployedState::main_image`]): for a
    /// deployment whose images are sent from this machine, to compare with what is sent.
    pub main_image: bool,
}

/// What the facts script may print: the manifests of a host's deployments at their
/// largest ([`MANIFEST_ENTRIES`] paths, base64) and their hashes, with room to spare.
pub const OUTPUT: OutputLimit = OutputLimit::stdout(32 << 20);

/// Whether `id` is an image ID as Docker prints it (`sha256:` and 64 hex digits): what a
/// host says is one is checked before it is used.
pub fn is_image_id(id: &str) -> bool {
    id.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The manifest of managed files inside a deploy directory: their paths, each followed by a
/// NUL (so that any path reads back as itself). Read too when written by an older synprov,
/// one path per line ([`nul_paths`]).
pub const MANIFEST: &str = ".synprov/manifest";

/// Written with the files, removed once the stack is up on them: while it exists, an apply
/// was interrupted in between. NUL-terminated words (one per line when written by an older
/// synprov): `up`, then the services to recreate.
pub const PENDING: &str = ".synprov/pending";

/// Prints the paths listed in `file`, each followed by a NUL, whichever way the file was
/// written: NUL-terminated, or one path per line by an older synprov (a file without a
/// NUL). An empty or missing file lists nothing.
pub fn nul_paths(file: &str) -> Script {
    sh!(
        "{ if tr -d '\\000' < {} | cmp -s - {}; then tr '\\n' '\\000' < {}; else cat < {}; fi; }",
        file,
        file,
        file,
        file
    )
}

/// Hashes those of its arguments that are regular files inside the working directory (the
/// deploy directory), with one `sha256sum`: a path of the host's manifest that goes up, is
/// absolute, or names a link or anything but a regular file is skipped, never read.
const HASH_REGULAR: &str = "n=$#; for p; do case /$p/ in *//*|*/./*|*/../*) continue ;; esac; \
                            [ -f \"./$p\" ] && [ ! -L \"./$p\" ] && set -- \"$@\" \"$p\"; done; \
                            shift \"$n\"; [ $# -eq 0 ] || exec sha256sum -- \"$@\"";

/// The most images whose layers a host lists (`layers=` lines), and the most layers read
/// per image: bounds on what is read back. A layer left out is sent again, nothing worse.
pub const LAYER_IMAGES: usize = 128;
pub const IMAGE_LAYERS: usize = 128;

/// Lists the diff IDs of the layers of the host's images, one image per `layers=` line,
/// bottom first, for at most [`LAYER_IMAGES`] images, the newest first (`docker image ls`
/// lists an image once per tag). At most some 1.2 MB: Docker stacks at most 127 layers.
fn layers_script() -> Script {
    sh!(
        "docker image ls -q --no-trunc | awk '!seen[$0]++' | head -n {} | xargs -r docker image inspect \
         --format 'layers={{range .RootFS.Layers}}{{.}} {{end}}' --\n",
        LAYER_IMAGES.to_string()
    )
}

/// The script that gathers the facts (run with `sh -s`, as root when needed). Whatever
/// came from the inventory or a plugin is a quoted word of it; whatever it prints back that
/// could hold any byte (names, paths, the manifest, the pending mark) is base64, so that no
/// value can forge a line of the output. In each deploy directory, the paths are checked
/// by [`crate::confine`]'s guard before any is read: a refusal ends the script (status 77)
/// naming the path.
pub fn script(deployments: &[DeploymentQuery<'_>], images: &[String]) -> Script {
    let mut s = sh!(r#"exec 3>&2 2>/dev/null
umask 077
. /etc/os-release && echo "os=$ID $VERSION_ID"
echo "arch=$(uname -m)"
for pm in apt-get dnf yum apk; do command -v $pm >/dev/null && { echo "pm=$pm"; break; }; done
if [ -d /run/systemd/system ]; then echo init=systemd; elif [ -x /etc/init.d/docker ] || command -v service >/dev/null && [ "$(cat /proc/1/comm)" = init ]; then echo init=sysv; else echo init=none; fi
command -v docker >/dev/null && echo "docker=$(docker --version | sed 's/^Docker version //; s/,.*//')"
grep -qx dockerd /proc/[0-9]*/comm && [ -S /var/run/docker.sock ] && echo docker_running=yes
for d in "$HOME/.docker/cli-plugins" /usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins; do [ -x "$d/docker-compose" ] && { echo "compose_v2=$d/docker-compose"; break; }; done
command -v docker-compose >/dev/null && echo "compose_v1=$(command -v docker-compose)"
echo "free_kb=$(df -Pk / | awk 'NR==2 {print $4}')"
awk '$1 == "MemTotal:" {print "memory_kb=" $2}' /proc/meminfo
echo "cores=$(nproc)"
"#);
    s.push(index::list());
    if !images.is_empty() {
        s.push(layers_script());
    }
    for image in images {
        s.push(sh!(
            "id=$(docker image inspect --format '{{.Id}}' -- {}) && echo {}\"$id\"\n",
            image,
            format!("image={} ", STANDARD.encode(image))
        ));
    }
    for d in deployments {
        // The guard's refusals (and only in this part, the rest's noise) reach stderr.
        s.push(sh!(
            "echo {}\n(\nexec 2>&3\n",
            format!("deployment={}", STANDARD.encode(d.name))
        ));
        s.push(confine::enter_if_present(d.dir));
        for path in &d.paths {
            s.push(confine::file(path));
        }
        s.push(sh!(
            "{} && base64 < {} | sed 's/^/manifest=/'\n\
             {} && base64 < {} | sed 's/^/pending=/'\n",
            confine::regular(MANIFEST),
            MANIFEST,
            confine::regular(PENDING),
            PENDING
        ));
        if d.main_image {
            // Main's container as Compose v2 names it, or v1, in the project `.env` names.
            s.push(sh!(
                "p=$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' .env) && [ -n \"$p\" ] && \
                 docker inspect --format 'main_image={{.Image}}' -- \"$p-synapse-1\" \"${p}_synapse_1\"\n"
            ));
        }
        s.push(sh!("{ "));
        s.push(print_nul_terminated(&d.paths));
        s.push(sh!("; {} && ", confine::regular(MANIFEST)));
        s.push(nul_paths(MANIFEST));
        s.push(sh!(
            "; } | {} | sort -u -k2 | sed 's/^/hash=/'\n) || [ $? -ne 77 ] || exit 77\n",
            Command::new("xargs")
                .arg("-0")
                .arg("-r")
                .arg("sh")
                .arg("-c")
                .arg(HASH_REGULAR)
                .arg("sh")
        ));
    }
    s.push(sh!("exit 0\n"));
    s
}

/// Splits a list of words as [`MANIFEST`] and [`PENDING`] hold them: NUL-terminated, or
/// one per line when written by an older synprov.
pub(crate) fn words(bytes: &[u8]) -> Vec<String> {
    let separator = if bytes.contains(&0) { 0 } else { b'\n' };
    bytes
        .split(|b| *b == separator)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// A path as `sha256sum` prints it: a line starting with `\` has `\\`, `\n` and `\r`
/// escaped in its path.
fn unescape_sum(line: &str) -> Option<(&str, String)> {
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (hash, path) = line.split_once("  ")?;
    if !escaped {
        return Some((hash, path.to_string()));
    }
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some((hash, out))
}

/// Reads the script's output. The host's output is not trusted to be well formed: lines
/// that do not parse are skipped, missing facts keep their defaults. What synprov acts on
/// is refused when it could not have written it: a manifest entry that is not a
/// [`ManagedPath`] (it would become a deletion), a manifest of more than
/// [`MANIFEST_ENTRIES`] entries, a pending mark naming anything but services.
pub fn parse(output: &str) -> Result<Facts, Refused> {
    let mut facts = Facts {
        os: String::new(),
        arch: String::new(),
        package_manager: None,
        init: Init::None,
        docker: None,
        docker_running: false,
        compose: Compose::Missing,
        free_kb: 0,
        memory_kb: 0,
        cores: 0,
        images: BTreeMap::new(),
        layer_chains: BTreeSet::new(),
        deployments: BTreeMap::new(),
        indexed: Vec::new(),
    };
    let decode = |text: &str| STANDARD.decode(text.trim()).ok();
    // The manifest and pending mark of each deployment, base64 in lines.
    let mut encoded: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut layer_lines = 0;
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "os" => facts.os = value.to_string(),
            "arch" => facts.arch = value.to_string(),
            "pm" => facts.package_manager = Some(value.to_string()),
            "init" => {
                facts.init = match value {
                    "systemd" => Init::Systemd,
                    "sysv" => Init::SysV,
                    _ => Init::None,
                }
            }
            "docker" => facts.docker = Some(value.to_string()),
            "docker_running" => facts.docker_running = true,
            "compose_v2" => facts.compose = Compose::V2(value.to_string()),
            "compose_v1" if facts.compose == Compose::Missing => {
                facts.compose = Compose::V1(value.to_string())
            }
            "free_kb" => facts.free_kb = value.trim().parse().unwrap_or(0),
            "memory_kb" => facts.memory_kb = value.trim().parse().unwrap_or(0),
            "cores" => facts.cores = value.trim().parse().unwrap_or(0),
            "indexed" => facts.indexed.extend(index::parse(value)),
            "image" => {
                if let Some((image, id)) = value.split_once(' ')
                    && let Some(image) = decode(image)
                {
                    let image = String::from_utf8_lossy(&image).into_owned();
                    facts.images.insert(image, id.trim().to_string());
                }
            }
            "layers" if layer_lines < LAYER_IMAGES => {
                layer_lines += 1;
                // A line with anything but diff IDs in it is dropped whole.
                let chains = listed_chain_ids(value, IMAGE_LAYERS);
                facts.layer_chains.extend(chains.unwrap_or_default());
            }
            "deployment" => {
                current = decode(value).map(|n| String::from_utf8_lossy(&n).into_owned());
                if let Some(name) = &current {
                    facts.deployments.entry(name.clone()).or_default();
                    encoded.entry(name.clone()).or_default();
                }
            }
            "manifest" | "pending" => {
                let Some((manifest, pending)) = current.as_ref().and_then(|c| encoded.get_mut(c))
                else {
                    continue;
                };
                let into = if key == "manifest" {
                    manifest
                } else {
                    pending.get_or_insert_with(String::new)
                };
                into.push_str(value.trim());
            }
            "main_image" => {
                if let Some(state) = current.as_ref().and_then(|c| facts.deployments.get_mut(c))
                    && is_image_id(value.trim())
                {
                    state.main_image = Some(value.trim().to_string());
                }
            }
            "hash" => {
                let Some(state) = current.as_ref().and_then(|c| facts.deployments.get_mut(c))
                else {
                    continue;
                };
                if let Some((hash, path)) = unescape_sum(value) {
                    state.hashes.insert(path, hash.to_string());
                }
            }
            _ => {}
        }
    }
    for (name, (manifest, pending)) in encoded {
        let Some(state) = facts.deployments.get_mut(&name) else {
            continue;
        };
        state.manifest = manifest_entries(&name, &decode(&manifest).unwrap_or_default())?;
        state.pending = pending
            .map(|p| pending_services(&name, &decode(&p).unwrap_or_default()))
            .transpose()?;
    }
    Ok(facts)
}

/// Runs the facts script for `queries` on `connection` and reads its output within
/// [`OUTPUT`]: the one way the facts are gathered. A refusal names the host, the deploy
/// directory, the file and the entry.
pub fn gather(
    connection: &Connection,
    queries: &[DeploymentQuery<'_>],
    images: &[String],
) -> Result<Facts, FactsError> {
    let output = connection.run_script_within(&script(queries, images), OUTPUT)?;
    // A refusal of the guard ([`confine`]: a link or a loose directory where synprov acts)
    // ends the script with its reason on stderr: facts read as empty would plan over it.
    if !output.success() {
        return Err(FactsError::Failed {
            host: connection.host_name().to_string(),
            tail: output.tail(20),
        });
    }
    parse(&output.stdout_text()).map_err(|refused| {
        let dir = (queries.iter())
            .find(|q| q.name == refused.deployment)
            .map_or_else(|| refused.deployment.clone(), |q| q.dir.to_string());
        FactsError::Refused(refused.at(connection.host_name(), &dir))
    })
}

/// Why the facts could not be gathered.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FactsError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] crate::transport::TransportError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Refused(crate::host_data::HostDataError),

    /// The facts script stopped short (the host's reason, escaped, is its last lines).
    #[error("{host}: gathering facts failed: {}\n{tail}", crate::text::last_line(.tail))]
    Failed { host: String, tail: String },
}

/// The entries of a deployment's [`MANIFEST`], each a [`ManagedPath`].
pub(crate) fn manifest_entries(
    deployment: &str,
    bytes: &[u8],
) -> Result<Vec<ManagedPath>, Refused> {
    let words = words(bytes);
    if words.len() > MANIFEST_ENTRIES {
        return Err(Refused::new(
            deployment,
            MANIFEST,
            &format!("{} entries", words.len()),
            &format!("is more than the {MANIFEST_ENTRIES} a manifest may list"),
        ));
    }
    words
        .iter()
        .map(|w| {
            let path = ManagedPath::parse(w).map_err(|why| Refused::new(deployment, MANIFEST, w, why))?;
            if path.in_data() {
                return Err(Refused::new(
                    deployment,
                    MANIFEST,
                    w,
                    "lies in the deployment's data or synprov's own state, which synprov never lists",
                ));
            }
            Ok(path)
        })
        .collect()
}

/// The services a deployment's [`PENDING`] mark names (after its `up`), each a
/// [`ServiceName`].
fn pending_services(deployment: &str, bytes: &[u8]) -> Result<Vec<ServiceName>, Refused> {
    let mut words = words(bytes);
    if words.first().is_some_and(|w| w == "up") {
        words.remove(0);
    }
    if words.len() > MANIFEST_ENTRIES {
        return Err(Refused::new(
            deployment,
            PENDING,
            &format!("{} services", words.len()),
            "is more than a deployment has",
        ));
    }
    words
        .iter()
        .map(|w| ServiceName::parse(w).map_err(|why| Refused::new(deployment, PENDING, w, why)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &Script) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.text())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sha256(data: &[u8]) -> String {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
    }

    #[test]
    fn the_script_runs_and_its_output_parses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".synprov")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "x\n").unwrap();
        std::fs::write(dir.path().join("old.yaml"), "y\n").unwrap();
        // One path per line: a manifest written by an older synprov.
        std::fs::write(dir.path().join(MANIFEST), "a.yaml\nold.yaml\n").unwrap();
        std::fs::write(dir.path().join(PENDING), "up\nsynapse\n").unwrap();
        let d = dir.path().to_str().unwrap();
        let query = [
            DeploymentQuery {
                name: "d",
                dir: d,
                paths: vec!["a.yaml", "missing.yaml"],
                main_image: false,
            },
            DeploymentQuery {
                name: "new",
                dir: "/nonexistent/x",
                paths: vec!["a"],
                main_image: false,
            },
        ];
        let facts = parse(&run(&script(&query, &[]))).unwrap();
        assert!(!facts.arch.is_empty());
        assert!(facts.memory_kb > 0 && facts.cores > 0, "{facts:?}");
        let state = &facts.deployments["d"];
        let manifest: Vec<&str> = state.manifest.iter().map(ManagedPath::as_str).collect();
        assert_eq!(manifest, ["a.yaml", "old.yaml"]);
        assert_eq!(
            state.hashes.keys().collect::<Vec<_>>(),
            ["a.yaml", "old.yaml"]
        );
        assert_eq!(state.hashes["a.yaml"], sha256(b"x\n"));
        assert_eq!(
            state.pending,
            Some(vec![ServiceName::parse("synapse").unwrap()])
        );
        assert!(facts.deployments["new"].hashes.is_empty());
    }

    #[test]
    fn hostile_names_and_paths_read_back_as_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [
            "back\\slash",
            "-x",
            "$(touch z)",
            "sp  ace",
            "\u{e9}t\u{e9}",
        ];
        std::fs::create_dir_all(dir.path().join(".synprov")).unwrap();
        let mut manifest = Vec::new();
        for path in paths {
            std::fs::write(dir.path().join(path), path).unwrap();
            manifest.extend_from_slice(path.as_bytes());
            manifest.push(0);
        }
        std::fs::write(dir.path().join("gone x"), "").unwrap();
        manifest.extend_from_slice(b"gone x\0");
        std::fs::write(dir.path().join(MANIFEST), &manifest).unwrap();
        std::fs::write(dir.path().join(PENDING), b"up\0s.v\0").unwrap();
        let name = "d\nhash=0000  forged";
        let query = [DeploymentQuery {
            name,
            dir: dir.path().to_str().unwrap(),
            paths: paths.to_vec(),
            main_image: false,
        }];
        let facts = parse(&run(&script(&query, &[]))).unwrap();
        assert_eq!(facts.deployments.keys().collect::<Vec<_>>(), [name]);
        let state = &facts.deployments[name];
        let mut expected: Vec<&str> = paths.to_vec();
        expected.push("gone x");
        let manifest: Vec<&str> = state.manifest.iter().map(ManagedPath::as_str).collect();
        assert_eq!(manifest, expected);
        for path in paths {
            assert_eq!(state.hashes[path], sha256(path.as_bytes()), "{path:?}");
        }
        assert_eq!(state.hashes.len(), paths.len() + 1);
        assert_eq!(
            state.pending,
            Some(vec![ServiceName::parse("s.v").unwrap()])
        );
        assert!(!dir.path().join("z").exists());
    }

    /// A manifest entry that would leave the deploy directory, or a pending mark that is
    /// not a list of services, is refused, naming the deployment, the file and the entry.
    #[test]
    fn a_manifest_leaving_the_deploy_directory_or_a_forged_pending_mark_is_refused() {
        let output = |manifest: &[u8], pending: &[u8]| {
            format!(
                "deployment=ZA==\nmanifest={}\npending={}\n",
                STANDARD.encode(manifest),
                STANDARD.encode(pending)
            )
        };
        for (manifest, entry) in [
            (&b"a.yaml\0../canary/x\0"[..], "../canary/x"),
            (b"/etc/x\0", "/etc/x"),
            (b"a\nb\0", "a\nb"),
            (b"a//b\0", "a//b"),
            (b"pgsql/PG_VERSION\0", "pgsql/PG_VERSION"),
            (b".synprov/generations\0", ".synprov/generations"),
        ] {
            let refused = parse(&output(manifest, b"up\0")).unwrap_err();
            assert_eq!(
                (
                    refused.deployment.as_str(),
                    refused.file,
                    refused.entry.as_str()
                ),
                ("d", MANIFEST, entry)
            );
        }
        let refused = parse(&output(b"a\0", b"up\0synapse\n  ~ forged line\0")).unwrap_err();
        assert_eq!(
            (refused.file, refused.entry.as_str()),
            (PENDING, "synapse\n  ~ forged line")
        );
        let many = "a\0".repeat(MANIFEST_ENTRIES + 1);
        assert_eq!(
            parse(&output(many.as_bytes(), b"")).unwrap_err().file,
            MANIFEST
        );
    }

    #[test]
    fn the_script_quotes_each_query_and_prints_names_in_base64() {
        let query = [DeploymentQuery {
            name: "d'1",
            dir: "/opt/$(x)",
            paths: vec!["-a", "b c"],
            main_image: false,
        }];
        let text = script(&query, &["img;rm -rf /".to_string()]);
        let prefix = script(&[], &[]);
        let prefix = prefix.text().strip_suffix("exit 0\n").unwrap();
        assert_eq!(
            text.text().strip_prefix(prefix).unwrap(),
            [
                "docker image ls -q --no-trunc | awk '!seen[$0]++' | head -n 128 | xargs -r docker image inspect \
                 --format 'layers={{range .RootFS.Layers}}{{.}} {{end}}' --\n\
                 id=$(docker image inspect --format '{{.Id}}' -- 'img;rm -rf /') && echo 'image=aW1nO3JtIC1yZiAv '\"$id\"\n\
                 echo 'deployment=ZCcx'\n(\nexec 2>&3\n",
                confine::enter_if_present("/opt/$(x)").text(),
                "synprov_path f -a 'regular file'\nsynprov_path f 'b c' 'regular file'\n\
                 synprov_regular .synprov/manifest && base64 < .synprov/manifest | sed 's/^/manifest=/'\n\
                 synprov_regular .synprov/pending && base64 < .synprov/pending | sed 's/^/pending=/'\n\
                 { printf '%s\\0' -a 'b c'; synprov_regular .synprov/manifest && \
                 { if tr -d '\\000' < .synprov/manifest | cmp -s - .synprov/manifest; \
                 then tr '\\n' '\\000' < .synprov/manifest; else cat < .synprov/manifest; fi; }; } \
                 | xargs -0 -r sh -c ",
                &crate::shell::quote(HASH_REGULAR),
                " sh | sort -u -k2 | sed 's/^/hash=/'\n) || [ $? -ne 77 ] || exit 77\nexit 0\n"
            ]
            .concat()
        );
    }

    #[test]
    fn the_image_of_main_s_container_is_asked_for_by_the_project_s_container_names() {
        let query = |main_image| DeploymentQuery {
            name: "d",
            dir: "/opt/d",
            paths: Vec::new(),
            main_image,
        };
        let asked = script(&[query(true)], &[]);
        let line = "p=$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' .env) && [ -n \"$p\" ] && \
                    docker inspect --format 'main_image={{.Image}}' -- \"$p-synapse-1\" \"${p}_synapse_1\"\n";
        // Outside the group whose output is hashed.
        assert!(
            asked
                .text()
                .contains(&format!("sed 's/^/pending=/'\n{line}{{ :; ")),
            "{}",
            asked.text()
        );
        assert!(!script(&[query(false)], &[]).text().contains("main_image"));

        let id = format!("sha256:{}", "0a".repeat(32));
        let facts = parse(&format!(
            "deployment=ZA==\nmain_image={id}\ndeployment=ZQ==\nmain_image=sha256:short\n"
        ))
        .unwrap();
        assert_eq!(facts.deployments["d"].main_image.as_ref(), Some(&id));
        assert_eq!(facts.deployments["e"].main_image, None, "not an image ID");
    }

    #[test]
    fn the_layers_of_the_host_s_images_are_read_as_chain_ids_and_anything_else_is_dropped() {
        use crate::layers::chain_ids;
        assert!(
            !script(&[], &[]).text().contains("layers="),
            "no image asked about"
        );
        let diff = |n: usize| format!("sha256:{n:064x}");
        let chains = |ids: &[String]| {
            let ids: Vec<_> = ids
                .iter()
                .map(|i| Sha256Digest::parse(i).unwrap())
                .collect();
            chain_ids(&ids)
        };
        let (a, b, c) = (diff(1), diff(2), diff(3));
        let many: Vec<String> = (10..210).map(diff).collect();
        let output = [
            format!("layers={a} {b} "),
            // Forged, short, foreign or joined digests drop their line whole.
            format!("layers={c} sha256:{}", "0".repeat(63)),
            format!(
                "layers={c} {}",
                c.to_uppercase().replace("SHA256", "sha512")
            ),
            format!("layers={c},{a}"),
            format!("layers={c} $(reboot)"),
            format!("layers={}", many.join(" ")),
        ]
        .join("\n");
        let facts = parse(&output).unwrap();
        let mut expected: BTreeSet<Sha256Digest> =
            chains(&[a.clone(), b.clone()]).into_iter().collect();
        expected.extend(chains(&many[..IMAGE_LAYERS]));
        assert_eq!(
            facts.layer_chains, expected,
            "at most {IMAGE_LAYERS} layers an image"
        );
        assert!(!facts.layer_chains.iter().any(|d| d.as_str() == c));

        let flood: String = (0..LAYER_IMAGES + 10)
            .map(|i| format!("layers={}\n", diff(1000 + i)))
            .collect();
        let facts = parse(&format!("{flood}layers={c}\n")).unwrap();
        assert_eq!(
            facts.layer_chains.len(),
            LAYER_IMAGES,
            "at most {LAYER_IMAGES} images"
        );
        assert!(!facts.layer_chains.iter().any(|d| d.as_str() == c));
    }

    #[test]
    fn the_script_reads_memory_and_cores_the_way_the_sizing_expects() {
        let text = script(&[], &[]);
        assert!(
            text.text().contains(
                "awk '$1 == \"MemTotal:\" {print \"memory_kb=\" $2}' /proc/meminfo\n\
                 echo \"cores=$(nproc)\"\n"
            ),
            "{}",
            text.text()
        );
        let facts = parse("memory_kb=4028416\ncores=2\n").unwrap();
        assert_eq!((facts.memory_kb, facts.cores), (4_028_416, 2));
    }

    #[test]
    fn output_that_is_not_well_formed_leaves_defaults_and_never_panics() {
        let mut hostile = Vec::new();
        hostile.extend_from_slice(b"os=\xff\xfe\nfree_kb=99999999999999999999999\n");
        hostile.extend_from_slice(b"memory_kb=-1\ncores=4294967296\n");
        hostile.extend_from_slice(b"manifest=YQ==\nhash=abc  orphan\npending=dXA=\n");
        hostile.extend_from_slice(b"deployment=!!!\nmanifest=YQ==\n");
        hostile.extend_from_slice(b"image=no-space\nimage=!!! id\n==\n=\nnoequals\n");
        hostile.extend_from_slice(b"deployment=ZA==\nhash=\\\nhash=nospaces\nhash=\\h  a\\\n");
        hostile.extend_from_slice(b"manifest=%%%\npending=\n");
        hostile.extend_from_slice(format!("arch={}\n", "x".repeat(1 << 20)).as_bytes());
        let facts = parse(&String::from_utf8_lossy(&hostile)).unwrap();
        assert_eq!((facts.free_kb, facts.memory_kb, facts.cores), (0, 0, 0));
        assert!(facts.images.is_empty());
        assert_eq!(facts.deployments.keys().collect::<Vec<_>>(), ["d"]);
        let state = &facts.deployments["d"];
        assert!(state.manifest.is_empty());
        assert_eq!(state.hashes.len(), 1, "{:?}", state.hashes);
        assert_eq!(state.hashes["a\\"], "h");
        assert_eq!(state.pending, Some(Vec::new()));
        assert_eq!(facts.arch.len(), 1 << 20);
    }
}
