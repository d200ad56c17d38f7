//! `synprov show PLAN`: a saved plan as `plan` printed it, or as JSON. Connects nowhere.

use std::path::Path;
use std::process::ExitCode;

use synprov::ui;

pub fn run(path: &Path, json: bool) -> miette::Result<ExitCode> {
    let plan = super::read_plan(path)?;
    if json {
        print!("{}", plan.to_json());
    } else {
        print!("{}", ui::plan::show_saved(&plan));
    }
    Ok(if plan.change_count() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::plan::PENDING)
    })
}
