//! Hostile inventories (issue #11, "Rendered files their consumers accept"): a property test.
//!
//! Each case starts from a valid inventory (one host; a spread deployment; two deployments on
//! one host) and replaces one to three fields (names, server_name, URLs, paths, time zone,
//! ports, addresses, images, Postgres sizes, worker counts, the `homeserver` table, the
//! `echo` plugin's config) with valid values or hostile ones: quotes, backslashes, newlines,
//! `;`, braces, `$`, `${VAR}`, `#`, NUL and other control characters, very long strings,
//! unicode, `..`, `//`, YAML specials, TOML datetimes, `nan` and `inf`. `synprov render`
//! must then either refuse the inventory with an error located at `FILE:LINE:COL`, writing
//! nothing, or write files that their consumers' own parsers read with the meaning the
//! inventory gave them: PyYAML (as Synapse reads its config), Nginx's tokenizer and `nginx
//! -t`, `docker compose config` (run as synprov runs Compose), Postgres' rules for
//! `postgresql.conf`, and env files of intended keys only. `judge.rs` runs a case and gives
//! the verdict; `checks.rs` holds what each consumer must read.
//!
//! Runs 48 cases by default (well under two minutes on two cores); `PROPTEST_CASES=500`
//! runs more. The ignored survey test tries every field on its own and lists every class of
//! failure with a minimal input, instead of stopping at the first:
//! `cargo test --test hostile_inventories -- --ignored --nocapture` (`SYNPROV_SURVEY_CASES`
//! cases per field, default 32; `SYNPROV_SURVEY_FIELDS=Timezone,HostName,Mixed` for some
//! fields, `Mixed` being several at once; `SYNPROV_SURVEY_OUT=FILE` writes the list to a file).

#[path = "../common/mod.rs"]
mod common;

mod case;
mod checks;
mod consumers;
mod judge;
mod meaning;

use std::collections::BTreeMap;

use proptest::strategy::{BoxedStrategy, Strategy, ValueTree};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use toml::Value;

use case::{Case, Edit, Field, Shape};
use judge::Violation;

/// Cases of a run when `PROPTEST_CASES` is not set: small enough for CI.
const DEFAULT_CASES: u32 = 48;

/// Most simplifications the survey tries per class (each is a render and its checks).
const SHRINK_STEPS: usize = 150;

/// Proptest's configuration from its environment variables (`PROPTEST_CASES`,
/// `PROPTEST_MAX_SHRINK_TIME`, ...), with this test's defaults where they are unset. No
/// regression file is written into the source tree: the known failures are the plain
/// tests below.
fn config() -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_TIME").is_none() {
        config.max_shrink_time = 120_000;
    }
    config
}

/// The inventory of `case`, for a failure message.
fn shown(case: &Case) -> String {
    format!(
        "{case:?}\n--- inventory.toml ---\n{}",
        case.toml(&judge::context().echo_wasm)
    )
}

#[test]
fn every_inventory_is_refused_with_a_location_or_rendered_as_its_consumers_read_it() {
    let mut runner = TestRunner::new(config());
    let result = runner.run(&case::cases(), |case| {
        let found = judge::check(&case);
        if found.is_empty() {
            Ok(())
        } else {
            let all: Vec<String> = found.iter().map(Violation::to_string).collect();
            Err(TestCaseError::fail(all.join("\n\n")))
        }
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => {
            panic!("{reason}\n\nminimal case: {}", shown(&case))
        }
        Err(TestError::Abort(reason)) => panic!("proptest gave up: {reason}"),
    }
}

// --- The survey ---

/// A class of failure, with the smallest input found that shows it.
struct Finding {
    case: Case,
    violation: Violation,
}

/// Simplifies `tree` while the case still fails with the class of `first`.
fn shrink(tree: &mut impl ValueTree<Value = Case>, first: Violation) -> Finding {
    let mut best = Finding {
        case: tree.current(),
        violation: first,
    };
    let mut more = tree.simplify();
    for _ in 0..SHRINK_STEPS {
        if !more {
            break;
        }
        let case = tree.current();
        match judge::check(&case)
            .into_iter()
            .find(|v| v.class == best.violation.class)
        {
            Some(violation) => {
                best = Finding { case, violation };
                more = tree.simplify();
            }
            None => more = tree.complicate(),
        }
    }
    best
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a survey of every failure class, field by field: minutes (run with --ignored --nocapture)"]
fn no_field_of_the_inventory_breaks_a_consumer_in_any_way() {
    let cases = env_number("SYNPROV_SURVEY_CASES", 32);
    let only = std::env::var("SYNPROV_SURVEY_FIELDS").unwrap_or_default();
    let mut findings: BTreeMap<(String, String), Finding> = BTreeMap::new();
    // Each field alone, then several fields at once (`Mixed`: what the property test runs).
    let mut sources: Vec<(String, BoxedStrategy<Case>)> = Field::all()
        .into_iter()
        .map(|field| (format!("{field:?}"), case::cases_of(field)))
        .collect();
    sources.push(("Mixed".into(), case::cases()));
    for (source, strategy) in sources {
        if !only.is_empty() && !only.split(',').any(|f| f == source) {
            continue;
        }
        let mut runner = TestRunner::new(config());
        for _ in 0..cases {
            // The same tree again for each class to shrink, from a copy of its random source.
            let rng = runner.new_rng();
            let tree = || {
                let mut runner = TestRunner::new_with_rng(config(), rng.clone());
                strategy.new_tree(&mut runner).unwrap()
            };
            for violation in judge::check(&tree().current()) {
                let key = (source.clone(), violation.class.clone());
                if findings.contains_key(&key) {
                    continue;
                }
                let finding = shrink(&mut tree(), violation);
                eprintln!(
                    "{source}: {}\n  {:?}",
                    finding.violation.class, finding.case.edits
                );
                findings.insert(key, finding);
            }
        }
    }
    let mut report = String::new();
    for ((field, class), finding) in &findings {
        let detail: String = finding.violation.detail.chars().take(600).collect();
        report.push_str(&format!(
            "## {field}: {class}\n{:?} {:?}\n{detail}\n\n",
            finding.case.shape, finding.case.edits
        ));
    }
    if let Ok(path) = std::env::var("SYNPROV_SURVEY_OUT") {
        std::fs::write(path, &report).unwrap();
    }
    assert!(
        findings.is_empty(),
        "{} classes of failure:\n\n{report}",
        findings.len()
    );
}

// --- Known failures, as plain tests ---

fn assert_holds(shape: Shape, field: Field, value: Value) {
    let case = Case {
        shape,
        edits: vec![Edit { field, value }],
    };
    let found = judge::check(&case);
    if !found.is_empty() {
        let all: Vec<String> = found.iter().map(Violation::to_string).collect();
        panic!("{}\n\ncase: {}", all.join("\n\n"), shown(&case));
    }
}

fn text(s: &str) -> Value {
    Value::String(s.into())
}

#[test]
fn the_base_inventories_pass_every_check() {
    for shape in [Shape::Single, Shape::Spread, Shape::Pair] {
        assert_holds(shape, Field::Timezone, text("Europe/Paris"));
    }
}

#[test]
fn a_timezone_with_a_newline_adds_no_postgres_setting() {
    assert_holds(
        Shape::Single,
        Field::Timezone,
        text("UTC'\narchive_command = 'touch /tmp/pwned'\n#"),
    );
}

#[test]
fn an_admin_allow_entry_with_a_semicolon_adds_no_allow_directive() {
    assert_holds(
        Shape::Single,
        Field::AdminAllow,
        Value::Array(vec![text("all; allow 0.0.0.0/0")]),
    );
}

#[test]
fn a_homeserver_key_of_yaml_merge_syntax_is_read_by_pyyaml_as_written() {
    let mut table = toml::Table::new();
    table.insert("<<".into(), text("x"));
    assert_holds(Shape::Single, Field::Homeserver, Value::Table(table));
}

#[test]
fn a_host_named_dot_dot_writes_nothing_outside_the_output_directory() {
    assert_holds(Shape::Single, Field::HostName, text(".."));
}

#[test]
fn a_host_name_too_long_for_a_file_name_is_refused_with_a_location() {
    assert_holds(Shape::Single, Field::HostName, text(&"h".repeat(300)));
}

#[test]
fn a_server_name_of_an_ipv6_address_and_a_path_keeps_the_signing_key_in_synapse() {
    assert_holds(Shape::Single, Field::ServerName, text("[::1]/../../x"));
}

#[test]
fn a_control_character_in_public_baseurl_is_refused_with_a_location() {
    assert_holds(
        Shape::Single,
        Field::PublicBaseurl,
        text("https://matrix.example.org/\u{7f}"),
    );
}

#[test]
fn a_server_name_of_numeric_labels_that_is_no_ip_address_is_refused_with_a_location() {
    assert_holds(Shape::Single, Field::ServerName, text("1.2.3"));
}

#[test]
fn a_server_name_equal_to_another_but_for_case_is_refused_with_a_location() {
    assert_holds(Shape::Pair, Field::ServerName, text("BETA.example"));
}

#[test]
fn a_public_baseurl_with_a_space_or_a_dot_segment_is_refused_with_a_location() {
    assert_holds(
        Shape::Single,
        Field::PublicBaseurl,
        text("https://matrix.example.org/a b/"),
    );
    assert_holds(
        Shape::Single,
        Field::PublicBaseurl,
        text("https://example.org/a/%2e%2e/"),
    );
}

#[test]
fn an_empty_table_in_homeserver_is_refused_with_a_location() {
    assert_holds(
        Shape::Single,
        Field::Homeserver,
        homeserver(Value::Table(toml::Table::new())),
    );
}

#[test]
fn a_trusted_proxy_with_a_semicolon_adds_no_allow_directive() {
    assert_holds(
        Shape::Single,
        Field::TrustedProxies,
        Value::Array(vec![text("10.0.0.1; allow 0.0.0.0/0")]),
    );
}

#[test]
fn a_dollar_in_an_image_reaches_compose_as_written() {
    assert_holds(
        Shape::Single,
        Field::Image("synapse"),
        text("$REGISTRY/synapse:latest"),
    );
}

#[test]
fn spread_listeners_keep_clear_of_postgres_port() {
    assert_holds(Shape::Spread, Field::PortBase, Value::Integer(5432));
}

#[test]
fn a_pool_size_that_overflows_the_connection_budget_is_refused_with_a_location() {
    assert_holds(Shape::Single, Field::CpMax, Value::Integer(330_382_100));
}

/// `[deployments.NAME.homeserver]` with one `key = value`.
fn homeserver(value: Value) -> Value {
    Value::Table([("key".to_string(), value)].into_iter().collect())
}

#[test]
fn a_homeserver_key_yes_stays_a_string_for_pyyaml() {
    let table = [("yes".to_string(), text("x"))].into_iter().collect();
    assert_holds(Shape::Single, Field::Homeserver, Value::Table(table));
}

#[test]
fn a_homeserver_string_yes_stays_a_string_for_pyyaml() {
    assert_holds(Shape::Single, Field::Homeserver, homeserver(text("yes")));
}

#[test]
fn a_homeserver_float_with_an_exponent_stays_a_float_for_pyyaml() {
    assert_holds(
        Shape::Single,
        Field::Homeserver,
        homeserver(Value::Float(1e300)),
    );
}

#[test]
fn a_homeserver_nan_is_refused_or_kept() {
    assert_holds(
        Shape::Single,
        Field::Homeserver,
        homeserver(Value::Float(f64::NAN)),
    );
}

#[test]
fn a_homeserver_datetime_is_refused_or_kept() {
    let datetime = "1979-05-27T07:32:00Z".parse().unwrap();
    assert_holds(
        Shape::Single,
        Field::Homeserver,
        homeserver(Value::Datetime(datetime)),
    );
}
