//! The steps on one host: gather facts and plan; then, unless it is a dry run, take the
//! host's lock, install and start Docker, send images and the Compose plugin, write the
//! files, bring the stack up and verify every process's health.

pub mod archive;
pub mod backup_key;
pub mod certificate;
pub mod compose;
pub mod destroy;
pub mod docker;
pub mod files;
pub mod images;
pub mod leftovers;
mod metered;
pub mod restore;
pub mod rollback;
pub mod spread;
pub mod timers;
pub mod unlock;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use files::Fetched;
use metered::Metered;
pub use metered::megabytes;
use timers::{Timer, TimerChange};

use miette::Diagnostic;
use thiserror::Error;

use crate::facts::{Compose, Facts};
use crate::gather::{self, DeploymentQuery};
use crate::generations::{self, GenerationError, Origin, Record};
use crate::health::HealthTarget;
use crate::plan::{self, Change, DeploymentPlan, HostPlan, MAIN_SERVICE, Upgrade};
use crate::render::{DeploymentFiles, HostFiles, HostSurvey};
use crate::shell::Script;
use crate::transport::watch::Step;
use crate::transport::{Connection, LockGuard, LockRecord, Locking, OutputLimit, TransportError};
use crate::verify::{self, Deadline};

#[derive(Debug, Error, Diagnostic)]
pub enum ApplyError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] TransportError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Generation(#[from] GenerationError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Facts(#[from] gather::FactsError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    HostData(#[from] crate::host_data::HostDataError),

    /// `holder` as [`ApplyError::locked`] describes it.
    #[error("{host}: {dir} is locked by {holder}")]
    #[diagnostic(help(
        "wait for that run to finish: its lock is released as soon as it ends or loses its connection{hung}"
    ))]
    Locked {
        host: String,
        dir: String,
        holder: String,
        /// How to end the run if it hangs, when its record says where it runs.
        hung: String,
    },

    /// The first line ends with the output's last line, usually the reason (the recap of a
    /// rollout shows only the first line).
    #[error("{host}: {step} failed: {}\n{tail}", crate::text::last_line(.tail))]
    Step {
        host: String,
        step: String,
        tail: String,
    },

    #[error("image {image} is not on this machine, so it cannot be preloaded")]
    #[diagnostic(help(
        "build or pull it here first (`docker image inspect {image}`), or set `preload = false`"
    ))]
    MissingImage { image: String },

    #[error("the images {images} could not be saved on this machine: {reason}")]
    #[diagnostic(help(
        "`docker save` writes them to a temporary file (TMPDIR, /tmp by default): make room there, or point TMPDIR at a disk with room"
    ))]
    SaveImages { images: String, reason: String },

    #[error("{host}: {count} listener(s) unhealthy after the health timeout")]
    #[diagnostic(help("the failing workers and their last log lines are shown above"))]
    Unhealthy { host: String, count: usize },

    /// Compose could not bring the stack up on the new files: typically a Synapse process
    /// that exits on them, which the workers that depend on it wait for in vain.
    #[error("{host}: the stack did not come up on the new files: {}\n{tail}", crate::text::last_line(.tail))]
    #[diagnostic(help(
        "`synprov rollback --host {host}` puts the previous files back (`rollback_on_failure = true` does it at once)"
    ))]
    NotUp { host: String, tail: String },

    #[error("{host}: Synapse {image} refuses the new config; nothing was changed: {}\n{tail}", crate::text::last_line(.tail))]
    #[diagnostic(help(
        "fix the setting Synapse names (see its upgrade notes for {image}), then apply again"
    ))]
    ConfigRefused {
        host: String,
        image: String,
        tail: String,
    },

    /// Main did not come up healthy on its new image: the workers stay stopped, so that no
    /// older worker runs against a database main may have migrated.
    #[error("{host}: main is not healthy on {image}; the workers are stopped: {}", crate::text::last_line(.reason))]
    #[diagnostic(help(
        "`synprov logs`/`docker compose logs synapse` on the host say why; `synprov rollback --host {host}` returns to the generation before (add `--restore-db` to put back the database dumped before the upgrade)"
    ))]
    UpgradeStopped {
        host: String,
        image: String,
        reason: String,
    },

    /// The ACME CA did not issue the deployment's certificate.
    #[error("{host}: {deployment}: the ACME CA did not issue the certificate: {reason}")]
    #[diagnostic(help("{fix}"))]
    Certificate {
        host: String,
        deployment: String,
        reason: String,
        fix: String,
    },
}

impl ApplyError {
    /// The host is left on the new files with processes that do not run healthy on them:
    /// what `rollback_on_failure` undoes.
    pub fn left_unhealthy(&self) -> bool {
        matches!(
            self,
            ApplyError::Unhealthy { .. } | ApplyError::NotUp { .. }
        )
    }

    /// The host runs the new files, but they cannot stay: the CA refused the certificate
    /// they ask for. Always put back the generation before, so that nothing is left
    /// half-switched (the certificate Nginx serves never changed).
    pub fn undone_always(&self) -> bool {
        matches!(self, ApplyError::Certificate { .. })
    }

    /// The operator interrupted the apply: the host did not fail it.
    pub fn interrupted(&self) -> bool {
        match self {
            ApplyError::Transport(e) | ApplyError::Facts(gather::FactsError::Transport(e)) => {
                e.interrupted()
            }
            _ => false,
        }
    }

    /// The result of a failed command as the audit log records it: its first line.
    pub fn audit_result(&self) -> String {
        let first = self.to_string().lines().next().unwrap_or("").to_string();
        if self.interrupted() {
            format!("interrupted: {first}")
        } else {
            format!("failed: {first}")
        }
    }

    /// The lock of `dir` on `host` is held, by the run `record` names if its lock file
    /// has a readable one.
    pub fn locked(host: &str, dir: &str, record: Option<&LockRecord>) -> ApplyError {
        ApplyError::Locked {
            host: host.to_string(),
            dir: dir.to_string(),
            holder: crate::transport::lock::describe(record, chrono::Utc::now()),
            hung: record.map_or(String::new(), |r| {
                format!(
                    " (if it hangs, end it: pid {} on {}, or pid {} on {host}, which holds the lock)",
                    r.holder.pid, r.holder.controller, r.host_pid
                )
            }),
        }
    }
}

/// Takes the lock of the deployment in `dir` for the run `origin` describes, or fails at once
/// naming the run that holds it.
pub fn lock(connection: &Connection, dir: &str, origin: &Origin) -> Result<LockGuard, ApplyError> {
    match connection.lock(dir, &origin.holder())? {
        Locking::Taken(guard) => Ok(guard),
        Locking::Busy(record) => Err(ApplyError::locked(
            connection.host_name(),
            dir,
            record.as_ref(),
        )),
    }
}

/// What was found on a host and what would change there.
pub struct Prepared {
    pub facts: Facts,
    pub plan: HostPlan,
    /// Current contents of the files that would change or go, by (deployment, path); the
    /// size alone of those over [`files::MAX_DIFF_BYTES`].
    pub old: BTreeMap<(String, String), Fetched>,
    /// The ID on this machine of each image to preload: what `load_images` would send.
    pub local_images: BTreeMap<String, String>,
    /// The archive of `load_images`, when some are sent.
    pub saved: Option<Arc<images::Saved>>,
}

/// Progress, as the engine reports it: the host and a short description of the step.
pub type Report<'a> = &'a dyn Fn(&str, &str);

/// The facts of one host and the hashes of the files `survey` names there, in one round
/// trip: what [`prepare`] plans against.
pub fn gather(
    connection: &Connection,
    survey: &HostSurvey,
    local_images: &BTreeMap<String, String>,
) -> Result<Facts, ApplyError> {
    let queries: Vec<DeploymentQuery> = survey
        .deployments
        .iter()
        .map(|d| DeploymentQuery {
            name: &d.deployment,
            dir: &d.deploy_dir,
            paths: d.paths.iter().map(String::as_str).collect(),
            main_image: d.preload,
        })
        .collect();
    let images: Vec<String> = local_images.keys().cloned().collect();
    connection.begin(Step::Facts)?;
    Ok(gather::gather(connection, &queries, &images)?)
}

/// The plan of `files` on one host against its `facts` (from [`gather`], for the same
/// paths), with the current contents of the files that change, for the diff (one more
/// round trip when some do).
pub fn prepare(
    connection: &Connection,
    files: &HostFiles,
    facts: Facts,
    local_images: &BTreeMap<String, String>,
    saved_images: &images::SavedImages,
) -> Result<Prepared, ApplyError> {
    let mut plan = plan::plan_host(files, &facts, local_images);
    let mut old = BTreeMap::new();
    let fetches: Vec<files::Fetch> = plan
        .deployments
        .iter()
        .map(|deployment| files::Fetch {
            dir: &deployment.dir,
            paths: deployment
                .changes
                .iter()
                .filter(|c| c.change != Change::Create)
                .map(|c| c.path.as_str())
                .collect(),
        })
        .collect();
    if fetches.iter().any(|f| !f.paths.is_empty()) {
        let output = step(
            connection,
            "reading the files to change",
            &files::fetch_script(&fetches, files::MAX_DIFF_BYTES),
        )?;
        for (index, contents) in files::parse_fetch(&output, files::MAX_DIFF_BYTES) {
            let Some(deployment) = plan.deployments.get(index) else {
                continue;
            };
            for (path, text) in contents {
                old.insert((deployment.deployment.clone(), path), text);
            }
        }
    }
    // Services whose definition changes are recreated by Compose itself: not twice.
    for deployment in &mut plan.deployments {
        if let Some(new) = files
            .deployments
            .iter()
            .find(|d| d.deployment == deployment.deployment)
            .and_then(|d| d.files.iter().find(|f| f.path == "docker-compose.yml"))
        {
            // One too large for a diff is read as none: Compose recreates what changed.
            let old_compose = old
                .get(&(deployment.deployment.clone(), new.path.clone()))
                .and_then(Fetched::text)
                .unwrap_or_default();
            deployment.read_compose_change(old_compose, &new.contents);
        }
    }
    // Last, with nothing asked of the host after it: saving the images may take longer
    // than the step of the facts may.
    let held = &facts.layer_chains;
    let saved = saved_images.saved(&plan.load_images, local_images, held)?;
    if let Some(saved) = &saved {
        plan.sending = saved.sending(held, local_images);
    }
    Ok(Prepared {
        facts,
        plan,
        old,
        local_images: local_images.clone(),
        saved,
    })
}

/// The host's facts alone (no deployment files hashed), in one round trip.
pub fn host_facts(connection: &Connection) -> Result<Facts, ApplyError> {
    connection.begin(Step::Facts)?;
    Ok(gather::gather(connection, &[], &[])?)
}

/// Settings of one apply.
#[derive(Debug, Clone)]
pub struct Options {
    /// Write files only: no Docker install, no images, no Compose, no health checks, no
    /// generation recorded.
    pub files_only: bool,
    pub health_timeout: Duration,
    /// Who applies, and with which command: recorded with each generation and in the
    /// audit log.
    pub origin: Origin,
    /// Generations kept per deployment (`[rollout] keep_generations`).
    pub keep_generations: u32,
    /// Before an upgrade of Synapse, dump Postgres beside the current generation (`apply
    /// --no-backup` turns it off; rollbacks never dump: the dump kept is what ran before).
    pub backup: bool,
    /// Put the database dumped beside a generation back while every Synapse process is
    /// stopped (`rollback --restore-db`): the generation's number, by deployment.
    pub restore_db: BTreeMap<String, u32>,
}

/// How an apply ended on a host.
#[derive(Debug)]
pub struct Outcome {
    pub changes: usize,
    pub healthy: usize,
    /// The generations recorded, by deployment.
    pub generations: Vec<(String, u32)>,
}

/// Runs `script` on the host: its standard output, or, when it fails (a refusal of the
/// guard included), an error naming the step with the last lines it printed.
pub(crate) fn step(
    connection: &Connection,
    name: &str,
    script: &Script,
) -> Result<String, ApplyError> {
    step_within(connection, name, script, OutputLimit::ANY)
}

/// [`step`] for a script whose caller knows how much it may print ([`OutputLimit`]).
pub(crate) fn step_within(
    connection: &Connection,
    name: &str,
    script: &Script,
    limit: OutputLimit,
) -> Result<String, ApplyError> {
    let output = connection.run_script_within(script, limit)?;
    if output.success() {
        Ok(output.stdout_text())
    } else {
        Err(ApplyError::Step {
            host: connection.host_name().to_string(),
            step: name.to_string(),
            tail: output.tail(20),
        })
    }
}

/// Carries out `prepared.plan` on the host, verifies it, and records a generation of each
/// deployment that changed (or whose last apply did not finish).
pub fn apply(
    connection: &Connection,
    files: &HostFiles,
    prepared: &Prepared,
    options: &Options,
    report: Report,
) -> Result<Outcome, ApplyError> {
    let name = connection.host_name();
    let plan = &prepared.plan;
    // Nothing to change, nothing to lock: a no-op apply costs what a plan costs.
    let mut locks = Vec::new();
    let changing = plan.change_count() > 0 || !options.restore_db.is_empty();
    if changing {
        connection.begin(Step::Lock)?;
    }
    for deployment in plan.deployments.iter().filter(|_| changing) {
        locks.push(lock(connection, &deployment.dir, &options.origin)?);
    }

    let compose = if options.files_only {
        prepared.facts.compose.clone()
    } else {
        install(connection, files, prepared, report)?
    };

    for (deployment, deployment_files) in plan.deployments.iter().zip(&files.deployments) {
        apply_deployment(
            connection,
            plan,
            deployment,
            deployment_files,
            &compose,
            options,
            report,
        )?;
    }

    if options.files_only {
        return Ok(Outcome {
            changes: plan.change_count(),
            healthy: 0,
            generations: Vec::new(),
        });
    }
    let dirs: Vec<&str> = plan.deployments.iter().map(|d| d.dir.as_str()).collect();
    let targets: Vec<HealthTarget> = files
        .deployments
        .iter()
        .flat_map(|d| d.health.iter().cloned())
        .collect();
    let healthy = verify_host(
        connection,
        &targets,
        &compose,
        &dirs,
        options.health_timeout,
        report,
    )?;
    let changed = |deployment: &DeploymentPlan| {
        !deployment.changes.is_empty() || deployment.interrupted || deployment.upgrade.is_some()
    };
    for (deployment, deployment_files) in plan.deployments.iter().zip(&files.deployments) {
        if deployment_files.acme() && changed(deployment) {
            issue_certificate(connection, deployment_files, report)?;
        }
    }
    let mut recorded = Vec::new();
    for (deployment, deployment_files) in plan.deployments.iter().zip(&files.deployments) {
        if changed(deployment) {
            let number = record(connection, deployment_files, prepared, options)?;
            report(
                name,
                &format!("{}: generation {number} recorded", deployment.deployment),
            );
            recorded.push((deployment.deployment.clone(), number));
        }
    }
    drop(locks);
    Ok(Outcome {
        changes: plan.change_count(),
        healthy,
        generations: recorded,
    })
}

/// Starts the certificate renewal of an ACME deployment now and waits for it: the first
/// certificate, or one for changed names, is issued (a valid one is left alone). The CA's
/// refusal fails the host with its reason and what to do.
fn issue_certificate(
    connection: &Connection,
    files: &DeploymentFiles,
    report: Report,
) -> Result<(), ApplyError> {
    let name = connection.host_name();
    let timer = Timer::acme(&files.deployment);
    connection.begin(Step::Certificate)?;
    report(
        name,
        &format!(
            "{}: asking the ACME CA for its certificate",
            files.deployment
        ),
    );
    let said = step(
        connection,
        "issuing the certificate",
        &certificate::issue_script(&files.deploy_dir, &timer),
    )?;
    match certificate::parse_issue(&said) {
        certificate::Issue::Done(run) => {
            if let Some(run) = run {
                report(
                    name,
                    &format!("{}: {}", files.deployment, run.summary(chrono::Utc::now())),
                );
            }
            Ok(())
        }
        certificate::Issue::Failed(reason) => Err(ApplyError::Certificate {
            host: name.to_string(),
            deployment: files.deployment.clone(),
            fix: certificate::fix(&reason, &timer.unit),
            reason,
        }),
    }
}

/// What the host lacks for the stacks: Docker installed or started, Compose, the images.
/// Returns the Compose to use.
pub(crate) fn install(
    connection: &Connection,
    files: &HostFiles,
    prepared: &Prepared,
    report: Report,
) -> Result<Compose, ApplyError> {
    let name = connection.host_name();
    let plan = &prepared.plan;
    let mut compose = prepared.facts.compose.clone();
    if plan.install_docker || plan.start_docker {
        report(
            name,
            if plan.install_docker {
                "installing Docker"
            } else {
                "starting Docker"
            },
        );
        connection.begin(Step::Install)?;
        let said = step(
            connection,
            "installing Docker",
            &docker::install_script(files.docker_source, plan.install_docker),
        )?;
        if !said.trim().is_empty() {
            report(name, said.trim());
        }
    }
    if plan.install_compose {
        connection.begin(Step::Install)?;
        compose = install_compose(connection, report)?;
    }
    if !plan.load_images.is_empty() {
        connection.begin(Step::Image)?;
        report(name, &images::loading(&plan.load_images));
        let say = |message: String| report(name, &message);
        match &prepared.saved {
            Some(saved) => images::load(connection, saved, &prepared.facts.layer_chains, &say)?,
            None => images::stream(connection, &plan.load_images, &say)?,
        }
    }
    Ok(compose)
}

/// Carries out the plan of one deployment: before an upgrade, the config check and the
/// dump; its files; the stack brought up on them (main first when upgrading or restoring the
/// database); what removed workers left.
fn apply_deployment(
    connection: &Connection,
    plan: &HostPlan,
    deployment: &DeploymentPlan,
    deployment_files: &DeploymentFiles,
    compose: &Compose,
    options: &Options,
    report: Report,
) -> Result<(), ApplyError> {
    let name = connection.host_name();
    let restore_db = options.restore_db.get(&deployment.deployment).copied();
    let runs_main = !options.files_only
        && (deployment_files.health.iter()).any(|t| t.service.as_deref() == Some(MAIN_SERVICE));
    let ordered = runs_main && (deployment.upgrade.is_some() || restore_db.is_some());
    // A stack from a new Compose file: nothing of it runs yet.
    let new_stack = runs_main && !ordered && deployment.creates(compose::COMPOSE_FILE);
    if ordered && let Some(upgrade) = &deployment.upgrade {
        check_and_dump(
            connection,
            deployment_files,
            deployment,
            upgrade,
            compose,
            options,
            report,
        )?;
    }
    let timers: Vec<(Timer, TimerChange)> = (Timer::all(&deployment.deployment).into_iter())
        .filter(|_| !options.files_only)
        .filter_map(|timer| {
            let change = timer.change(&deployment.changes)?;
            Some((timer, change))
        })
        .collect();
    for (timer, _) in timers.iter().filter(|(_, c)| *c == TimerChange::Remove) {
        connection.begin(Step::Files)?;
        let doing = format!("removing the {} timer", timer.what);
        report(name, &format!("{}: {doing}", deployment.deployment));
        step(connection, &doing, &timer.remove_script())?;
    }
    if !deployment.changes.is_empty() {
        connection.begin(Step::Files)?;
        report(
            name,
            &format!(
                "{}: writing {} file(s)",
                deployment.deployment,
                deployment.changes.len()
            ),
        );
        step(
            connection,
            "writing files",
            &files::write_script(deployment_files, deployment, !options.files_only),
        )?;
    }
    if let Some(remote) = (deployment_files.backup_remote.as_ref()).filter(|_| !options.files_only)
    {
        backup_key::see_to(
            connection,
            &deployment.deployment,
            &deployment.dir,
            remote,
            (deployment.changes.iter()).any(|c| c.path.starts_with("backup/")),
            report,
        )?;
    }
    for (timer, _) in timers.iter().filter(|(_, c)| *c == TimerChange::Install) {
        let doing = format!("installing the {} timer", timer.what);
        report(name, &format!("{}: {doing}", deployment.deployment));
        step(connection, &doing, &timer.install_script(&deployment.dir))?;
    }
    if !options.files_only
        && (!deployment.changes.is_empty()
            || deployment.interrupted
            || restore_db.is_some()
            || deployment.upgrade.is_some()
            || plan.install_docker
            || !plan.load_images.is_empty())
    {
        if deployment_files.acme() {
            connection.begin(Step::Certificate)?;
            step(
                connection,
                "making a placeholder certificate",
                &certificate::placeholder_script(&deployment.dir),
            )?;
        }
        connection.begin(Step::ComposeUp)?;
        report(
            name,
            &format!("{}: bringing the stack up", deployment.deployment),
        );
        let sockets: Vec<String> = deployment_files
            .health
            .iter()
            .filter(|t| {
                t.service
                    .as_ref()
                    .is_some_and(|s| deployment.restart.contains(s))
            })
            .filter_map(HealthTarget::socket_on_host)
            .collect();
        if ordered {
            start_main_first(
                connection,
                deployment_files,
                deployment,
                compose,
                restore_db,
                options.health_timeout,
                report,
            )?;
        } else if new_stack {
            start_new_main(
                connection,
                deployment_files,
                deployment,
                compose,
                options.health_timeout,
                report,
            )?;
        }
        let main = if ordered || new_stack {
            compose::Main::Answered
        } else {
            compose::Main::ComposeWaits
        };
        let output = connection.run_script(&compose::up_script(
            &deployment.dir,
            compose,
            &deployment.restart,
            &deployment.reload,
            &sockets,
            main,
        ))?;
        if !output.success() {
            return Err(ApplyError::NotUp {
                host: name.to_string(),
                tail: output.tail(20),
            });
        }
    }
    if !deployment.removed_workers.is_empty() {
        connection.begin(Step::Files)?;
        let names: Vec<&str> = (deployment.removed_workers.iter())
            .map(|w| w.name.as_str())
            .collect();
        report(
            name,
            &format!(
                "{}: removing the logs and sockets of {}",
                deployment.deployment,
                names.join(", ")
            ),
        );
        step(
            connection,
            "removing the logs and sockets of removed workers",
            &leftovers::script(&deployment.dir, &deployment.removed_workers),
        )?;
    }
    Ok(())
}

/// Before an upgrade touches anything: Synapse's config check with the new image on the new
/// files, then (unless turned off) a dump of Postgres beside the current generation.
fn check_and_dump(
    connection: &Connection,
    files: &DeploymentFiles,
    plan: &DeploymentPlan,
    upgrade: &Upgrade,
    compose: &Compose,
    options: &Options,
    report: Report,
) -> Result<(), ApplyError> {
    let name = connection.host_name();
    check_config(connection, files, plan, upgrade, report)?;
    if !options.backup {
        return Ok(());
    }
    let listing = rollback::list(connection, &plan.dir)?;
    let Some(current) = listing.current() else {
        report(
            name,
            &format!(
                "{}: no generation to keep a database dump beside",
                plan.deployment
            ),
        );
        return Ok(());
    };
    step(
        connection,
        "dumping the database",
        &upgrade::dump_script(&plan.dir, compose, current.number),
    )?;
    report(
        name,
        &format!(
            "{}: database dumped beside generation {}",
            plan.deployment, current.number
        ),
    );
    Ok(())
}

/// Synapse's config check with the new image (already on the host) on the new files of
/// `plan`: no process touched; refused with Synapse's message.
pub(crate) fn check_config(
    connection: &Connection,
    files: &DeploymentFiles,
    plan: &DeploymentPlan,
    upgrade: &Upgrade,
    report: Report,
) -> Result<(), ApplyError> {
    let name = connection.host_name();
    connection.begin(Step::Backup)?;
    report(
        name,
        &format!(
            "{}: upgrading {upgrade}: checking the config with the new image",
            plan.deployment
        ),
    );
    let output = connection.run_script(&upgrade::check_script(files, plan, &upgrade.to))?;
    if !output.success() {
        return Err(ApplyError::ConfigRefused {
            host: name.to_string(),
            image: upgrade.to.clone(),
            tail: output.tail(20),
        });
    }
    Ok(())
}

/// The Compose services of the Synapse workers of `files` (each once): what an upgrade
/// stops before main moves to the new image.
pub(crate) fn synapse_workers(files: &DeploymentFiles) -> Vec<String> {
    (files.health.iter())
        .filter(|t| matches!(t.probe, crate::health::Probe::Synapse(_)))
        .filter_map(|t| t.service.clone())
        .filter(|s| s != MAIN_SERVICE)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Stops the workers (and main, to restore the database while nothing uses it), then
/// starts main alone and waits for it to be healthy: it runs the schema migrations before
/// any worker starts on the new image.
fn start_main_first(
    connection: &Connection,
    files: &DeploymentFiles,
    plan: &DeploymentPlan,
    compose: &Compose,
    restore_db: Option<u32>,
    timeout: Duration,
    report: Report,
) -> Result<(), ApplyError> {
    let name = connection.host_name();
    report(name, &format!("{}: stopping the workers", plan.deployment));
    step(
        connection,
        "stopping the workers",
        &upgrade::stop_script(&plan.dir, compose, &synapse_workers(files)),
    )?;
    if let Some(number) = restore_db {
        report(
            name,
            &format!(
                "{}: restoring the database dumped beside generation {number}",
                plan.deployment
            ),
        );
        step(
            connection,
            "stopping main",
            &upgrade::stop_script(&plan.dir, compose, &[MAIN_SERVICE.to_string()]),
        )?;
        connection.go_on_with(Step::Backup)?;
        step(
            connection,
            "restoring the database",
            &upgrade::restore_script(&plan.dir, compose, number),
        )?;
    }
    connection.go_on_with(Step::ComposeUp)?;
    report(name, &format!("{}: starting main alone", plan.deployment));
    step(
        connection,
        "starting main",
        &compose::main_script(&plan.dir, compose, compose::Dependencies::Running),
    )?;
    let failing = main_answers(connection, files, compose, timeout, report);
    if let Some((_, reason)) = failing.first() {
        return Err(ApplyError::UpgradeStopped {
            host: name.to_string(),
            image: plan
                .upgrade
                .as_ref()
                .map_or_else(|| "its image".to_string(), |u| u.to.clone()),
            reason: reason.clone(),
        });
    }
    report(
        name,
        &format!("{}: main is healthy; starting the workers", plan.deployment),
    );
    Ok(())
}

/// Starts a new stack's main first, with Postgres and Redis, and waits for it to answer
/// `/health`: it creates the database's schema, which every worker needs. Left to Compose,
/// the workers would start at Docker's next healthcheck of main, up to its interval (5 s)
/// after main answers; synprov asks main every half second.
fn start_new_main(
    connection: &Connection,
    files: &DeploymentFiles,
    plan: &DeploymentPlan,
    compose: &Compose,
    timeout: Duration,
    report: Report,
) -> Result<(), ApplyError> {
    let name = connection.host_name();
    report(
        name,
        &format!(
            "{}: starting main, Postgres and Redis first",
            plan.deployment
        ),
    );
    step(
        connection,
        "starting main",
        &compose::main_script(&plan.dir, compose, compose::Dependencies::Start),
    )?;
    let failing = main_answers(connection, files, compose, timeout, report);
    if !failing.is_empty() {
        return Err(ApplyError::Unhealthy {
            host: name.to_string(),
            count: failing.len(),
        });
    }
    report(
        name,
        &format!("{}: main is healthy; starting the rest", plan.deployment),
    );
    Ok(())
}

/// Waits until every listener of main answers `/health`, or `timeout`; returns those still
/// failing then, whose logs are reported.
fn main_answers(
    connection: &Connection,
    files: &DeploymentFiles,
    compose: &Compose,
    timeout: Duration,
    report: Report,
) -> Vec<(HealthTarget, String)> {
    let main: Vec<HealthTarget> = (files.health.iter())
        .filter(|t| matches!(t.probe, crate::health::Probe::Synapse(_)))
        .filter(|t| t.service.as_deref() == Some(MAIN_SERVICE))
        .cloned()
        .collect();
    let failing = verify::wait_healthy(connection, &main, timeout);
    if !failing.is_empty() {
        report_failures(connection, compose, &failing, report);
    }
    failing
}

/// Appends a failed command to the audit log of each deployment of `files` (best effort:
/// the connection may be what failed).
pub fn audit_failure(
    connection: &Connection,
    files: &HostFiles,
    origin: &Origin,
    error: &ApplyError,
) {
    let result = error.audit_result();
    for deployment in &files.deployments {
        let _ = connection.run_script(&generations::scripts::audit(
            &deployment.deploy_dir,
            &origin.entry(None, &result),
        ));
    }
}

/// Records the generation of a deployment just verified healthy; returns its number.
fn record(
    connection: &Connection,
    files: &DeploymentFiles,
    prepared: &Prepared,
    options: &Options,
) -> Result<u32, ApplyError> {
    let hashes = prepared
        .facts
        .deployments
        .get(&files.deployment)
        .map(|state| state.hashes.clone())
        .unwrap_or_default();
    let record = Record::of(files, &hashes, options.origin.clone());
    let json = serde_json::to_string(&record).expect("a record serializes");
    let paths: Vec<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
    let mut script = generations::scripts::save(
        &files.deploy_dir,
        &paths,
        &json,
        &files.images,
        options.keep_generations,
        &options.origin.entry(None, "ok"),
    );
    script.push(generations::index::register(
        &files.deployment,
        &files.deploy_dir,
    ));
    connection.go_on_with(Step::Files)?;
    let said = step(connection, "recording the generation", &script)?;
    said.lines()
        .find_map(|l| l.strip_prefix("generation=")?.trim().parse().ok())
        .ok_or_else(|| ApplyError::Step {
            host: connection.host_name().to_string(),
            step: "recording the generation".into(),
            tail: said.clone(),
        })
}

/// Verifies a host: `/health` of every Synapse listener and the plugins' checks
/// (`targets`), then every container running healthy by Docker's healthchecks (Postgres,
/// Redis and Nginx included), all within `timeout`. On failure, names the failing workers
/// with the last lines of their logs. Returns the number of healthy checks.
pub fn verify_host(
    connection: &Connection,
    targets: &[HealthTarget],
    compose: &Compose,
    dirs: &[&str],
    timeout: Duration,
    report: Report,
) -> Result<usize, ApplyError> {
    let name = connection.host_name();
    connection.begin(Step::Health(timeout))?;
    report(
        name,
        &format!("verifying /health of {} listener(s)", targets.len()),
    );
    let deadline = Deadline::after(timeout);
    let failing = verify::wait_healthy(connection, targets, timeout);
    if !failing.is_empty() {
        report_failures(connection, compose, &failing, report);
        return Err(ApplyError::Unhealthy {
            host: name.to_string(),
            count: failing.len(),
        });
    }
    let unhealthy = wait_containers_healthy(connection, compose, dirs, deadline)?;
    if let Some((dir, services)) = unhealthy.first() {
        report(
            name,
            &format!("{dir}: containers not healthy: {}", services.join(", ")),
        );
        if let Ok(output) = connection.run_script(&compose::logs_script(dir, compose, services, 15))
        {
            report(name, output.stdout_text().trim_end());
        }
        return Err(ApplyError::Unhealthy {
            host: name.to_string(),
            count: services.len(),
        });
    }
    Ok(targets.len())
}

/// Waits until Docker reports every container of the stacks in `dirs` running healthy, or
/// until `deadline`, one command a round for each stack; returns each directory's services
/// still not healthy then.
fn wait_containers_healthy(
    connection: &Connection,
    compose: &Compose,
    dirs: &[&str],
    deadline: Deadline,
) -> Result<Vec<(String, Vec<String>)>, ApplyError> {
    loop {
        let mut unhealthy = Vec::new();
        for dir in dirs {
            let output = connection
                .run_script(&compose::status_script(dir, compose))?
                .stdout_text();
            let services = unhealthy_services(&output);
            if !services.is_empty() {
                unhealthy.push((dir.to_string(), services));
            }
        }
        if unhealthy.is_empty() || deadline.passed() {
            return Ok(unhealthy);
        }
        std::thread::sleep(deadline.left(Duration::from_millis(500)));
    }
}

/// The services not running healthy in [`compose::status_script`]'s output (`SERVICE
/// STATUS [HEALTH]` lines): a container without a healthcheck (a plugin's, say) counts when
/// it runs.
pub fn unhealthy_services(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let service = words.next()?;
            match (words.next(), words.next()) {
                (_, Some("healthy")) | (Some("running"), None) => None,
                _ => Some(service.to_string()),
            }
        })
        .collect()
}

fn install_compose(connection: &Connection, report: Report) -> Result<Compose, ApplyError> {
    let name = connection.host_name().to_string();
    if let Some(plugin) = docker::local_compose_plugin() {
        let what = format!("sending the Compose v2 plugin ({})", plugin.display());
        report(&name, &what);
        let file = std::fs::File::open(&plugin).map_err(|e| ApplyError::Step {
            host: name.clone(),
            step: "reading the Compose plugin".into(),
            tail: e.to_string(),
        })?;
        let size = file.metadata().map_or(0, |m| m.len());
        let say = |message: String| report(&name, &message);
        let mut file = Metered::with_total(file, &what, size, &say);
        let output = connection.exec(
            &connection.privileged(docker::compose_plugin_install_command()),
            &mut file,
        )?;
        if output.success() {
            return Ok(Compose::V2(output.stdout_text().trim().to_string()));
        }
        report(
            &name,
            &format!(
                "the Compose plugin did not run there ({}); installing docker-compose v1",
                output.tail(1)
            ),
        );
    }
    report(
        &name,
        "installing docker-compose (v1) from the distribution",
    );
    step(
        connection,
        "installing docker-compose",
        &docker::compose_v1_install_script(),
    )?;
    Ok(Compose::V1(String::new()))
}

/// Names the failing workers with the tail of their logs.
fn report_failures(
    connection: &Connection,
    compose: &Compose,
    failing: &[(HealthTarget, String)],
    report: Report,
) {
    let name = connection.host_name();
    let mut by_deployment: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (target, error) in failing {
        report(
            name,
            &format!(
                "UNHEALTHY {} ({}): {} at {}",
                target.process,
                target.deployment,
                error,
                target.host_location()
            ),
        );
        let services = by_deployment.entry(&target.deploy_dir).or_default();
        if let Some(service) = target.service.as_ref().filter(|s| !services.contains(s)) {
            services.push(service.clone());
        }
    }
    for (dir, services) in by_deployment {
        if let Ok(output) =
            connection.run_script(&compose::logs_script(dir, compose, &services, 15))
        {
            report(
                name,
                &format!(
                    "last log lines of {}:\n{}",
                    services.join(", "),
                    output.stdout_text().trim_end()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_counts_healthy_by_its_healthcheck_or_running_without_one() {
        let output = "synapse running healthy\nrooms1 running starting\nplugin running\n\
                      sender1 restarting\ndb running unhealthy\n";
        assert_eq!(unhealthy_services(output), ["rooms1", "sender1", "db"]);
    }

    #[test]
    fn a_failed_step_says_why_in_its_first_line() {
        let error = ApplyError::Step {
            host: "h1".into(),
            step: "docker compose up".into(),
            tail: " Container d-synapse-1  Error\ndependency failed to start: container d-synapse-1 is unhealthy\n\n".into(),
        };
        assert_eq!(
            error.to_string().lines().next(),
            Some(
                "h1: docker compose up failed: dependency failed to start: container d-synapse-1 is unhealthy"
            )
        );
    }
}
