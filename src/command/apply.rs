//! `synprov apply`: plan, then carry it out and verify, host by host.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use synprov::apply::{self, Options};
use synprov::ui;

use crate::cli::Target;

pub fn run(target: &Target, files_only: bool) -> miette::Result<ExitCode> {
    let loaded = super::load(target)?;
    let options = Options {
        files_only,
        health_timeout: Duration::from_secs(loaded.inventory.rollout.health_timeout_secs),
    };
    let mut failed = false;
    for files in &loaded.hosts {
        let started = Instant::now();
        let result =
            super::connect_and_prepare(&loaded, files).and_then(|(connection, prepared)| {
                print!("{}", ui::plan::show(files, &prepared, ui::color()));
                let host = &loaded.inventory.hosts[&files.host];
                let report = |host: &str, message: &str| println!("[{host}] {message}");
                Ok(apply::apply(
                    &connection,
                    host,
                    &loaded.inventory,
                    files,
                    &prepared,
                    &options,
                    &report,
                )?)
            });
        match result {
            Ok(outcome) => println!(
                "host {}: {} change(s) applied, {} listener(s) healthy ({:.1} s)",
                files.host,
                outcome.changes,
                outcome.healthy,
                started.elapsed().as_secs_f64()
            ),
            Err(report) => {
                eprintln!("{report:?}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
