//! `synprov plan` (and `apply --dry-run`): what would change on each host, hosts in
//! parallel; with `--out`, the plan saved for `apply PLAN`. Changes nothing on the hosts.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use miette::{Context, IntoDiagnostic};
use synprov::rollout::{Event, HostResult, Status};
use synprov::saved_plan::{Roles, SavedHost, SavedPlan};
use synprov::ui;

use crate::cli::Target;

/// Exit status when changes are pending.
pub const PENDING: u8 = 2;

pub fn run(target: &Target, out: Option<&Path>, files_only: bool) -> miette::Result<ExitCode> {
    let loaded = Arc::new(super::load(target)?.files_only(files_only));
    let color = ui::progress::Mode::choose(target.json) == ui::progress::Mode::Live;
    // Each host's plan and how it reads, as the hosts finish.
    let planned: Arc<Mutex<Vec<(SavedHost, String)>>> = Arc::default();
    let (shared, into) = (Arc::clone(&loaded), Arc::clone(&planned));
    let work = move |host: &str, step: &dyn Fn(String)| {
        let (_, prepared, files) = super::connect_and_prepare(&shared, host, step)?;
        let record = SavedHost::of(&files, &prepared, files_only);
        let text = ui::plan::show(&record, Some((&files, &prepared)), color);
        let counts = (record.changes, record.unchanged());
        into.lock().expect("plans").push((record, text));
        Ok(counts)
    };
    let results = super::roll_out(&loaded, target, false, Arc::new(work));
    // The plans, host by host in inventory order, after the progress display (a host
    // abandoned after an abort may still hold the list).
    let mut planned = std::mem::take(&mut *planned.lock().expect("plans"));
    planned.sort_by_key(|(record, _)| results.iter().position(|r| r.host == record.host));
    for (record, text) in &planned {
        if target.json {
            let event = Event::Output {
                host: record.host.clone(),
                text: text.clone(),
            };
            println!("{}", ui::progress::json_line(&event));
        } else {
            print!("{text}");
        }
    }
    if let Some(out) = out {
        save(target, out, files_only, &loaded, &results, planned)?;
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

/// Writes the plan of every host to `out` (mode 0600, whole or not at all), made from the
/// inventory and templates of `loaded`; refuses when a host could not be planned, since
/// the plan would not cover what was asked.
fn save(
    target: &Target,
    out: &Path,
    files_only: bool,
    loaded: &super::Loaded,
    results: &[HostResult],
    planned: Vec<(SavedHost, String)>,
) -> miette::Result<()> {
    let unplanned = super::unfinished(results);
    if !unplanned.is_empty() {
        return Err(miette::miette!(
            help = "fix what the report above names, or leave those hosts out with --limit, then plan again",
            "no plan written to {}: {} could not be planned",
            out.display(),
            unplanned.join(", ")
        ));
    }
    let absolute = |path: &Path| {
        std::fs::canonicalize(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot resolve {}", path.display()))
    };
    let plan = SavedPlan::new(
        absolute(&target.inventory)?,
        loaded.inventory_sha256.clone(),
        target.limit.clone(),
        match target.roles.as_deref() {
            Some(dir) => Some(Roles {
                dir: absolute(dir)?,
                sha256: loaded.templates_sha256().to_string(),
            }),
            None => None,
        },
        files_only,
        planned.into_iter().map(|(record, _)| record).collect(),
    );
    super::write_with_mode(out, plan.to_json().as_bytes(), 0o600)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write the plan to {}", out.display()))?;
    if !target.json {
        println!(
            "plan saved to {}: `synprov show {0}` prints it, `synprov apply {0}` applies it",
            ui::printable(&out.display().to_string())
        );
    }
    Ok(())
}
