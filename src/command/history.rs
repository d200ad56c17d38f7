//! `synprov history --host NAME`: the generations each deployment of the host kept, newest
//! last, and the audit log's lines.

use std::process::ExitCode;

use synprov::apply::rollback;
use synprov::transport::watch::Step;
use synprov::ui::one_line;

use crate::cli::HostTarget;

pub fn run(target: &HostTarget) -> miette::Result<ExitCode> {
    let on_host = super::host_deployments(target)?;
    let connection = on_host.connect(target)?;
    connection.begin(Step::Facts)?;
    for (name, dir) in &on_host.deployments {
        let listing = rollback::list(&connection, dir)?;
        println!("{} ({}):", one_line(name), one_line(dir));
        if listing.generations.is_empty() {
            println!("  no generation recorded yet");
        }
        let current = listing.current().map(|g| g.number);
        for generation in &listing.generations {
            let mark = if Some(generation.number) == current {
                "*"
            } else {
                " "
            };
            let line = match &generation.record {
                Ok(record) => format!(
                    "{} by {} ({}), synprov {}, {} file(s){}",
                    record.origin.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    record.origin.who(),
                    record.origin.command,
                    record.origin.synprov,
                    record.files.len(),
                    if generation.dump {
                        ", with a database dump"
                    } else {
                        ""
                    }
                ),
                Err(why) => format!("unreadable: {why}"),
            };
            println!("  {mark} {:>4}  {}", generation.number, one_line(&line));
        }
        if listing.pending {
            println!("  (the last apply did not finish: the host is on files of no generation)");
        }
        if !listing.audit.is_empty() {
            println!("  audit log:");
            for entry in &listing.audit {
                let generation = entry
                    .generation
                    .map_or("-".to_string(), |n| format!("generation {n}"));
                println!(
                    "    {}",
                    one_line(&format!(
                        "{}  {}  {}  {generation}  {}",
                        entry.at, entry.who, entry.command, entry.result
                    ))
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
