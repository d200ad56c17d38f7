//! What each consumer must read in the rendered files of an accepted inventory: one
//! function per file or consumer, each the first way it breaks as a [`Violation`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use toml::Value;

use crate::common::nginx;
use crate::consumers::{self, Directive};
use crate::judge::{Baseline, Violation, ensure, files_in, violation};
use crate::meaning::{DeploymentMeaning, Meaning};

/// The files of a deployment's directory are the intended ones, each a plain file there.
pub fn files(dir: &Path, intended: &BTreeSet<String>) -> Result<(), Violation> {
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
pub fn listener_ports(
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

// --- homeserver.yaml ---

pub fn homeserver(
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
        let keys: Vec<&Json> = pairs
            .iter()
            .filter_map(|p| p.get(0))
            .filter(|k| !k.is_string())
            .collect();
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

// --- Values whose readers would disagree (issue #22) ---

/// What no accepted inventory holds, because the readers of the value would read it
/// differently: two server names equal but for case (DNS names, one homeserver), a server
/// name whose last label is a number but that is no IPv4 address (an address to a URL
/// parser, a name to DNS), a public_baseurl beyond a plain http(s) URL, an empty table in
/// `homeserver` (it replaces a default that is not a table with nothing).
pub fn unambiguous(meaning: &Meaning) -> Result<(), Violation> {
    let mut seen = BTreeSet::new();
    for d in &meaning.deployments {
        ensure(
            seen.insert(d.server_name.to_ascii_lowercase()),
            "two server_names equal but for case are accepted",
            || d.server_name.clone(),
        )?;
        ensure(
            !numeric_but_no_ipv4(&d.server_name),
            "a server_name of numeric labels that is no IPv4 address is accepted",
            || d.server_name.clone(),
        )?;
        if let Some(url) = &d.public_baseurl_written {
            ensure(
                plain_url(url),
                "a public_baseurl beyond a plain http(s) URL is accepted",
                || format!("{url:?}"),
            )?;
        }
        ensure(
            !has_empty_table(&Value::Table(d.homeserver.clone())),
            "an empty table in homeserver is accepted",
            || format!("{:?}", d.homeserver),
        )?;
    }
    Ok(())
}

/// A server name (its port aside) whose last label is a number (`1.2.3`, `x.0x7f`) and
/// that is not a dotted-quad IPv4 address.
fn numeric_but_no_ipv4(server_name: &str) -> bool {
    if server_name.starts_with('[') {
        return false;
    }
    let host = server_name.split(':').next().unwrap_or_default();
    let last = host.rsplit('.').next().unwrap_or_default();
    let hex = last.len() > 2
        && (last.starts_with("0x") || last.starts_with("0X"))
        && last[2..].chars().all(|c| c.is_ascii_hexdigit());
    let numeric = hex || (!last.is_empty() && last.chars().all(|c| c.is_ascii_digit()));
    numeric && host.parse::<std::net::Ipv4Addr>().is_err()
}

/// `http(s)://` and then ASCII letters, digits, `-._~/:` and the brackets of an IPv6
/// host; no `.`, `..` or empty path segment but the last.
fn plain_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let plain = rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~/:[]".contains(c));
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    plain
        && segments
            .iter()
            .enumerate()
            .all(|(i, s)| *s != "." && *s != ".." && (i == last || !s.is_empty()))
}

/// Whether a table or list below `value` (not `value` itself) is an empty table.
fn has_empty_table(value: &Value) -> bool {
    let children: Vec<&Value> = match value {
        Value::Table(t) => t.values().collect(),
        Value::Array(items) => items.iter().collect(),
        _ => return false,
    };
    children
        .into_iter()
        .any(|v| matches!(v, Value::Table(t) if t.is_empty()) || has_empty_table(v))
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
    "POSTGRES_PASSWORD_FILE",
    "POSTGRES_INITDB_ARGS",
];

pub fn compose(dir: &Path, host: &str, d: &DeploymentMeaning) -> Result<(), Violation> {
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
            service["image"].as_str().map(unescape) == Some(d.images[image].clone()),
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
                    env.get(key).and_then(Json::as_str).map(unescape) == Some(intended.clone()),
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

/// A string of `docker compose config`'s output as Compose uses it: the output writes a
/// literal `$` as `$$` (its input syntax).
fn unescape(text: &str) -> String {
    text.replace("$$", "$")
}

pub fn env_files(dir: &Path, d: &DeploymentMeaning) -> Result<(), Violation> {
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

pub fn nginx_conf(dir: &Path, d: &DeploymentMeaning, baseline: &Baseline) -> Result<(), Violation> {
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
    let test = nginx::stage(dir, &[(8008, port)]).test();
    ensure(test.status.success(), "nginx -t refuses the config", || {
        String::from_utf8_lossy(&test.stderr).into_owned()
    })
}

// --- postgresql.conf ---

pub fn postgres(
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
    let processes = d.processes().len() as u64;
    let budget = processes * u64::from(d.cp_max) + 10;
    let intended = d.max_connections.map_or(budget, u64::from);
    ensure(
        max_connections == Some(intended),
        "postgresql.conf: max_connections is neither the inventory's nor the connection budget",
        || format!("{max_connections:?}, intended {intended}"),
    )?;
    for (setting, pinned) in &d.postgres_memory {
        let (intended, rendered) = (postgres_memory(setting, pinned), seen.get(setting));
        ensure(
            intended.is_some(),
            "postgresql.conf: a pinned memory setting Postgres refuses was accepted",
            || format!("{setting} = {pinned:?}"),
        )?;
        ensure(
            rendered.and_then(|r| postgres_memory(setting, r)) == intended,
            "postgresql.conf: a pinned memory setting differs from the inventory's",
            || format!("{setting} = {rendered:?}, intended {pinned:?}"),
        )?;
    }
    let cp_max = homeserver.and_then(|h| h.pointer("/database/args/cp_max"));
    if let Some(cp_max) = cp_max.and_then(Json::as_u64) {
        let needed = processes * cp_max + 10;
        ensure(
            needed <= intended,
            "Postgres connections: the processes' pools exceed max_connections",
            || format!("{processes} processes x cp_max {cp_max} + 10 > {intended}"),
        )?;
    }
    Ok(())
}

/// The amount in kB Postgres reads in `value` for the memory `setting`, when it is within
/// the setting's range (Postgres refuses to start otherwise). Postgres' own reading: an
/// integer, optional blanks, a unit of kB, MB, GB or TB (case-sensitive); a number without
/// a unit counts in the setting's base unit (8kB blocks, or kB) and a fraction is rounded.
/// This oracle is stricter where synprov is documented to be: a unit is required, no blank,
/// no fraction.
fn postgres_memory(setting: &str, value: &str) -> Option<u64> {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = value.split_at(digits);
    let per = match unit {
        "kB" => 1,
        "MB" => 1 << 10,
        "GB" => 1 << 20,
        "TB" => 1 << 30,
        _ => return None,
    };
    let kb = number.parse::<u64>().ok()?.checked_mul(per)?;
    // postgresql.org's runtime-config-resource: the minimum of each; the maximum is
    // INT_MAX of the base unit (2147483647 kB for the kB settings).
    let (min, max) = match setting {
        "shared_buffers" => (128, (i32::MAX as u64) * 8),
        "effective_cache_size" => (8, (i32::MAX as u64) * 8),
        "work_mem" => (64, i32::MAX as u64),
        "maintenance_work_mem" => (1024, i32::MAX as u64),
        _ => unreachable!("a memory setting"),
    };
    (min..=max).contains(&kb).then_some(kb)
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

/// The scrape file lists every process once, by the name the inventory gives it.
pub fn metrics(dir: &Path, d: &DeploymentMeaning) -> Result<(), Violation> {
    let text = std::fs::read_to_string(dir.join("prometheus/targets.json")).unwrap();
    let groups: Json = serde_json::from_str(&text)
        .map_err(|e| violation("prometheus/targets.json: not JSON", e.to_string()))?;
    let mut named: Vec<&str> = (groups.as_array().into_iter().flatten())
        .filter_map(|g| g.pointer("/labels/worker_name").and_then(Json::as_str))
        .collect();
    named.sort_unstable();
    let mut processes = d.processes();
    processes.sort_unstable();
    ensure(
        named == processes,
        "prometheus/targets.json: not every process once",
        || format!("{named:?}, intended {processes:?}"),
    )
}

// --- the echo plugin ---

pub fn echo(dir: &Path, config: &Json) -> Result<(), Violation> {
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
