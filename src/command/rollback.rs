//! `synprov rollback --host NAME`: the files the last apply replaced go back, the stack
//! restarts on them, and its health is verified.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use synprov::apply::{ApplyError, compose, files};
use synprov::facts::Compose;
use synprov::inventory;
use synprov::transport::Connection;
use synprov::verify;

pub fn run(path: &Path, host_name: &str, known_hosts: Option<PathBuf>) -> miette::Result<ExitCode> {
    let inventory = inventory::load(path)?;
    let host = inventory.hosts.get(host_name).ok_or_else(|| {
        miette::miette!(
            help = "see `synprov check` for the hosts",
            "host `{host_name}` is not in the inventory"
        )
    })?;
    let connection = Connection::open(host, &super::connect_options(known_hosts))?;
    for deployment in inventory.deployments_on(host_name) {
        let dir = &deployment.deploy_dir;
        let _lock = connection
            .lock(&format!("{dir}/.synprov/lock"))?
            .ok_or_else(|| ApplyError::Locked {
                host: host_name.into(),
                dir: dir.clone(),
            })?;
        let output = connection.run_script(&files::rollback_script(dir))?;
        if !output.success() {
            return Err(ApplyError::Step {
                host: host_name.into(),
                step: format!("rolling back {}", deployment.name),
                tail: output.tail(5),
            }
            .into());
        }
        println!("[{host_name}] {}: files restored", deployment.name);
        let compose_kind = if connection
            .run_script("docker compose version >/dev/null 2>&1")?
            .success()
        {
            Compose::V2(String::new())
        } else {
            Compose::V1(String::new())
        };
        let up = compose::up_script(dir, &compose_kind, &Default::default()).replace(
            "up -d --remove-orphans",
            "up -d --remove-orphans --force-recreate",
        );
        let output = connection.run_script(&up)?;
        if !output.success() {
            return Err(ApplyError::Step {
                host: host_name.into(),
                step: "docker compose up".into(),
                tail: output.tail(20),
            }
            .into());
        }
    }
    let targets = verify::targets(&inventory, host_name);
    let failing = verify::wait_healthy(
        &connection,
        &targets,
        Duration::from_secs(inventory.rollout.health_timeout_secs),
    );
    for (target, error) in &failing {
        eprintln!(
            "[{host_name}] UNHEALTHY {} ({}): {error}",
            target.process, target.deployment
        );
    }
    if failing.is_empty() {
        println!(
            "[{host_name}] rolled back; {} listener(s) healthy",
            targets.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Err(ApplyError::Unhealthy {
            host: host_name.into(),
            count: failing.len(),
        }
        .into())
    }
}
