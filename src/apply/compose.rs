//! Compose command lines for a deployment directory, for Compose v2 (`docker compose`) or
//! the legacy v1 (`docker-compose`).

use std::collections::BTreeSet;

use crate::facts::{Compose, PENDING};
use crate::shell::quote;

fn program(compose: &Compose) -> &'static str {
    match compose {
        Compose::V1(_) => "docker-compose",
        _ => "docker compose",
    }
}

/// Brings the stack up: creates what is missing, recreates what Compose sees changed,
/// removes services no longer in the file (workers removed from the inventory); then
/// recreates `restart`, the services whose mounted files changed.
pub fn up_script(dir: &str, compose: &Compose, restart: &BTreeSet<String>) -> String {
    let compose = program(compose);
    let mut s = format!(
        "set -e\ncd {}\n{compose} up -d --remove-orphans 2>&1\n",
        quote(dir)
    );
    if !restart.is_empty() {
        let services: Vec<String> = restart.iter().map(|s| quote(s)).collect();
        s.push_str(&format!(
            "{compose} up -d --no-deps --force-recreate {} 2>&1\n",
            services.join(" ")
        ));
    }
    s.push_str(&format!("rm -f {PENDING}\n"));
    s
}

/// Recreates every service (after a rollback put other files in place), and removes those
/// no longer in the file.
pub fn recreate_script(dir: &str, compose: &Compose) -> String {
    format!(
        "set -e\ncd {}\n{} up -d --remove-orphans --force-recreate 2>&1\nrm -f {PENDING}\n",
        quote(dir),
        program(compose)
    )
}

/// Prints `service state health` for each container of the stack. Through `docker
/// inspect`, since the legacy v1 has no `ps --format`.
pub fn status_script(dir: &str, compose: &Compose) -> String {
    format!(
        "cd {} && ids=$({} ps -aq) && [ -n \"$ids\" ] && docker inspect --format '{{{{index .Config.Labels \"com.docker.compose.service\"}}}} {{{{.State.Status}}}} {{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{end}}}}' $ids\n",
        quote(dir),
        program(compose)
    )
}

/// The last log lines of some services.
pub fn logs_script(dir: &str, compose: &Compose, services: &[String], lines: usize) -> String {
    let services: Vec<String> = services.iter().map(|s| quote(s)).collect();
    format!(
        "cd {} && {} logs --no-color --tail {lines} {} 2>&1\n",
        quote(dir),
        program(compose),
        services.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_recreates_only_the_services_whose_files_changed_then_clears_the_pending_mark() {
        let restart: BTreeSet<String> = ["rooms5".to_string(), "synapse".to_string()].into();
        let script = up_script("/opt/s", &Compose::V2("2.40".into()), &restart);
        assert_eq!(
            script,
            "set -e\ncd '/opt/s'\ndocker compose up -d --remove-orphans 2>&1\ndocker compose up -d --no-deps --force-recreate 'rooms5' 'synapse' 2>&1\nrm -f .synprov/pending\n"
        );
        assert!(
            up_script("/opt/s", &Compose::V1("1.29".into()), &BTreeSet::new())
                .contains("docker-compose up -d --remove-orphans")
        );
    }
}
