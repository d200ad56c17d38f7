//! `synprov plan` (and `apply --dry-run`): what would change on each host, hosts in
//! parallel. Changes nothing.

use std::process::ExitCode;

use synprov::rollout::{Event, Status};
use synprov::ui;

use crate::cli::Target;

/// Exit status when changes are pending.
pub const PENDING: u8 = 2;

pub fn run(target: &Target) -> miette::Result<ExitCode> {
    let loaded = super::load(target)?;
    let color = ui::progress::Mode::choose(target.json) == ui::progress::Mode::Live;
    let (output, printed) = std::sync::mpsc::channel::<Event>();
    let output = std::sync::Mutex::new(output);
    let work = |host: &str, step: &dyn Fn(String)| {
        let (_, prepared, files) = super::connect_and_prepare(&loaded, host, step)?;
        let _ = output.lock().expect("plan output").send(Event::Output {
            host: host.into(),
            text: ui::plan::show(&files, &prepared, color),
        });
        let unchanged = prepared.plan.deployments.iter().map(|d| d.unchanged).sum();
        Ok((prepared.plan.change_count(), unchanged))
    };
    let results = super::roll_out(&loaded, target, false, &work);
    drop(output);
    // The plans, host by host in inventory order, after the progress display.
    let mut plans: Vec<(String, String)> = printed
        .iter()
        .filter_map(|e| match e {
            Event::Output { host, text } => Some((host, text)),
            _ => None,
        })
        .collect();
    plans.sort_by_key(|(host, _)| results.iter().position(|r| &r.host == host));
    for (host, text) in plans {
        if target.json {
            println!("{}", ui::progress::json_line(&Event::Output { host, text }));
        } else {
            print!("{text}");
        }
    }
    let failed = results
        .iter()
        .any(|r| !matches!(r.status, Status::Done { .. }));
    let pending = results
        .iter()
        .any(|r| matches!(r.status, Status::Done { changes, .. } if changes > 0));
    Ok(if failed {
        ExitCode::FAILURE
    } else if pending {
        ExitCode::from(PENDING)
    } else {
        ExitCode::SUCCESS
    })
}
