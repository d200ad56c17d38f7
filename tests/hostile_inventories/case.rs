//! Generated inventories: a valid base inventory with a few fields replaced by valid or
//! hostile values. A [`Case`] is what proptest generates and shrinks; its TOML is what
//! synprov reads.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::select;
use toml::{Table, Value};

/// The valid inventories the cases start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One homeserver on one host, the guide's 13 processes (`inventory/example.toml`).
    Single,
    /// One homeserver with its room workers on a second host (like `inventory/spread.toml`).
    Spread,
    /// Two homeservers on one host (like `inventory/fleet.toml`).
    Pair,
}

impl Shape {
    fn toml(self) -> &'static str {
        match self {
            Shape::Single => {
                r#"
[hosts.hs1]
address = "203.0.113.10"

[deployments.example]
server_name = "example.org"
public_baseurl = "https://matrix.example.org/"
admin_contact = "mailto:admin@example.org"
host = "hs1"
deploy_dir = "/opt/synapse/example"
"#
            }
            Shape::Spread => {
                r#"
[hosts.hs-main]
address = "198.51.100.10"
private_address = "10.20.0.10"

[hosts.hs-rooms]
address = "198.51.100.11"
private_address = "10.20.0.11"

[deployments.big]
server_name = "big.example"
public_baseurl = "https://matrix.big.example/"
host = "hs-main"
port_base = 9100

[deployments.big.workers]
rooms = 2
sender = 2

[deployments.big.placement]
rooms = "hs-rooms"

[deployments.big.nginx]
trusted_proxies = ["10.20.0.1"]
admin_allow = ["10.20.0.0/24"]
"#
            }
            Shape::Pair => {
                r#"
[hosts.hs1]
address = "hs1.hosting.example"

[deployments.alpha]
server_name = "alpha.example"
host = "hs1"

[deployments.alpha.workers]
rooms = 1
sender = 1

[deployments.beta]
server_name = "beta.example"
host = "hs1"
deploy_dir = "/opt/synapse/beta"

[deployments.beta.nginx]
http_port = 8009

[deployments.beta.workers]
rooms = 1
sender = 1
"#
            }
        }
    }

    /// The deployment the edits change.
    fn deployment(self) -> &'static str {
        match self {
            Shape::Single => "example",
            Shape::Spread => "big",
            Shape::Pair => "alpha",
        }
    }

    /// The host that runs the edited deployment's main process.
    fn main_host(self) -> &'static str {
        match self {
            Shape::Single | Shape::Pair => "hs1",
            Shape::Spread => "hs-main",
        }
    }
}

/// A field of the inventory that a case replaces (in the shape's first deployment, or its
/// main host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    DeploymentName,
    HostName,
    ServerName,
    PublicBaseurl,
    AdminContact,
    DeployDir,
    Timezone,
    PortBase,
    HttpPort,
    AdminAllow,
    TrustedProxies,
    Image(&'static str),
    CpMax,
    MaxConnections,
    /// A pinned Postgres memory setting (`shared_buffers`, ...).
    PostgresMemory(&'static str),
    Workers(&'static str),
    /// `[deployments.NAME.metrics] enabled`.
    Metrics,
    HealthTimeout,
    /// The whole `[deployments.NAME.homeserver]` table.
    Homeserver,
    /// The `config` table of the `echo` plugin, which the case then loads.
    EchoConfig,
}

pub const WORKER_KINDS: [&str; 6] = [
    "client_sync",
    "federation_reader",
    "media",
    "rooms",
    "sender",
    "tasks",
];

pub const IMAGE_KINDS: [&str; 4] = ["synapse", "postgres", "redis", "nginx"];

/// The Postgres memory settings an inventory can pin.
pub const POSTGRES_MEMORY: [&str; 4] = [
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
];

impl Field {
    /// Every field, for the survey.
    pub fn all() -> Vec<Field> {
        let mut all = vec![
            Field::DeploymentName,
            Field::HostName,
            Field::ServerName,
            Field::PublicBaseurl,
            Field::AdminContact,
            Field::DeployDir,
            Field::Timezone,
            Field::PortBase,
            Field::HttpPort,
            Field::AdminAllow,
            Field::TrustedProxies,
        ];
        all.extend(IMAGE_KINDS.map(Field::Image));
        all.extend([Field::CpMax, Field::MaxConnections]);
        all.extend(POSTGRES_MEMORY.map(Field::PostgresMemory));
        all.extend(WORKER_KINDS.map(Field::Workers));
        all.push(Field::Metrics);
        all.extend([Field::HealthTimeout, Field::Homeserver, Field::EchoConfig]);
        all
    }

    /// The TOML key path of a value field under the deployment (`None`: not a plain value).
    fn deployment_key(self) -> Option<Vec<&'static str>> {
        Some(match self {
            Field::ServerName => vec!["server_name"],
            Field::PublicBaseurl => vec!["public_baseurl"],
            Field::AdminContact => vec!["admin_contact"],
            Field::DeployDir => vec!["deploy_dir"],
            Field::Timezone => vec!["timezone"],
            Field::PortBase => vec!["port_base"],
            Field::HttpPort => vec!["nginx", "http_port"],
            Field::AdminAllow => vec!["nginx", "admin_allow"],
            Field::TrustedProxies => vec!["nginx", "trusted_proxies"],
            Field::Image(kind) => vec!["images", kind],
            Field::CpMax => vec!["postgres", "cp_max"],
            Field::MaxConnections => vec!["postgres", "max_connections"],
            Field::PostgresMemory(setting) => vec!["postgres", setting],
            Field::Workers(kind) => vec!["workers", kind],
            Field::Metrics => vec!["metrics", "enabled"],
            Field::Homeserver => vec!["homeserver"],
            _ => return None,
        })
    }
}

/// One replacement: `field` gets `value`.
#[derive(Debug, Clone)]
pub struct Edit {
    pub field: Field,
    pub value: Value,
}

/// A generated inventory.
#[derive(Debug, Clone)]
pub struct Case {
    pub shape: Shape,
    pub edits: Vec<Edit>,
}

impl Case {
    /// The inventory as a TOML table: the shape's base with the edits applied, values
    /// first and renames last (so that a value edit finds the deployment by its base name).
    pub fn table(&self, echo_wasm: &str) -> Table {
        let mut table: Table = toml::from_str(self.shape.toml()).expect("the base shapes are TOML");
        let deployment = self.shape.deployment();
        for edit in self.edits.iter().filter(|e| !is_rename(e.field)) {
            match edit.field.deployment_key() {
                Some(key) => {
                    let mut at = table_at(&mut table, &["deployments", deployment]);
                    for part in &key[..key.len() - 1] {
                        at = table_at(at, &[*part]);
                    }
                    at.insert(key[key.len() - 1].to_string(), edit.value.clone());
                }
                None if edit.field == Field::HealthTimeout => {
                    table_at(&mut table, &["rollout"])
                        .insert("health_timeout".into(), edit.value.clone());
                }
                None if edit.field == Field::EchoConfig => {
                    let mut plugin = Table::new();
                    plugin.insert("path".into(), Value::String(echo_wasm.into()));
                    plugin.insert("config".into(), edit.value.clone());
                    table.insert("plugins".into(), Value::Array(vec![Value::Table(plugin)]));
                }
                None => unreachable!("renames are applied below"),
            }
        }
        for edit in self.edits.iter().filter(|e| is_rename(e.field)) {
            let Value::String(new) = &edit.value else {
                unreachable!("names are strings")
            };
            match edit.field {
                Field::DeploymentName => rename(&mut table, "deployments", deployment, new),
                _ => {
                    rename(&mut table, "hosts", self.shape.main_host(), new);
                    rename_host_references(&mut table, self.shape.main_host(), new);
                }
            }
        }
        table
    }

    /// The inventory's text, as synprov reads it.
    pub fn toml(&self, echo_wasm: &str) -> String {
        let table = self.table(echo_wasm);
        let text = toml::to_string(&table).expect("a TOML table serializes");
        // The generator must produce the inventory it means: a value that the TOML writer
        // cannot round-trip would test the writer, not synprov.
        let back: Table = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("generated TOML does not parse back ({e}):\n{text}"));
        assert!(
            same_toml(&Value::Table(back), &Value::Table(table)),
            "generated TOML does not round-trip:\n{text}"
        );
        text
    }
}

fn is_rename(field: Field) -> bool {
    matches!(field, Field::DeploymentName | Field::HostName)
}

/// TOML equality where `nan` equals `nan`.
fn same_toml(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_toml(x, y))
        }
        (Value::Table(x), Value::Table(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_toml(v, w)))
        }
        _ => a == b,
    }
}

/// The table at `path` under `table`, created when missing.
fn table_at<'a>(table: &'a mut Table, path: &[&str]) -> &'a mut Table {
    let mut at = table;
    for part in path {
        let entry = at
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        at = match entry {
            Value::Table(t) => t,
            _ => unreachable!("the base shapes have tables here"),
        };
    }
    at
}

fn rename(table: &mut Table, section: &str, old: &str, new: &str) {
    let section = table_at(table, &[section]);
    if let Some(value) = section.remove(old) {
        section.insert(new.to_string(), value);
    }
}

/// Points every `host = OLD` and placement at the renamed host.
fn rename_host_references(table: &mut Table, old: &str, new: &str) {
    let deployments = table_at(table, &["deployments"]);
    for (_, deployment) in deployments.iter_mut() {
        let Value::Table(deployment) = deployment else {
            continue;
        };
        if deployment.get("host").and_then(Value::as_str) == Some(old) {
            deployment.insert("host".into(), Value::String(new.into()));
        }
        if let Some(Value::Table(placement)) = deployment.get_mut("placement") {
            for (_, host) in placement.iter_mut() {
                if host.as_str() == Some(old) {
                    *host = Value::String(new.into());
                }
            }
        }
    }
}

// --- Generators ---

/// Strings that have broken, or could break, one of the formats synprov writes: shell,
/// YAML (1.1 as PyYAML reads it, and 1.2), Nginx, Compose interpolation, env files,
/// postgresql.conf, paths, terminals.
const HOSTILE: &[&str] = &[
    "'",
    "\"",
    "\\",
    "\n",
    "\r",
    "\r\n",
    "\t",
    ";",
    "{",
    "}",
    "{}",
    "$",
    "${HOME}",
    "$$",
    "$http_authorization",
    "#",
    "# }",
    " #x",
    "\0",
    "\u{1b}[31m",
    "\u{7}",
    "\u{7f}",
    "\u{85}",
    "\u{9b}",
    "\u{2028}",
    "\u{feff}",
    "\u{202e}",
    "\u{fffe}",
    "..",
    "../..",
    "//",
    "/./",
    "-x",
    "_x",
    ".",
    "<<",
    "&a",
    "*a",
    "!!python/object/apply:os.system ['id']",
    "!!binary aGk=",
    ": ",
    "- ",
    "? ",
    "|",
    ">",
    "%YAML 1.1",
    "---",
    "...",
    "@",
    "`id`",
    "$(id)",
    "yes",
    "no",
    "on",
    "off",
    "~",
    "null",
    "1:20",
    "0o17",
    "017",
    "0x1f",
    "1_000",
    ".inf",
    ".nan",
    "1e3",
    "2001-12-14",
    "=",
    "a=b",
    "\nTZ=Evil/Zone",
    "\narchive_command = 'touch /tmp/pwned'",
    "'\narchive_command = 'touch /tmp/pwned'\n#",
    "all; allow 0.0.0.0/0",
    "127.0.0.1; allow all",
    "}\nserver { listen 1; }",
    "\nload_module /tmp/x.so;",
    " ",
    "",
    "é",
    "日本",
    "😀",
    "x\u{301}",
    "%2e%2e",
    "%",
    "1.2.3",
    "0x7f",
];

/// A hostile string: one of the known ones, two of them joined, arbitrary characters, or a
/// very long run.
pub fn hostile() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(HOSTILE).prop_map(String::from),
        2 => (select(HOSTILE), select(HOSTILE)).prop_map(|(a, b)| format!("{a}{b}")),
        2 => proptest::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        1 => (1usize..6000, select(&["a", "é", "{", "\n", "/", "$"][..]))
            .prop_map(|(n, s)| s.repeat(n)),
    ]
    .boxed()
}

/// A value from `valid`, or a hostile string alone, or a valid value with a hostile one
/// before, after or inside it.
pub fn text(valid: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        2 => select(valid).prop_map(String::from),
        2 => hostile(),
        4 => (select(valid), hostile(), 0..3usize).prop_map(|(v, h, at)| match at {
            0 => format!("{h}{v}"),
            1 => format!("{v}{h}"),
            _ => {
                let middle = v.char_indices().nth(v.chars().count() / 2).map_or(0, |(i, _)| i);
                format!("{}{h}{}", &v[..middle], &v[middle..])
            }
        }),
    ]
    .boxed()
}

/// A whole number: a valid one, an edge of some integer type, any i64, or a value of
/// another TOML type.
fn number(valid: std::ops::RangeInclusive<i64>) -> BoxedStrategy<Value> {
    const EDGES: &[i64] = &[
        -1,
        0,
        1,
        1000,
        1001,
        5432,
        6379,
        8008,
        65_535,
        65_536,
        330_382_100,
        u32::MAX as i64,
        u32::MAX as i64 + 1,
        u64::MAX as i64,
        i64::MAX,
        i64::MIN,
    ];
    prop_oneof![
        4 => valid.prop_map(Value::Integer),
        4 => select(EDGES).prop_map(Value::Integer),
        1 => any::<i64>().prop_map(Value::Integer),
        1 => prop_oneof![
            hostile().prop_map(Value::String),
            Just(Value::Float(8008.0)),
            Just(Value::Float(f64::NAN)),
            Just(Value::Boolean(true)),
        ],
    ]
    .boxed()
}

fn string(valid: &'static [&'static str]) -> BoxedStrategy<Value> {
    text(valid).prop_map(Value::String).boxed()
}

/// A list of addresses for `admin_allow` or `trusted_proxies`.
fn addresses() -> BoxedStrategy<Value> {
    const VALID: &[&str] = &[
        "10.0.0.0/8",
        "192.0.2.1",
        "127.0.0.1",
        "::1",
        "2001:db8::/32",
        "0.0.0.0/0",
    ];
    proptest::collection::vec(string(VALID), 0..4)
        .prop_map(Value::Array)
        .boxed()
}

/// A TOML datetime of each of the four kinds.
fn datetime() -> BoxedStrategy<Value> {
    select(
        &[
            "1979-05-27T07:32:00Z",
            "1979-05-27T00:32:00.999999-07:00",
            "1979-05-27T07:32:00",
            "1979-05-27",
            "07:32:00",
        ][..],
    )
    .prop_map(|s| Value::Datetime(s.parse().expect("a TOML datetime")))
    .boxed()
}

/// A value of the `homeserver` table or of a plugin's config: any TOML type, hostile
/// strings, odd floats, datetimes, and nested arrays and tables with hostile keys.
fn toml_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        3 => text(&["10M", "example.org", "true", "info", "/data/x"]).prop_map(Value::String),
        2 => prop_oneof![any::<i64>(), -2i64..100].prop_map(Value::Integer),
        2 => prop_oneof![
            select(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.1, 1e300, 5e-324][..]),
            any::<f64>(),
        ]
        .prop_map(Value::Float),
        1 => any::<bool>().prop_map(Value::Boolean),
        1 => datetime(),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..3)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A key of the `homeserver` table or of a plugin's config.
fn key() -> BoxedStrategy<String> {
    text(&[
        "max_upload_size",
        "presence",
        "enable_registration",
        "url_preview_enabled",
        "experimental_features",
        "server_name",
        "listeners",
        "log_config",
    ])
}

/// A table of 1 to 3 keys.
fn table() -> BoxedStrategy<Value> {
    proptest::collection::btree_map(key(), toml_value(), 1..4)
        .prop_map(|m: BTreeMap<String, Value>| Value::Table(m.into_iter().collect()))
        .boxed()
}

/// The values tried for `field`.
pub fn values(field: Field) -> BoxedStrategy<Value> {
    match field {
        Field::DeploymentName => string(&["example", "a", "beta-2", "x_y", "0abc"]),
        Field::HostName => string(&["hs1", "h-2", "h.example", "web_1", "H"]),
        Field::ServerName => string(&[
            "example.org",
            "matrix.example.org:8448",
            "1.2.3.4",
            "[::1]:8448",
            "[2001:db8::1]",
            "localhost",
            "xn--bcher-kva.example",
            // Numeric labels that are no IPv4 address, and (in the pair) the other
            // deployment's name in capitals: to be refused.
            "1.2.3",
            "123",
            "BETA.example",
        ]),
        Field::PublicBaseurl => string(&[
            "https://matrix.example.org/",
            "http://localhost:8008",
            "https://example.org/matrix/",
            "https://Matrix.Example.org:443/a-b_c.d~e/",
            // What its readers would read differently: to be refused.
            "https://matrix.example.org/a b/",
            "https://bücher.example/",
            "https://1.2.3/",
            "https://example.org/%2e%2e/",
            "https://example.org/a/../b/",
        ]),
        Field::AdminContact => string(&["mailto:admin@example.org", "https://example.org/contact"]),
        Field::DeployDir => string(&["/opt/synapse/example", "/srv/matrix", "/opt/s-1/x_y"]),
        Field::Timezone => string(&[
            "Etc/UTC",
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "UTC",
            "Asia/Kolkata",
        ]),
        Field::PortBase => number(1024..=65_000),
        Field::HttpPort => number(1..=65_535),
        Field::AdminAllow | Field::TrustedProxies => addresses(),
        Field::Image(_) => string(&[
            "matrixdotorg/synapse:v1.120.0",
            "registry.example.org:5000/team/synapse:1",
            "postgres:16-alpine",
            "nginx",
            "redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ]),
        Field::CpMax => number(1..=20),
        Field::MaxConnections => number(50..=5000),
        Field::PostgresMemory(_) => string(&[
            "256MB", "1GB", "64kB", "2TB", "1kB", "128kB", "16MB", "1024", "1.5GB", " 4GB", "8 MB",
            "1gb", "0MB", "1TB",
        ]),
        Field::Workers(_) => number(1..=4),
        Field::Metrics => prop_oneof![
            4 => any::<bool>().prop_map(Value::Boolean),
            1 => string(&["true", "yes", "1"]),
            1 => number(0..=1),
        ]
        .boxed(),
        Field::HealthTimeout => number(1..=3600),
        Field::Homeserver | Field::EchoConfig => table(),
    }
}

fn edit(field: Field) -> BoxedStrategy<Edit> {
    values(field)
        .prop_map(move |value| Edit { field, value })
        .boxed()
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![3 => Just(Shape::Single), 1 => Just(Shape::Spread), 1 => Just(Shape::Pair)]
}

/// Cases that replace one to three fields of any kind.
pub fn cases() -> BoxedStrategy<Case> {
    let fields = Field::all();
    let one = select(fields).prop_flat_map(edit);
    (shape(), proptest::collection::vec(one, 1..4))
        .prop_map(|(shape, edits)| Case { shape, edits })
        .boxed()
}

/// Cases that replace `field` only.
pub fn cases_of(field: Field) -> BoxedStrategy<Case> {
    (shape(), edit(field))
        .prop_map(|(shape, edit)| Case {
            shape,
            edits: vec![edit],
        })
        .boxed()
}
