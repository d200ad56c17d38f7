//! `synprov plan` (and `apply --dry-run`): what would change on each host, hosts in
//! parallel. Changes nothing.

use std::process::ExitCode;
use std::sync::Arc;

use synprov::rollout::{Event, Status};
use synprov::ui;

use crate::cli::Target;

/// Exit status when changes are pending.
pub const PENDING: u8 = 2;

pub fn run(target: &Target) -> miette::Result<ExitCode> {
    let loaded = Arc::new(super::load(target)?);
    let color = ui::progress::Mode::choose(target.json) == ui::progress::Mode::Live;
    let (output, printed) = std::sync::mpsc::channel::<Event>();
    let shared = Arc::clone(&loaded);
    let work = move |host: &str, step: &dyn Fn(String)| {
        let (_, prepared, files) = super::connect_and_prepare(&shared, host, step)?;
        let _ = output.send(Event::Output {
            host: host.into(),
            text: ui::plan::show(&files, &prepared, color),
        });
        let unchanged = prepared.plan.deployments.iter().map(|d| d.unchanged).sum();
        Ok((prepared.plan.change_count(), unchanged))
    };
    let results = super::roll_out(&loaded, target, false, Arc::new(work));
    // The plans, host by host in inventory order, after the progress display.
    // What the hosts sent (a host abandoned after an abort may still hold the sender).
    let mut plans: Vec<(String, String)> = printed
        .try_iter()
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
    let pending = results
        .iter()
        .any(|r| matches!(r.status, Status::Done { changes, .. } if changes > 0));
    let otherwise = if pending {
        ExitCode::from(PENDING)
    } else {
        ExitCode::SUCCESS
    };
    Ok(super::rollout_exit(&loaded, &results, otherwise))
}
