//! The property: `synprov render` of a generated inventory either refuses it with a located
//! error and writes nothing, or writes files that every consumer reads with the meaning the
//! inventory gave them. A breach is a [`Violation`], named by a class that stays the same
//! for the same bug (so that the survey can tell bugs apart) and a detail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use toml::{Table, Value};

use crate::case::{Case, Edit, Field, Shape, WORKER_KINDS};
use crate::common::{TEST_KEY, nginx, root};
use crate::consumers::{self, Directive};
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

fn violation(class: impl Into<String>, detail: impl Into<String>) -> Violation {
    Violation {
        class: class.into(),
        detail: detail.into(),
    }
}

/// Fails with `class` when `ok` is false.
fn ensure(ok: bool, class: &str, detail: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(violation(class, detail()))
    }
}

/// What the unedited base inventories render to: the names synprov's own templates use,
/// against which a hostile render must add nothing.
pub struct Baseline {
    homeserver_keys: BTreeSet<String>,
    nginx_directives: BTreeSet<String>,
    postgres_settings: BTreeSet<String>,
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
fn files_in(dir: &Path) -> Vec<PathBuf> {
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
            check_files(&out.join(host).join(&d.name), &intended)?;
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
                    let mut results = vec![check_compose(dir, host, d)];
                    if *host == d.host {
                        results.push(check_nginx(&dir.join("nginx"), d, baseline));
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
                found.note(check_homeserver(homeserver, d, baseline));
            }
            found.note(check_env_files(dir, d));
            if *host == d.host {
                found.note(check_postgres(dir, homeserver, d, baseline));
            }
            if let Some(config) = &meaning.echo_config {
                found.note(check_echo(dir, config));
            }
        }
        for d in meaning.deployments.iter().filter(|d| d.is_spread()) {
            found.note(check_listener_ports(out, &loaded, d, meaning));
        }
        for tool in tools {
            tool.join().unwrap().into_iter().for_each(|r| found.note(r));
        }
        Ok(found)
    })
}

/// The files of a deployment's directory are the intended ones, each a plain file there.
fn check_files(dir: &Path, intended: &BTreeSet<String>) -> Result<(), Violation> {
    let actual: BTreeSet<String> = files_in(dir)
        .iter()
        .map(|f| f.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect();
    let unintended: Vec<&String> = actual.difference(intended).collect();
    let missing: Vec<&String> = intended.difference(&actual).collect();
    ensure(
        unintended.is_empty() && missing.is_empty(),
        "render writes other files than the intended ones",
        || format!("unintended: {unintended:?}; missing: {missing:?}"),
    )
}

/// The TCP listeners of a spread deployment (all processes use the hosts' network): every
/// port distinct, not 0, and none of Postgres', Redis' or an Nginx's on those hosts.
fn check_listener_ports(
    out: &Path,
    loaded: &BTreeMap<PathBuf, Result<Json, String>>,
    d: &DeploymentMeaning,
    meaning: &Meaning,
) -> Result<(), Violation> {
    let mut ports: Vec<(String, u64)> = Vec::new();
    for (path, value) in loaded {
        let Ok(path) = path.strip_prefix(out) else {
            continue;
        };
        let mut parts = path.iter().map(|p| p.to_string_lossy().into_owned());
        let (Some(host), Some(deployment)) = (parts.next(), parts.next()) else {
            continue;
        };
        let listeners = if deployment != d.name {
            continue;
        } else if path.ends_with("synapse/homeserver.yaml") && host == d.host {
            "/listeners"
        } else if path
            .parent()
            .is_some_and(|p| p.ends_with("synapse/workers"))
        {
            "/worker_listeners"
        } else {
            continue;
        };
        let listed = value.as_ref().ok().and_then(|v| v.pointer(listeners));
        for listener in listed.and_then(Json::as_array).into_iter().flatten() {
            if let Some(port) = listener.get("port") {
                ports.push((host.clone(), port.as_u64().unwrap_or(0)));
            }
        }
    }
    let mut taken: BTreeSet<u64> = [5432, 6379].into();
    taken.extend(
        meaning
            .deployments
            .iter()
            .filter(|other| d.hosts().contains(other.host.as_str()))
            .map(|other| u64::from(other.http_port)),
    );
    for (host, port) in &ports {
        ensure(
            *port != 0 && taken.insert(*port),
            "spread listeners: a port is 0, repeated, or Postgres', Redis' or Nginx's",
            || format!("{host}: port {port} (port_base and the ports: {ports:?})"),
        )?;
    }
    Ok(())
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

// --- homeserver.yaml ---

fn check_homeserver(
    loaded: &Json,
    d: &DeploymentMeaning,
    baseline: &Baseline,
) -> Result<(), Violation> {
    let Json::Object(map) = loaded else {
        return Err(violation(
            "homeserver.yaml is not a mapping of names",
            loaded.to_string(),
        ));
    };
    if let Some(pairs) = map.get("$map").and_then(Json::as_array) {
        let keys: Vec<&Json> = pairs.iter().filter_map(|p| p.get(0)).collect();
        return Err(violation(
            "homeserver.yaml: a key is not a string for PyYAML",
            format!("keys {keys:?}"),
        ));
    }
    let extra: Vec<&String> = map
        .keys()
        .filter(|k| !baseline.homeserver_keys.contains(*k) && !d.homeserver.contains_key(*k))
        .collect();
    ensure(
        extra.is_empty(),
        "homeserver.yaml has a key nobody asked for",
        || format!("{extra:?}"),
    )?;
    if !d.homeserver.contains_key("database") {
        let cp_max = loaded.pointer("/database/args/cp_max");
        ensure(
            cp_max == Some(&Json::from(d.cp_max)),
            "homeserver.yaml: cp_max differs from the inventory's",
            || format!("{cp_max:?}, intended {}", d.cp_max),
        )?;
    }
    let intended = [
        ("server_name", Some(Json::from(d.server_name.clone()))),
        ("public_baseurl", Some(Json::from(d.public_baseurl.clone()))),
        ("admin_contact", d.admin_contact.clone().map(Json::from)),
    ];
    // A key of the `homeserver` table overrides synprov's value: checked below.
    for (key, value) in intended
        .into_iter()
        .filter(|(key, _)| !d.homeserver.contains_key(*key))
    {
        ensure(
            map.get(key) == value.as_ref(),
            &format!("homeserver.yaml: {key} differs from the inventory's"),
            || format!("{:?}, intended {value:?}", map.get(key)),
        )?;
    }
    for (key, value) in &d.homeserver {
        same_value(map.get(key), value).map_err(|(kind, detail)| {
            violation(
                format!("homeserver.yaml: a [homeserver] {kind} changes meaning"),
                format!("key {key:?}: {detail}"),
            )
        })?;
    }
    Ok(())
}

/// Whether PyYAML's `loaded` value is the inventory's `value`: the same type and value (a
/// table: at least its keys, since it is merged over synprov's). A datetime may be its RFC
/// 3339 text or a YAML timestamp of the same instant. Else the kind of the TOML value that
/// changed, and how.
fn same_value(loaded: Option<&Json>, value: &Value) -> Result<(), (&'static str, String)> {
    let differs = |kind| Err((kind, format!("{loaded:?}, intended {value}")));
    let Some(loaded) = loaded else {
        return differs(kind(value));
    };
    let same = match value {
        Value::String(s) => loaded.as_str() == Some(s),
        Value::Integer(n) => loaded.as_i64() == Some(*n),
        Value::Float(f) => {
            let repr = loaded.pointer("/$float").and_then(Json::as_str);
            let float = repr.and_then(|r| r.parse::<f64>().ok());
            float.is_some_and(|g| g == *f || (g.is_nan() && f.is_nan()))
        }
        Value::Boolean(b) => loaded.as_bool() == Some(*b),
        Value::Datetime(dt) => {
            let text = dt.to_string();
            let iso = text.replace(' ', "T").replace('Z', "+00:00");
            loaded.as_str() == Some(text.as_str())
                || loaded.pointer("/$timestamp").and_then(Json::as_str) == Some(iso.as_str())
        }
        Value::Array(items) => {
            let Some(loaded) = loaded.as_array().filter(|l| l.len() == items.len()) else {
                return differs("array");
            };
            for (l, v) in loaded.iter().zip(items) {
                same_value(Some(l), v)?;
            }
            true
        }
        Value::Table(table) => {
            let Some(map) = loaded.as_object() else {
                return differs("table");
            };
            for (k, v) in table {
                same_value(map.get(k), v)?;
            }
            true
        }
    };
    if same { Ok(()) } else { differs(kind(value)) }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Float(f) if !f.is_finite() => "nan or infinite float",
        Value::Float(_) => "float",
        Value::Boolean(_) => "boolean",
        Value::Datetime(_) => "datetime",
        Value::Array(_) => "array",
        Value::Table(_) => "table",
    }
}

// --- docker-compose.yml and the env files, through Compose ---

const SYNAPSE_ENV: [&str; 6] = [
    "SYNAPSE_REPORT_STATS",
    "SYNAPSE_SERVER_NAME",
    "UID",
    "GID",
    "TZ",
    "SYNAPSE_WORKER",
];
const POSTGRES_ENV: [&str; 4] = [
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_INITDB_ARGS",
];

fn check_compose(dir: &Path, host: &str, d: &DeploymentMeaning) -> Result<(), Violation> {
    let config = consumers::compose_config(dir)
        .map_err(|e| violation("docker compose config refuses the directory", e))?;
    ensure(
        config["name"].as_str() == Some(d.name.as_str()),
        "compose: the project name differs from the deployment name",
        || format!("{}, intended {:?}", config["name"], d.name),
    )?;
    let services = config["services"].as_object().cloned().unwrap_or_default();
    let names: BTreeSet<String> = services.keys().cloned().collect();
    let intended = d.services_on(host);
    ensure(
        names == intended,
        "compose: the services differ from the inventory's",
        || format!("{names:?}, intended {intended:?}"),
    )?;
    for (name, service) in &services {
        let (image, allowed_env): (&str, &[&str]) = match name.as_str() {
            "db" => ("postgres", &POSTGRES_ENV),
            "redis" => ("redis", &[]),
            "nginx" => ("nginx", &[]),
            _ => ("synapse", &SYNAPSE_ENV),
        };
        ensure(
            service["image"].as_str() == Some(d.images[image].as_str()),
            "compose: an image differs from the inventory's",
            || {
                format!(
                    "{name}: {}, intended {:?}",
                    service["image"], d.images[image]
                )
            },
        )?;
        let env = service["environment"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let unknown: Vec<&String> = env
            .keys()
            .filter(|k| !allowed_env.contains(&k.as_str()))
            .collect();
        ensure(
            unknown.is_empty(),
            "compose: an environment variable nobody asked for",
            || format!("{name}: {unknown:?}"),
        )?;
        if image == "synapse" {
            for (key, intended) in [("TZ", &d.timezone), ("SYNAPSE_SERVER_NAME", &d.server_name)] {
                ensure(
                    env.get(key).and_then(Json::as_str) == Some(intended.as_str()),
                    &format!("compose: {key} differs from the inventory's"),
                    || format!("{name}: {:?}, intended {intended:?}", env.get(key)),
                )?;
            }
        }
    }
    if let Some(nginx) = services.get("nginx") {
        let port = &nginx["ports"][0];
        let published = port["published"]
            .as_str()
            .map(String::from)
            .or_else(|| port["published"].as_u64().map(|p| p.to_string()));
        ensure(
            published == Some(d.http_port.to_string()) && port["target"] == 8008,
            "compose: Nginx's published port differs from http_port",
            || format!("{port}, intended {}", d.http_port),
        )?;
    }
    Ok(())
}

fn check_env_files(dir: &Path, d: &DeploymentMeaning) -> Result<(), Violation> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.ends_with(".env") {
            continue;
        }
        let (allowed, values): (&[&str], Vec<(&str, &str)>) = match file.as_str() {
            ".env" => (
                &["COMPOSE_PROJECT_NAME"],
                vec![("COMPOSE_PROJECT_NAME", d.name.as_str())],
            ),
            ".synapse.env" => (
                &SYNAPSE_ENV,
                vec![
                    ("TZ", d.timezone.as_str()),
                    ("SYNAPSE_SERVER_NAME", d.server_name.as_str()),
                ],
            ),
            ".postgres.env" => (&POSTGRES_ENV, vec![]),
            _ => return Err(violation("an env file nobody asked for", file)),
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = consumers::env_lines(&text)
            .map_err(|e| violation(format!("{file}: a line is not KEY=VALUE"), e))?;
        let mut seen = BTreeMap::new();
        for (key, value) in &lines {
            ensure(
                allowed.contains(&key.as_str()),
                &format!("{file}: a key nobody asked for"),
                || key.clone(),
            )?;
            ensure(
                seen.insert(key.as_str(), value.as_str()).is_none(),
                &format!("{file}: a key set twice"),
                || key.clone(),
            )?;
        }
        for (key, intended) in values {
            ensure(
                seen.get(key) == Some(&intended),
                &format!("{file}: {key} differs from the inventory's"),
                || format!("{:?}, intended {intended:?}", seen.get(key)),
            )?;
        }
    }
    Ok(())
}

// --- Nginx ---

fn check_nginx(dir: &Path, d: &DeploymentMeaning, baseline: &Baseline) -> Result<(), Violation> {
    let mut directives: Vec<Directive> = Vec::new();
    for file in files_in(dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = consumers::nginx_directives(&text).map_err(|e| {
            violation(
                "nginx: a file Nginx cannot read",
                format!("{}: {e}", file.display()),
            )
        })?;
        directives.extend(parsed);
    }
    let foreign: Vec<&Directive> = directives
        .iter()
        .filter(|d| !baseline.nginx_directives.contains(&d.name))
        .collect();
    ensure(
        foreign.is_empty(),
        "nginx: a directive synprov's templates do not have",
        || format!("{foreign:?}"),
    )?;
    let args = |name: &str| -> Vec<Vec<String>> {
        directives
            .iter()
            .filter(|d| d.name == name)
            .map(|d| d.args.clone())
            .collect()
    };
    let one_each =
        |list: &[String]| -> Vec<Vec<String>> { list.iter().map(|a| vec![a.clone()]).collect() };
    ensure(
        args("allow") == one_each(&d.admin_allow),
        "nginx: the allow directives differ from admin_allow",
        || format!("{:?}, intended {:?}", args("allow"), d.admin_allow),
    )?;
    ensure(
        args("deny") == [vec!["all".to_string()]],
        "nginx: the deny directives differ from `deny all`",
        || format!("{:?}", args("deny")),
    )?;
    ensure(
        args("set_real_ip_from") == one_each(&d.trusted_proxies),
        "nginx: set_real_ip_from differs from trusted_proxies",
        || {
            format!(
                "{:?}, intended {:?}",
                args("set_real_ip_from"),
                d.trusted_proxies
            )
        },
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let test = nginx::stage(dir, port).test();
    ensure(test.status.success(), "nginx -t refuses the config", || {
        String::from_utf8_lossy(&test.stderr).into_owned()
    })
}

// --- postgresql.conf ---

fn check_postgres(
    dir: &Path,
    homeserver: Option<&Json>,
    d: &DeploymentMeaning,
    baseline: &Baseline,
) -> Result<(), Violation> {
    let text = std::fs::read_to_string(dir.join("postgres/postgresql.conf")).unwrap();
    let settings = consumers::postgres_settings(&text)
        .map_err(|e| violation("postgresql.conf: a line Postgres cannot parse", e))?;
    let mut seen = BTreeMap::new();
    for (key, value) in &settings {
        ensure(
            baseline.postgres_settings.contains(key),
            "postgresql.conf: a setting nobody asked for",
            || format!("{key} = {value:?}"),
        )?;
        ensure(
            seen.insert(key.as_str(), value.as_str()).is_none(),
            "postgresql.conf: a setting given twice",
            || key.clone(),
        )?;
    }
    for key in ["timezone", "log_timezone"] {
        ensure(
            seen.get(key) == Some(&d.timezone.as_str()),
            &format!("postgresql.conf: {key} differs from the inventory's"),
            || format!("{:?}, intended {:?}", seen.get(key), d.timezone),
        )?;
    }
    ensure(
        is_iana_zone(&d.timezone),
        "timezone is not an IANA zone (Postgres and the containers refuse it)",
        || format!("{:?}", d.timezone),
    )?;
    let max_connections = seen
        .get("max_connections")
        .and_then(|m| m.parse::<u64>().ok());
    ensure(
        max_connections == Some(u64::from(d.max_connections)),
        "postgresql.conf: max_connections differs from the inventory's",
        || format!("{max_connections:?}, intended {}", d.max_connections),
    )?;
    let cp_max = homeserver.and_then(|h| h.pointer("/database/args/cp_max"));
    if let Some(cp_max) = cp_max.and_then(Json::as_u64) {
        let processes = d.processes().len() as u64;
        let needed = processes * cp_max + 10;
        ensure(
            needed <= u64::from(d.max_connections),
            "Postgres connections: the processes' pools exceed max_connections",
            || {
                format!(
                    "{processes} processes x cp_max {cp_max} + 10 > {}",
                    d.max_connections
                )
            },
        )?;
    }
    Ok(())
}

/// A name of the IANA time zone database (as this machine's tzdata has it).
fn is_iana_zone(zone: &str) -> bool {
    let safe = !zone.is_empty()
        && zone.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    safe && std::fs::read(Path::new("/usr/share/zoneinfo").join(zone))
        .is_ok_and(|bytes| bytes.starts_with(b"TZif"))
}

// --- the echo plugin ---

fn check_echo(dir: &Path, config: &Json) -> Result<(), Violation> {
    let path = dir.join("plugins/echo/echo/input.txt");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        violation(
            "echo: the plugin's file is not in the deployment's directory",
            format!("{}: {e}", path.display()),
        )
    })?;
    // As text: serde_json's default float parsing is not exact, its printing is.
    let received = text.lines().find_map(|l| l.strip_prefix("config: "));
    ensure(
        received == Some(config.to_string().as_str()),
        "echo: the plugin received another config than the inventory's",
        || format!("{received:?}, intended {config}"),
    )
}
