//! What the containers' user (uid 1000: Synapse, Redis) can do to the next run of synprov as
//! root. It writes in its data directories (logs, media, sockets, Redis') and in the files
//! it owns (homeserver.yaml and the other Synapse files); a compromised container plants
//! links there to a canary directory beside the deploy directory and grows its files.
//! Then `plan`, `apply`, `status`, `destroy` and `rollback` (as far as it goes without
//! Docker) run as root: the canary stays as it was, byte for byte, and nothing of it is
//! printed. Links only root could plant (a compromised host) at `.synprov`, the lock file,
//! the audit log, a managed file or a generation's copy are refused and named.
//!
//! Runs as root (the local transport writes as the user running the tests, and uid 1000
//! must be someone else); `setpriv` (util-linux) drops to uid 1000.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{inventory, synprov};
use synprov::apply::rollback::{To, prepare_rollback};
use synprov::generations::{Origin, Record, scripts};
use synprov::transport::{ConnectOptions, Connection};

const CANARY_TEXT: &str = "canary contents, never to be read";

/// A deployment applied with `--files-only` into `BASE/d`, generation 1 recorded as a full
/// apply records it, and a canary directory `BASE/canary` beside it.
struct Bed {
    base: tempfile::TempDir,
    _inventory_dir: tempfile::TempDir,
    inventory: PathBuf,
    canary: PathBuf,
    /// A socket in the canary, listening: a health check that followed a link to it would
    /// connect.
    listener: UnixListener,
    before: BTreeMap<PathBuf, String>,
}

impl Bed {
    fn new() -> Bed {
        assert!(
            nix_is_root(),
            "these tests run as root: the containers' user must be someone else"
        );
        let base = tempfile::tempdir().unwrap();
        // uid 1000 reaches the deploy directory, as on a host.
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let canary = base.path().join("canary");
        std::fs::create_dir_all(canary.join("sub")).unwrap();
        std::fs::write(canary.join("file"), CANARY_TEXT).unwrap();
        std::fs::write(canary.join("sub/file"), CANARY_TEXT).unwrap();
        std::fs::set_permissions(canary.join("file"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let listener = UnixListener::bind(canary.join("health.sock")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (inventory_dir, inventory) = inventory(&format!(
            "[hosts.here]\ntransport = \"local\"\n[deployments.d]\nserver_name = \"example.org\"\n\
             host = \"here\"\ndeploy_dir = \"{}\"\n",
            base.path().join("d").display()
        ));
        let bed = Bed {
            before: snapshot(&canary),
            base,
            _inventory_dir: inventory_dir,
            inventory,
            canary,
            listener,
        };
        let apply = bed.run(&["apply", "--files-only"]);
        assert!(apply.status.success(), "{}", text(&apply));
        bed.record_generation();
        bed
    }

    fn dir(&self) -> PathBuf {
        self.base.path().join("d")
    }

    fn connection(&self) -> Connection {
        let loaded = synprov::inventory::load(&self.inventory).unwrap();
        Connection::open(&loaded.hosts["here"], &ConnectOptions::default()).unwrap()
    }

    /// Generation 1, as an apply that verified the stack records it (a files-only apply
    /// records none).
    fn record_generation(&self) {
        let loaded = synprov::inventory::load(&self.inventory).unwrap();
        let connection = self.connection();
        let host = common::render_with_facts(&loaded, "here", &connection);
        let files = &host.deployments[0];
        let origin = Origin::here("apply", None);
        let record = Record::of(files, &BTreeMap::new(), origin.clone());
        let paths: Vec<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
        let script = scripts::save(
            &files.deploy_dir,
            &paths,
            &serde_json::to_string(&record).unwrap(),
            &[],
            10,
            &origin.entry(None, "ok"),
        );
        let out = connection.run_script(&script).unwrap();
        assert!(out.success(), "{}", out.tail(20));
    }

    /// `synprov COMMAND INVENTORY ARGS...` as root.
    fn run(&self, args: &[&str]) -> Output {
        let (command, rest) = args.split_first().unwrap();
        synprov(self.base.path())
            .arg(command)
            .arg(&self.inventory)
            .args(rest)
            .output()
            .unwrap()
    }

    /// Rollback as far as it goes without Docker: the generations listed, the generation's
    /// copies read, the host's files gathered and the way back planned. Its writes are the
    /// apply's (the write script); bringing the stack up needs Docker.
    fn rollback(&self) -> Result<(), String> {
        let connection = self.connection();
        let deployments = [("d".to_string(), self.dir().display().to_string())];
        prepare_rollback(
            &connection,
            synprov::inventory::DockerSource::Distribution,
            &deployments,
            To::Current,
            false,
        )
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
    }

    fn assert_canary_untouched(&self, after: &str) {
        assert!(
            self.listener.accept().is_err(),
            "{after} connected to the canary's socket"
        );
        assert_eq!(
            snapshot(&self.canary),
            self.before,
            "the canary changed after {after}"
        );
    }
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every entry under `dir` with its mode, owner, size, times and contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let contents = if meta.is_file() {
            std::fs::read_to_string(&path).unwrap()
        } else {
            String::new()
        };
        out.insert(
            path.clone(),
            format!(
                "{:o} {}:{} {} {}.{} {}.{} {contents}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec()
            ),
        );
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

/// What uid 1000 does: in every directory of the deployment it can write in, links to
/// the canary and its file, also under the names synprov's processes use there; every file
/// it can write grown to 256 KiB; and tries (and fails) to replace its files with links.
const CONTAINER_USER: &str = r#"
set -u
cd "$1"
canary=$2
find . -type d -writable | while IFS= read -r dir; do
  ln -s "$canary" "$dir/planted-dir"
  ln -s "$canary/file" "$dir/planted-file"
  ln "$canary/file" "$dir/hard-link" 2>/dev/null && echo "made a hard link in $dir"
done
for name in synapse_inbound_main.sock synapse_replication_main.sock; do
  ln -s "$canary/health.sock" "sockets/$name"
  ln -s "$canary/file" "sockets/$name.lock"
done
ln -s "$canary/file" logs/main/homeserver.log
ln -s "$canary" media/local_content
ln -s "$canary/file" redis/dump.rdb
find . -type f -writable ! -name 'planted-*' | while IFS= read -r file; do
  head -c 262144 /dev/zero | tr '\0' 'A' > "$file"
  ln -sf "$canary/file" "$file" 2>/dev/null && echo "replaced $file with a link"
done
echo planted
"#;

fn as_container_user(bed: &Bed) {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c"])
        .arg(CONTAINER_USER)
        .arg("sh")
        .arg(bed.dir())
        .arg(&bed.canary)
        .output()
        .expect("setpriv (util-linux) runs a process as uid 1000");
    let said = text(&out);
    assert!(said.contains("planted"), "{said}");
    assert!(
        !said.contains("replaced") && !said.contains("hard link"),
        "uid 1000 could replace what it should not: {said}"
    );
}

#[test]
fn what_the_containers_user_plants_never_takes_root_outside_the_deployment() {
    let bed = Bed::new();
    let dir = bed.dir();
    // Sticky, as /tmp: with fs.protected_symlinks, no one follows another user's link there.
    let sockets = std::fs::metadata(dir.join("sockets")).unwrap();
    assert_eq!(sockets.mode() & 0o7777, 0o1777);
    as_container_user(&bed);
    let grown = std::fs::read_to_string(dir.join("synapse/homeserver.yaml")).unwrap();
    assert_eq!(grown.len(), 262144, "uid 1000 grew homeserver.yaml");
    bed.assert_canary_untouched("planting");

    let plan = bed.run(&["plan"]);
    let said = text(&plan);
    assert!(said.contains("synapse/homeserver.yaml"), "{said}");
    assert!(
        !said.contains(CANARY_TEXT),
        "plan printed the canary: {said}"
    );
    bed.assert_canary_untouched("plan");

    let apply = bed.run(&["apply", "--files-only"]);
    let said = text(&apply);
    assert!(apply.status.success(), "{said}");
    assert!(!said.contains(CANARY_TEXT), "{said}");
    bed.assert_canary_untouched("apply");
    let restored = std::fs::symlink_metadata(dir.join("synapse/homeserver.yaml")).unwrap();
    assert!(restored.is_file() && restored.len() < 262144);

    let status = bed.run(&["status"]);
    let said = text(&status);
    assert!(said.contains("generation 1"), "{said}");
    assert!(!said.contains(CANARY_TEXT), "{said}");
    bed.assert_canary_untouched("status");

    bed.rollback().unwrap();
    bed.assert_canary_untouched("rollback");

    let destroy = bed.run(&["destroy", "--host", "here", "--files-only"]);
    let said = text(&destroy);
    assert!(destroy.status.success(), "{said}");
    assert!(!said.contains(CANARY_TEXT), "{said}");
    bed.assert_canary_untouched("destroy");
    // The containers' scratch went with its links; their data stayed, links and all.
    assert!(!dir.join("sockets").exists() && !dir.join("logs").exists());
    assert!(std::fs::symlink_metadata(dir.join("media/local_content")).is_ok());
}

/// Where a compromised host (root) may plant a link, and the commands that must refuse it
/// (the others do not go there, and must stay inside all the same).
struct Planted {
    link: &'static str,
    to_canary_dir: bool,
    refused_by: &'static [&'static str],
}

const PLANTED: [Planted; 5] = [
    Planted {
        link: ".synprov",
        to_canary_dir: true,
        refused_by: &["plan", "apply", "status", "rollback", "destroy"],
    },
    Planted {
        link: ".synprov/lock",
        to_canary_dir: false,
        refused_by: &["apply", "destroy"],
    },
    Planted {
        link: ".synprov/audit.log",
        to_canary_dir: false,
        refused_by: &["status", "rollback", "destroy"],
    },
    Planted {
        link: "synapse/homeserver.yaml",
        to_canary_dir: false,
        refused_by: &["plan", "apply", "status", "rollback", "destroy"],
    },
    Planted {
        link: ".synprov/generations/1/files/synapse/homeserver.yaml",
        to_canary_dir: false,
        refused_by: &["rollback"],
    },
];

#[test]
fn links_at_synprovs_own_places_are_refused_and_named() {
    for planted in PLANTED {
        let bed = Bed::new();
        let dir = bed.dir();
        // A change to apply, so that apply takes the lock.
        std::fs::write(dir.join("nginx/nginx.conf"), "changed").unwrap();
        let link = dir.join(planted.link);
        if planted.link == ".synprov" {
            // The canary stands in for the real one: what synprov would follow.
            std::fs::remove_dir_all(&link).unwrap();
        } else if link.exists() {
            std::fs::remove_file(&link).unwrap();
        }
        let target = if planted.to_canary_dir {
            bed.canary.clone()
        } else {
            bed.canary.join("file")
        };
        symlink(&target, &link).unwrap();
        let named = format!(
            "refusing to act on {}: it is a symbolic link",
            std::fs::canonicalize(&dir)
                .unwrap()
                .join(planted.link)
                .display()
        );
        for command in ["plan", "status", "rollback", "apply", "destroy"] {
            let (ok, said) = match command {
                "rollback" => match bed.rollback() {
                    Ok(()) => (true, String::new()),
                    Err(said) => (false, said),
                },
                "apply" => {
                    let out = bed.run(&["apply", "--files-only"]);
                    (out.status.success(), text(&out))
                }
                "destroy" => {
                    let out = bed.run(&["destroy", "--host", "here", "--files-only"]);
                    (out.status.success(), text(&out))
                }
                _ => {
                    let out = bed.run(&[command]);
                    (!said_refusal(&text(&out)), text(&out))
                }
            };
            let what = format!("{command} with a link at {}", planted.link);
            assert!(
                !said.contains(CANARY_TEXT),
                "{what} printed the canary: {said}"
            );
            bed.assert_canary_untouched(&what);
            if planted.refused_by.contains(&command) {
                assert!(
                    !ok && said.contains(&named),
                    "{what} was not refused: {said}"
                );
            } else {
                assert!(!said_refusal(&said), "{what} refused something: {said}");
            }
        }
    }
}

fn said_refusal(said: &str) -> bool {
    said.contains("refusing to act on")
}
