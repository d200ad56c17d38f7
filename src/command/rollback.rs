//! `synprov rollback --host NAME`: the files the last apply replaced go back, the stack is
//! recreated on them, and its health is verified. Give the inventory as it was before that
//! apply, so that verification expects the workers that are back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use synprov::apply::{self, ApplyError, compose, files};
use synprov::facts;
use synprov::inventory;
use synprov::transport::Connection;

pub fn run(path: &Path, host_name: &str, known_hosts: Option<PathBuf>) -> miette::Result<ExitCode> {
    let inventory = inventory::load(path)?;
    let host = inventory.hosts.get(host_name).ok_or_else(|| {
        miette::miette!(
            help = "see `synprov check` for the hosts",
            "host `{host_name}` is not in the inventory"
        )
    })?;
    let connection = Connection::open(host, &super::connect_options(known_hosts))?;
    let compose_kind = facts::parse(
        &connection
            .run_script(&facts::script(&[], &[]))?
            .stdout_text(),
    )
    .compose;
    let step = |name: String, script: String| -> miette::Result<()> {
        let output = connection.run_script(&script)?;
        if output.success() {
            Ok(())
        } else {
            Err(ApplyError::Step {
                host: host_name.into(),
                step: name,
                tail: output.tail(20),
            }
            .into())
        }
    };
    let mut dirs = Vec::new();
    for deployment in inventory.deployments_on(host_name) {
        let dir = deployment.deploy_dir.as_str();
        let _lock = connection
            .lock(&format!("{dir}/.synprov/lock"))?
            .ok_or_else(|| ApplyError::Locked {
                host: host_name.into(),
                dir: dir.into(),
            })?;
        step(
            format!("rolling back {}", deployment.name),
            files::rollback_script(dir),
        )?;
        println!("[{host_name}] {}: files restored", deployment.name);
        step(
            "docker compose up".into(),
            compose::recreate_script(dir, &compose_kind),
        )?;
        dirs.push(dir);
    }
    let report = |host: &str, message: &str| println!("[{host}] {message}");
    let timeout = Duration::from_secs(inventory.rollout.health_timeout_secs);
    let healthy = apply::verify_host(
        &connection,
        &inventory,
        &compose_kind,
        &dirs,
        timeout,
        &report,
    )?;
    println!("[{host_name}] rolled back; {healthy} listener(s) healthy");
    Ok(ExitCode::SUCCESS)
}
