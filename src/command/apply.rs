//! `synprov apply`: plan, carry it out and verify, host by host in the batches `[rollout]`
//! sets, several hosts at once; optionally roll back a host that fails its health check.
//! Given a plan file (`plan --out`), it carries out exactly that plan or refuses.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use synprov::apply::rollback::{self, To};
use synprov::apply::{self, ApplyError, Options, Prepared};
use synprov::generations::Origin;
use synprov::render::{HostFiles, Templates};
use synprov::rollout::Failure;
use synprov::saved_plan::{self, SavedHost, SavedPlan};
use synprov::transport::Connection;
use synprov::ui;

use crate::cli::Target;

/// How `apply` was asked to run.
pub struct Flags {
    pub dry_run: bool,
    pub files_only: bool,
    pub no_backup: bool,
    /// With a plan file: apply the hosts that match it even when others do not.
    pub partial: bool,
    /// With a plan file: how old it may be (default [`DEFAULT_MAX_AGE`]).
    pub max_age: Option<Duration>,
}

/// How old a saved plan may be when `--max-age` is not given: a plan of yesterday was
/// reviewed against a fleet that has moved on since.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

pub fn run(target: &Target, flags: &Flags) -> miette::Result<ExitCode> {
    let path = &target.inventory;
    let text = saved_plan::read_text(path)?;
    if SavedPlan::is_plan(&text) {
        return apply_saved(target, &SavedPlan::parse(path, &text)?, flags);
    }
    if flags.partial || flags.max_age.is_some() {
        return Err(miette::miette!(
            help = format!(
                "save a plan with `synprov plan {} --out FILE`, then `synprov apply FILE`",
                path.display()
            ),
            "--partial and --max-age are for a saved plan, and {0} is an inventory",
            path.display()
        ));
    }
    if flags.dry_run {
        return super::plan::run(target, None, flags.files_only);
    }
    let loaded = Arc::new(super::load(target)?.files_only(flags.files_only));
    let host_apply = HostApply::new(
        &loaded,
        target,
        "apply".into(),
        flags.files_only,
        flags.no_backup,
    );
    let kept = Kept::default();
    if !flags.files_only
        && let Some(stopped) = upgrade_spread(&loaded, target, &host_apply.options, &kept)
    {
        return Ok(stopped);
    }
    let (shared, files_only) = (Arc::clone(&loaded), flags.files_only);
    let work = move |host: &str, step: &dyn Fn(String)| {
        let open = kept.take(host).map(|(connection, _)| connection);
        let (connection, prepared, files) = super::prepare_on(&shared, host, open, step)?;
        let record = SavedHost::of(&files, &prepared, files_only);
        host_apply.run(&(connection, prepared, files), &record, step)
    };
    let results = super::roll_out(&loaded, target, true, Arc::new(work));
    Ok(super::rollout_exit(&loaded, &results, ExitCode::SUCCESS))
}

/// Carries out the plan saved in `target.inventory` on the inventory it names: refused
/// whole when the plan is too old or the inventory changed; then each host's facts and plan
/// are made again, and a host where they differ is refused. Unless `--partial`, every host
/// is checked first and nothing is applied when one is refused; each host is checked again
/// just before it is applied.
fn apply_saved(target: &Target, plan: &SavedPlan, flags: &Flags) -> miette::Result<ExitCode> {
    let path = &target.inventory;
    plan.check_fresh(
        path,
        chrono::Utc::now(),
        flags.max_age.unwrap_or(DEFAULT_MAX_AGE),
    )?;
    // The templates are those given now: a plan file names its `--roles` directory for
    // the operator to see, never for `apply` to take templates from.
    let roles = (target.roles.as_deref()).or(plan.roles.as_ref().map(|r| r.dir.as_path()));
    let remake = format!(
        "synprov plan {}{}{} --out {}",
        plan.inventory.display(),
        if flags.files_only || plan.files_only {
            " --files-only"
        } else {
            ""
        },
        roles.map_or(String::new(), |dir| format!(" --roles {}", dir.display())),
        path.display()
    );
    if flags.files_only && !plan.files_only {
        return Err(miette::miette!(
            help = format!("to write the files alone, save a plan for that: `{remake}`"),
            "{} was made for a full apply; --files-only would carry out only part of it",
            path.display()
        ));
    }
    if !target.limit.is_empty() {
        return Err(miette::miette!(
            help = format!("to apply other hosts, save a plan with them: `{remake}`"),
            "the hosts of {} are those it was made for: --limit is not taken with a plan file",
            path.display()
        ));
    }
    let templates = Templates::load(target.roles.as_deref())?;
    plan.check_templates(path, target.roles.as_deref(), templates.sha256(), &remake)?;
    plan.check_inventory(path, &super::file_sha256(&plan.inventory)?)?;
    if plan.change_count() == 0 {
        let message = format!(
            "{}: the plan changes nothing on its {} host(s); nothing to apply",
            ui::printable(&path.display().to_string()),
            plan.hosts.len()
        );
        // On stderr with --json, whose output is events only.
        if target.json {
            eprintln!("{message}");
        } else {
            println!("{message}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let target = Target {
        inventory: plan.inventory.clone(),
        limit: plan.limit.clone(),
        parallel: target.parallel,
        json: target.json,
        timings: target.timings,
        known_hosts: target.known_hosts.clone(),
        roles: target.roles.clone(),
    };
    let loaded = Arc::new(super::load(&target)?.files_only(plan.files_only));
    // Again on the templates loaded: they may have changed since the check above.
    plan.check_templates(
        path,
        target.roles.as_deref(),
        loaded.templates_sha256(),
        &remake,
    )?;
    let against = Arc::new(Against {
        loaded: Arc::clone(&loaded),
        plan: plan.clone(),
        path: path.clone(),
        remake,
    });
    if !flags.partial || flags.dry_run {
        if !target.json {
            println!(
                "checking {} against its hosts",
                ui::printable(&path.display().to_string())
            );
        }
        let checking = Arc::clone(&against);
        let check = move |host: &str, step: &dyn Fn(String)| {
            let (_, now) = checking.matching(host, None, step)?;
            Ok((now.changes, now.unchanged()))
        };
        let results = super::roll_out(&loaded, &target, false, Arc::new(check));
        if loaded.options.interrupt.stopping() {
            return Ok(super::rollout_exit(&loaded, &results, ExitCode::SUCCESS));
        }
        let refused = super::unfinished(&results);
        if !refused.is_empty() {
            return Err(miette::miette!(
                help = format!(
                    "review what changed (above) and save a new plan (`{}`), or apply the hosts that still match with --partial",
                    against.remake
                ),
                "{} is refused on {}: nothing was applied",
                path.display(),
                refused.join(", ")
            ));
        }
        if flags.dry_run {
            return Ok(ExitCode::from(super::plan::PENDING));
        }
    }
    let command = format!("apply {}", path.display());
    let host_apply = HostApply::new(&loaded, &target, command, plan.files_only, flags.no_backup);
    let kept = Kept::default();
    if !plan.files_only
        && let Some(stopped) = upgrade_spread(&loaded, &target, &host_apply.options, &kept)
    {
        return Ok(stopped);
    }
    let work = move |host: &str, step: &dyn Fn(String)| {
        let open = kept.take(host).map(|(connection, _)| connection);
        let (prepared, now) = against.matching(host, open, step)?;
        host_apply.run(&prepared, &now, step)
    };
    let results = super::roll_out(&loaded, &target, true, Arc::new(work));
    Ok(super::rollout_exit(&loaded, &results, ExitCode::SUCCESS))
}

/// The connections (and files) of the hosts the check before a spread upgrade reached, kept
/// for the steps after it: one connection per host for the whole run.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<BTreeMap<String, (Connection, HostFiles)>>>);

impl Kept {
    fn keep(&self, host: &str, connection: Connection, files: HostFiles) {
        let mut kept = self.0.lock().expect("not poisoned");
        kept.insert(host.to_string(), (connection, files));
    }

    fn take(&self, host: &str) -> Option<(Connection, HostFiles)> {
        self.0.lock().expect("not poisoned").remove(host)
    }
}

/// Before the rollout, when Synapse's image changes in a deployment spread over several of
/// the hosts (`synprov::apply::spread`): every host of it checks the new config with the
/// new image, then, if none refused, the workers on the hosts other than main's stop; the
/// rollout then upgrades main first and starts them after. Returns the exit status when it
/// stops there (a host refused or failed: nothing was touched, or interrupted). The
/// connections it opens are `kept` for the rollout.
fn upgrade_spread(
    loaded: &Arc<super::Loaded>,
    target: &Target,
    options: &Options,
    kept: &Kept,
) -> Option<ExitCode> {
    let inventory = &loaded.inventory;
    let selected: Vec<&str> = loaded.hosts.iter().map(String::as_str).collect();
    let spread: Vec<String> = (inventory.deployments.iter())
        .filter(|(_, d)| d.is_spread() && d.hosts().iter().any(|h| selected.contains(h)))
        .map(|(name, _)| name.clone())
        .collect();
    if spread.is_empty() {
        return None;
    }
    let hosts: Vec<String> = (selected.iter())
        .filter(|h| {
            spread
                .iter()
                .any(|d| inventory.deployments[d].hosts().contains(h))
        })
        .map(|h| h.to_string())
        .collect();
    // The spread deployments upgrading, by host.
    let upgrading = Arc::new(Mutex::new(BTreeMap::<String, Vec<String>>::new()));
    let (shared, found, wanted) = (Arc::clone(loaded), Arc::clone(&upgrading), spread.clone());
    let keep = kept.clone();
    let check = move |host: &str, step: &dyn Fn(String)| {
        let (connection, prepared, files) = super::connect_and_prepare(&shared, host, step)?;
        let report = |_: &str, message: &str| step(message.to_string());
        let checked = apply::spread::check(&connection, &files, &prepared, &wanted, &report)
            .map_err(|e| super::failure(e.into()))?;
        keep.keep(host, connection, files);
        let count = checked.len();
        if count > 0 {
            found
                .lock()
                .expect("not poisoned")
                .insert(host.to_string(), checked);
        }
        Ok((count, 0))
    };
    let checked = super::roll_out_on(loaded, target, hosts.clone(), false, false, Arc::new(check));
    let upgrading = std::mem::take(&mut *upgrading.lock().expect("not poisoned"));
    let refused = super::unfinished(&checked);
    if !refused.is_empty() {
        eprintln!(
            "Synapse's new image was not checked on {}: no host was touched",
            refused.join(", ")
        );
        return Some(super::rollout_exit(loaded, &checked, ExitCode::FAILURE));
    }
    let deployments: Vec<String> = (upgrading.values().flatten().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Their workers would start on the new image before main runs it.
    let without_main: Vec<String> = (deployments.iter())
        .filter(|d| !selected.contains(&inventory.deployments[*d].host.as_str()))
        .map(|d| format!("{d} (main on {})", inventory.deployments[d].host))
        .collect();
    if !without_main.is_empty() {
        eprintln!(
            "Synapse's image changes in {}: apply its main host too (--limit), which upgrades first; nothing was touched",
            without_main.join(", ")
        );
        return Some(ExitCode::FAILURE);
    }
    // The hosts of their workers alone: main's host stops its own in its apply.
    let workers_only: Vec<String> = (hosts.iter())
        .filter(|h| {
            deployments.iter().any(|d| {
                let d = &inventory.deployments[d];
                d.host != **h && d.hosts().contains(&h.as_str())
            })
        })
        .cloned()
        .collect();
    if workers_only.is_empty() {
        return None;
    }
    if !target.json {
        println!(
            "{}: the new Synapse image accepts the config on every host; stopping the workers on {} until main runs it",
            deployments.join(", "),
            workers_only.join(", ")
        );
    }
    let (origin, keep) = (options.origin.clone(), kept.clone());
    let stop = move |host: &str, step: &dyn Fn(String)| {
        // Every host here was checked, and its connection kept.
        let Some((connection, files)) = keep.take(host) else {
            return Err(Failure::Error(format!(
                "{host}: no connection kept from the check"
            )));
        };
        let report = |_: &str, message: &str| step(message.to_string());
        let stopped = apply::host_facts(&connection)
            .and_then(|facts| {
                apply::spread::stop_workers(
                    &connection,
                    &files,
                    &facts.compose,
                    &deployments,
                    &origin,
                    &report,
                )
            })
            .map_err(|e| super::failure(e.into()))?;
        keep.keep(host, connection, files);
        Ok((stopped, 0))
    };
    let stopped = super::roll_out_on(loaded, target, workers_only, false, false, Arc::new(stop));
    if !super::unfinished(&stopped).is_empty() {
        return Some(super::rollout_exit(loaded, &stopped, ExitCode::FAILURE));
    }
    None
}

/// A saved plan and what its hosts are checked with.
struct Against {
    loaded: Arc<super::Loaded>,
    plan: SavedPlan,
    /// The plan file.
    path: std::path::PathBuf,
    /// The command that saves a new plan, for the help of a refusal.
    remake: String,
}

impl Against {
    /// The host prepared again, if it still matches its saved plan.
    fn matching(
        &self,
        host: &str,
        open: Option<Connection>,
        step: &dyn Fn(String),
    ) -> Result<((Connection, Prepared, HostFiles), SavedHost), Failure> {
        let saved = self
            .plan
            .host(host)
            .ok_or_else(|| format!("{host}: not in the plan {}", self.path.display()))?;
        let (connection, prepared, files) = super::prepare_on(&self.loaded, host, open, step)?;
        let now = SavedHost::of(&files, &prepared, self.plan.files_only);
        let differences = saved_plan::differences(saved, &now);
        if differences.is_empty() {
            Ok(((connection, prepared, files), now))
        } else {
            Err(Failure::Error(super::failed(miette::miette!(
                help = format!(
                    "the plan was made against what the host had then: review a new plan (`{}`)",
                    self.remake
                ),
                "{host}: {}",
                differences.join(&format!("\n{host}: "))
            ))))
        }
    }
}

/// What applies one prepared host: the settings of the apply, and whether a host left
/// unhealthy is rolled back.
struct HostApply {
    options: Options,
    rollback_on_failure: bool,
    color: bool,
}

impl HostApply {
    fn new(
        loaded: &super::Loaded,
        target: &Target,
        command: String,
        files_only: bool,
        no_backup: bool,
    ) -> Self {
        HostApply {
            options: Options {
                files_only,
                health_timeout: Duration::from_secs(loaded.inventory.rollout.health_timeout_secs),
                origin: Origin::here(&command, Some(loaded.inventory_sha256.clone())),
                keep_generations: loaded.inventory.rollout.keep_generations,
                backup: !no_backup,
                restore_db: Default::default(),
            },
            rollback_on_failure: loaded.inventory.rollout.rollback_on_failure,
            color: ui::progress::Mode::choose(target.json) == ui::progress::Mode::Live,
        }
    }

    /// Shows the host's plan (`record`), carries it out and verifies it; a host left
    /// unhealthy is rolled back when `[rollout]` says so. Returns (changes, unchanged).
    fn run(
        &self,
        (connection, prepared, files): &(Connection, Prepared, HostFiles),
        record: &SavedHost,
        step: &dyn Fn(String),
    ) -> Result<(usize, usize), Failure> {
        let options = &self.options;
        step(
            ui::plan::show(record, Some((files, prepared)), self.color)
                .trim_end()
                .to_string(),
        );
        let report = |_: &str, message: &str| step(message.to_string());
        match apply::apply(connection, files, prepared, options, &report) {
            Ok(outcome) => {
                step(format!(
                    "{} change(s) applied, {} listener(s) healthy",
                    outcome.changes, outcome.healthy
                ));
                Ok((outcome.changes, record.unchanged()))
            }
            Err(error)
                if error.undone_always()
                    || (error.left_unhealthy() && self.rollback_on_failure) =>
            {
                apply::audit_failure(connection, files, &options.origin, &error);
                step(if error.undone_always() {
                    "the certificate was refused: rolling back".into()
                } else {
                    "unhealthy: rolling back".into()
                });
                let rolled = roll_back(connection, files, options, &report);
                let help = miette::Diagnostic::help(&error)
                    .map(|help| format!("\n  help: {help}"))
                    .unwrap_or_default();
                Err(Failure::Error(format!("{error}; {rolled}{help}")))
            }
            Err(error) => {
                apply::audit_failure(connection, files, &options.origin, &error);
                Err(super::failure(error.into()))
            }
        }
    }
}

/// Puts each deployment of `files` back on its current generation: what ran before this
/// apply.
fn roll_back(
    connection: &Connection,
    files: &HostFiles,
    options: &Options,
    report: apply::Report,
) -> String {
    let deployments: Vec<(String, String)> = files
        .deployments
        .iter()
        .map(|d| (d.deployment.clone(), d.deploy_dir.clone()))
        .collect();
    let options = Options {
        origin: Origin {
            command: "rollback (after a failed apply)".into(),
            ..options.origin.clone()
        },
        // The dump beside the current generation is what ran before: never overwritten.
        backup: false,
        ..options.clone()
    };
    let rolled = rollback::prepare_rollback(
        connection,
        files.docker_source,
        &deployments,
        To::Current,
        false,
    )
    .and_then(|(files, prepared, _)| apply::apply(connection, &files, &prepared, &options, report));
    match rolled {
        Ok(outcome) => format!("rolled back, {} listener(s) healthy", outcome.healthy),
        Err(error @ ApplyError::Generation(_)) => format!("no rollback: {error}"),
        Err(error) => format!("the rollback failed too: {error}"),
    }
}
