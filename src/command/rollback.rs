//! `synprov rollback --host NAME`: the files the last apply replaced go back, the stack is
//! recreated on them, and its health is verified.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use synprov::apply;
use synprov::transport::Connection;
use synprov::ui::printable;

pub fn run(path: &Path, host_name: &str, known_hosts: Option<PathBuf>) -> miette::Result<ExitCode> {
    let inventory = super::load_inventory(path)?;
    let host = inventory.hosts.get(host_name).ok_or_else(|| {
        miette::miette!(
            help = "see `synprov check` for the hosts",
            "host `{host_name}` is not in the inventory"
        )
    })?;
    let connection = Connection::open(host, &super::connect_options(known_hosts))?;
    let report =
        |host: &str, message: &str| println!("[{}] {}", printable(host), printable(message));
    let timeout = Duration::from_secs(inventory.rollout.health_timeout_secs);
    let healthy = apply::rollback(&connection, &inventory, timeout, &report)?;
    println!("[{host_name}] rolled back; {healthy} listener(s) healthy");
    Ok(ExitCode::SUCCESS)
}
