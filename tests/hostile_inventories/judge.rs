//! The property: `synprov render` of a generated inventory either refuses it with a located
//! error and writes nothing, or writes files that every consumer reads with the meaning the
//! inventory gave them. A breach is a [`Violation`], named by a class that stays the same
//! for the same bug (so that the survey can tell bugs apart) and a detail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use toml::{Table, Value};

use crate::case::{Case, Edit, Field, Shape, WORKER_KINDS};
use crate::checks;
use crate::common::{TEST_KEY, nginx, root};
use crate::consumers;
use crate::meaning::{DeploymentMeaning, Meaning};

/// How long one render may take before it counts as a hang.
const RENDER_TIMEOUT: Duration = Duration::from_secs(60);

/// A breach of the property.
#[derive(Debug, Clone)]
pub struct Violation {
    /// What broke, the same for every input that breaks it the same way.
    pub class: String,
    /// What exactly, for this input.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.class, self.detail)
    }
}

pub fn violation(class: impl Into<String>, detail: impl Into<String>) -> Violation {
    Violation {
        class: class.into(),
        detail: detail.into(),
    }
}

/// Fails with `class` when `ok` is false.
pub fn ensure(ok: bool, class: &str, detail: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(violation(class, detail()))
    }
}

/// What the unedited base inventories render to: the names synprov's own templates use,
/// against which a hostile render must add nothing.
pub struct Baseline {
    pub homeserver_keys: BTreeSet<String>,
    pub nginx_directives: BTreeSet<String>,
    pub postgres_settings: BTreeSet<String>,
}

/// Shared by every case of a run: the tools, the plugin and its compile cache, the baseline.
pub struct Context {
    pub echo_wasm: String,
    cache: tempfile::TempDir,
    baseline: Baseline,
}

/// The run's context; the first call checks the tools and renders the baseline.
pub fn context() -> &'static Context {
    static CONTEXT: OnceLock<Context> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        consumers::require_pyyaml();
        crate::common::compose();
        nginx::nginx();
        assert!(
            Path::new("/usr/share/zoneinfo/Etc/UTC").is_file(),
            "this test needs the IANA time zone database: `apt-get install tzdata`"
        );
        let echo_wasm = root().join("plugins/dist/echo.wasm");
        assert!(echo_wasm.is_file(), "{} is missing", echo_wasm.display());
        let mut context = Context {
            echo_wasm: echo_wasm.display().to_string(),
            cache: tempfile::tempdir().unwrap(),
            baseline: Baseline {
                homeserver_keys: BTreeSet::new(),
                nginx_directives: BTreeSet::new(),
                postgres_settings: BTreeSet::new(),
            },
        };
        context.baseline = baseline(&context);
        context
    })
}

/// The names in the base inventories' files (the spread one has trusted proxies, so Nginx's
/// real-IP directives are among them), and with two workers of each kind (pools balance).
fn baseline(context: &Context) -> Baseline {
    let mut baseline = Baseline {
        homeserver_keys: BTreeSet::new(),
        nginx_directives: BTreeSet::new(),
        postgres_settings: BTreeSet::new(),
    };
    let two_of_each: Vec<Edit> = WORKER_KINDS
        .map(|kind| Edit {
            field: Field::Workers(kind),
            value: Value::Integer(2),
        })
        .to_vec();
    let bases = [Shape::Single, Shape::Spread, Shape::Pair].map(|shape| Case {
        shape,
        edits: vec![],
    });
    let pools = Case {
        shape: Shape::Single,
        edits: two_of_each,
    };
    for case in bases.into_iter().chain([pools]) {
        let run = render(&case.toml(&context.echo_wasm), context);
        assert!(
            run.succeeded(),
            "the base inventory fails: {case:?}\n{run:?}"
        );
        for dir in deployment_dirs(&run.out) {
            let homeserver = dir.join("synapse/homeserver.yaml");
            if let Some(Ok(Json::Object(map))) =
                consumers::pyyaml(std::slice::from_ref(&homeserver)).remove(&homeserver)
            {
                baseline.homeserver_keys.extend(map.keys().cloned());
            }
            for file in files_in(&dir.join("nginx")) {
                let text = std::fs::read_to_string(&file).unwrap();
                let directives = consumers::nginx_directives(&text).unwrap();
                baseline
                    .nginx_directives
                    .extend(directives.into_iter().map(|d| d.name));
            }
            if let Ok(text) = std::fs::read_to_string(dir.join("postgres/postgresql.conf")) {
                let settings = consumers::postgres_settings(&text).unwrap();
                baseline
                    .postgres_settings
                    .extend(settings.into_iter().map(|(k, _)| k));
            }
        }
    }
    assert!(!baseline.homeserver_keys.is_empty() && !baseline.postgres_settings.is_empty());
    baseline
}

// --- Running synprov ---

/// One `synprov render` in a fresh directory: `WORK/inventory.toml` rendered into
/// `WORK/out`, where WORK is a directory below the temporary root (so that a write one
/// level above WORK is still seen).
#[derive(Debug)]
pub struct Run {
    root: tempfile::TempDir,
    work: PathBuf,
    pub out: PathBuf,
    /// None when the render hung.
    pub exit: Option<(i32, String)>,
}

impl Run {
    fn succeeded(&self) -> bool {
        matches!(self.exit, Some((0, _)))
    }
}

pub fn render(inventory: &str, context: &Context) -> Run {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("inventory.toml"), inventory).unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("synprov"))
        .args(["render", "inventory.toml", "--out", "out"])
        .current_dir(&work)
        .env("SYNPROV_MASTER_KEY", TEST_KEY)
        .env("SYNPROV_CACHE_DIR", context.cache.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + RENDER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap();
    Run {
        out: work.join("out"),
        work,
        root,
        exit: status.map(|s| (s.code().unwrap_or(-1), stderr)),
    }
}

// --- The verdict ---

/// The property for one case: every way it fails, one violation per class (none: it holds).
pub fn check(case: &Case) -> Vec<Violation> {
    let context = context();
    let table = case.table(&context.echo_wasm);
    let run = render(&case.toml(&context.echo_wasm), context);
    match judge(&table, &run, &context.baseline) {
        Ok(found) => found.0,
        Err(fatal) => vec![fatal],
    }
}

/// Violations of different classes, in the order found.
#[derive(Default)]
struct Found(Vec<Violation>);

impl Found {
    fn note(&mut self, result: Result<(), Violation>) {
        if let Err(v) = result
            && !self.0.iter().any(|f| f.class == v.class)
        {
            self.0.push(v);
        }
    }
}

/// The verdict on one render: `Err` for a violation that leaves nothing else to check.
fn judge(table: &Table, run: &Run, baseline: &Baseline) -> Result<Found, Violation> {
    let stray: Vec<PathBuf> = files_in(run.root.path())
        .into_iter()
        .filter(|f| !f.starts_with(&run.out) && *f != run.work.join("inventory.toml"))
        .collect();
    ensure(stray.is_empty(), "render writes outside --out", || {
        format!("{stray:?}")
    })?;
    let Some((code, stderr)) = &run.exit else {
        return Err(violation(
            "render hangs",
            format!("no exit after {RENDER_TIMEOUT:?}"),
        ));
    };
    if let Some(at) = panic_location(stderr) {
        return Err(violation(format!("render panics at {at}"), stderr.clone()));
    }
    if *code != 0 {
        ensure(
            has_location(stderr),
            "refused without FILE:LINE:COL",
            || stderr.clone(),
        )?;
        let written = files_in(&run.out);
        ensure(written.is_empty(), "refused but wrote into --out", || {
            format!("{written:?}")
        })?;
        return Ok(Found::default());
    }
    let meaning = Meaning::of(table)
        .map_err(|why| violation("accepts a value of the wrong type or range", why))?;
    accepted(&meaning, &run.out, baseline)
}

/// `path:LINE:COL` of a panic message (`panicked at src/x.rs:1:2:`).
fn panic_location(stderr: &str) -> Option<String> {
    let rest = stderr.split("panicked at ").nth(1)?;
    Some(rest.split(':').take(2).collect::<Vec<_>>().join(":"))
}

/// Whether the error names `inventory.toml:LINE:COL`.
fn has_location(stderr: &str) -> bool {
    stderr.match_indices("inventory.toml:").any(|(i, m)| {
        let rest = &stderr[i + m.len()..];
        let mut parts = rest.splitn(3, ':');
        let number = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        };
        let line = parts.next();
        let column = parts
            .next()
            .map(|c| c.trim_end_matches(|c: char| !c.is_ascii_digit()));
        number(line) && number(column)
    })
}

/// Every file below `dir`, recursively (symbolic links included, not followed).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `out/HOST/DEPLOYMENT` directories.
fn deployment_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for host in std::fs::read_dir(out).into_iter().flatten() {
        for deployment in std::fs::read_dir(host.unwrap().path())
            .into_iter()
            .flatten()
        {
            dirs.push(deployment.unwrap().path());
        }
    }
    dirs.sort();
    dirs
}

/// The checks of an accepted inventory.
fn accepted(meaning: &Meaning, out: &Path, baseline: &Baseline) -> Result<Found, Violation> {
    checks::unambiguous(meaning)?;
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let actual: BTreeSet<(String, String)> = deployment_dirs(out)
        .iter()
        .map(|d| (name(d.parent().unwrap()), name(d)))
        .collect();
    let intended: BTreeSet<(String, String)> = meaning
        .deployments
        .iter()
        .flat_map(|d| {
            d.hosts()
                .into_iter()
                .map(|h| (h.to_string(), d.name.clone()))
        })
        .collect();
    ensure(
        actual == intended,
        "render layout is not out/HOST/DEPLOYMENT",
        || format!("wrote {actual:?}, intended {intended:?}"),
    )?;

    for d in &meaning.deployments {
        // The signing key is synapse/SERVER_NAME.signing.key: one file in synapse/.
        ensure(
            !d.server_name.contains('/'),
            "server_name holds a `/`: the signing key's path leaves synapse/",
            || format!("{:?}", d.server_name),
        )?;
        for host in d.hosts() {
            let mut intended = d.files_on(host);
            if meaning.echo_config.is_some() {
                intended.insert("plugins/echo/echo/input.txt".into());
            }
            checks::files(&out.join(host).join(&d.name), &intended)?;
        }
    }
    let places: Vec<(&DeploymentMeaning, &str, PathBuf)> = meaning
        .deployments
        .iter()
        .flat_map(|d| d.hosts().into_iter().map(move |h| (d, h)))
        .map(|(d, h)| (d, h, out.join(h).join(&d.name)))
        .collect();
    std::thread::scope(|scope| {
        // Compose and nginx -t are the slow consumers: they run while PyYAML reads.
        let tools: Vec<_> = places
            .iter()
            .map(|(d, host, dir)| {
                scope.spawn(move || {
                    let mut results = vec![checks::compose(dir, host, d)];
                    if *host == d.host {
                        results.push(checks::nginx_conf(&dir.join("nginx"), d, baseline));
                    }
                    results
                })
            })
            .collect();
        let mut found = Found::default();
        let yaml: Vec<PathBuf> = files_in(out)
            .into_iter()
            .filter(|f| {
                let f = f.to_string_lossy();
                f.ends_with(".yaml") || f.ends_with(".yml") || f.ends_with(".log.config")
            })
            .collect();
        let loaded = consumers::pyyaml(&yaml);
        for (path, result) in &loaded {
            if let Err(error) = result {
                found.note(Err(violation(
                    format!("PyYAML refuses {}", yaml_kind(path)),
                    format!("{}: {error}", path.display()),
                )));
            }
        }
        for (d, host, dir) in &places {
            let homeserver = loaded
                .get(&dir.join("synapse/homeserver.yaml"))
                .and_then(|r| r.as_ref().ok());
            if let Some(homeserver) = homeserver {
                found.note(checks::homeserver(homeserver, d, baseline));
            }
            found.note(checks::env_files(dir, d));
            if *host == d.host {
                found.note(checks::postgres(dir, homeserver, d, baseline));
                if d.metrics {
                    found.note(checks::metrics(dir, d));
                }
            }
            if let Some(config) = &meaning.echo_config {
                found.note(checks::echo(dir, config));
            }
        }
        for d in meaning.deployments.iter().filter(|d| d.is_spread()) {
            found.note(checks::listener_ports(out, &loaded, d, meaning));
        }
        for tool in tools {
            tool.join().unwrap().into_iter().for_each(|r| found.note(r));
        }
        Ok(found)
    })
}

fn yaml_kind(path: &Path) -> &'static str {
    let path = path.to_string_lossy();
    if path.ends_with("homeserver.yaml") {
        "homeserver.yaml"
    } else if path.contains("/workers/") {
        "a worker config"
    } else if path.ends_with(".log.config") {
        "a log config"
    } else if path.ends_with("docker-compose.yml") {
        "docker-compose.yml"
    } else {
        "a plugin's YAML file"
    }
}
