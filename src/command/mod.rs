//! One module per command. Each loads what it needs, calls the library, and prints.

pub mod apply;
pub mod backup;
pub mod check;
pub mod destroy;
pub mod exec;
pub mod history;
pub mod import;
pub mod logs;
pub mod plan;
pub mod plugins;
pub mod render;
pub mod restore;
pub mod rollback;
pub mod show;
pub mod status;
pub mod unlock;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use synprov::apply::images::SavedImages;
use synprov::apply::{ApplyError, Prepared};
use synprov::inventory::{self, Amount, Inventory};
use synprov::plugins::{Limits, Plugins};
use synprov::render::{HostFiles, HostSurvey, Templates};
use synprov::rollout::{self, Failure};
use synprov::saved_plan::SavedPlan;
use synprov::secrets::MasterKey;
use synprov::transport::{ConnectOptions, Connection, TransportError};
use synprov::ui::progress::{self, Mode};

use crate::cli::{HostTarget, Target};

/// The inventory, checked by rendering every file of every host before connecting
/// anywhere (a bad inventory fails before any host is touched), and the chosen hosts with
/// what their facts are gathered for.
pub struct Loaded {
    pub inventory: Inventory,
    /// SHA-256 of the inventory file, recorded with each generation.
    pub inventory_sha256: String,
    /// The chosen hosts. Their files are not kept: at 500 hosts they would be most of
    /// synprov's memory, and each host is rendered once more, with its facts, when reached.
    pub hosts: Vec<String>,
    /// Of each chosen host, its paths and images (by host name).
    surveys: BTreeMap<String, HostSurvey>,
    pub options: ConnectOptions,
    key: MasterKey,
    templates: Templates,
    plugins: Plugins,
    /// The images sent this run: saved once, for every host that lacks them.
    images: SavedImages,
}

impl Loaded {
    /// For a run that writes files only: no image is saved, nor sized in a plan.
    pub fn files_only(self, files_only: bool) -> Self {
        if !files_only {
            return self;
        }
        Loaded {
            images: SavedImages::not_sent(),
            ..self
        }
    }

    /// The SHA-256 of the templates in effect, recorded in a saved plan.
    pub fn templates_sha256(&self) -> &str {
        self.templates.sha256()
    }

    /// The files of `host`, sized with its `facts` when known (see
    /// [`synprov::render::render_host`]).
    pub fn render(
        &self,
        host: &str,
        facts: Option<&synprov::facts::Facts>,
    ) -> Result<HostFiles, synprov::render::RenderError> {
        synprov::render::render_host(
            &self.inventory,
            &self.key,
            &self.templates,
            &self.plugins,
            host,
            facts,
        )
    }
}

/// Loads the inventory and shows its warnings (valid but dangerous values) on stderr.
pub fn load_inventory(path: &std::path::Path) -> miette::Result<Inventory> {
    let mut inventory = inventory::load(path)?;
    for warning in std::mem::take(&mut inventory.warnings) {
        let report = format!("{:?}", miette::Report::new(warning));
        eprintln!("{}", synprov::ui::printable_report(&report));
    }
    Ok(inventory)
}

pub fn load(target: &Target) -> miette::Result<Loaded> {
    let inventory = load_inventory(&target.inventory)?;
    let selected = inventory.select(&target.limit).map_err(|message| {
        miette::miette!(help = "`synprov check` lists the hosts", "{message}")
    })?;
    let key = MasterKey::for_inventory(&target.inventory)?;
    let templates = Templates::load(target.roles.as_deref())?;
    let plugins = Plugins::load(&inventory, Limits::default())?;
    let surveys: BTreeMap<String, HostSurvey> =
        synprov::render::render_each(&inventory, &key, &templates, &plugins, None, |files| {
            files.survey()
        })?
        .into_iter()
        .filter(|survey| selected.contains(&survey.host))
        .map(|survey| (survey.host.clone(), survey))
        .collect();
    let hosts = surveys.keys().cloned().collect();
    let mut options = connect_options(target.known_hosts.clone());
    options.deadlines = inventory.rollout.deadlines.clone();
    Ok(Loaded {
        inventory,
        inventory_sha256: file_sha256(&target.inventory)?,
        hosts,
        surveys,
        options,
        key,
        templates,
        plugins,
        images: SavedImages::default(),
    })
}

/// SHA-256 of an inventory, as recorded with each generation and in saved plans: read as
/// [`inventory::load`] reads it (a regular file, at most its size limit), since a plan file
/// may name any path as its inventory.
pub fn file_sha256(path: &Path) -> miette::Result<String> {
    let bytes =
        synprov::regular_file::read(path, inventory::MAX_INVENTORY_BYTES).map_err(|refusal| {
            miette::miette!("cannot read inventory {}: {refusal}", path.display())
        })?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// Reads a plan file saved by `plan --out`.
pub fn read_plan(path: &Path) -> miette::Result<SavedPlan> {
    let text = synprov::saved_plan::read_text(path)?;
    Ok(SavedPlan::parse(path, &text)?)
}

/// Runs `work` on the loaded hosts as `[rollout]` and the flags say, showing progress;
/// returns the results after the display has finished.
pub fn roll_out(
    loaded: &Loaded,
    target: &Target,
    batched: bool,
    work: Arc<rollout::Work>,
) -> Vec<rollout::HostResult> {
    roll_out_on(loaded, target, loaded.hosts.clone(), batched, true, work)
}

/// [`roll_out`] on `hosts` only (of the loaded hosts); without `recap`, the recap is shown
/// only when a host did not finish (a step before the rollout proper).
pub fn roll_out_on(
    loaded: &Loaded,
    target: &Target,
    hosts: Vec<String>,
    batched: bool,
    recap: bool,
    work: Arc<rollout::Work>,
) -> Vec<rollout::HostResult> {
    let policy = &loaded.inventory.rollout;
    let parallel = target.parallel.unwrap_or(policy.parallel).max(1) as usize;
    let (stages, batch, max_failures) = if batched {
        let stages = rollout::stages(&hosts, |host| loaded.inventory.prerequisites(host));
        (stages, policy.batch, policy.max_failures)
    } else {
        (vec![hosts], None, Amount::Percent(100))
    };
    let policy = rollout::Policy {
        batch,
        parallel,
        max_failures,
    };
    let (events, received) = std::sync::mpsc::channel();
    let mode = Mode::choose(target.json);
    let display = std::thread::spawn(move || progress::show(received, mode));
    let results = rollout::run(&stages, &policy, work, &events, &loaded.options.interrupt);
    drop(events);
    let timings = display.join().unwrap_or_default();
    if mode != Mode::Json {
        if recap || !unfinished(&results).is_empty() {
            print!("{}", progress::recap(&results));
        }
        if target.timings {
            print!("{}", timings.slowest(SLOWEST));
        }
        for result in &results {
            if let rollout::Status::Failed(report) = &result.status {
                eprintln!("{}", synprov::ui::printable_report(report));
            }
        }
    }
    results
}

/// The hosts of a rollout that did not finish: failed, or never started.
pub fn unfinished(results: &[rollout::HostResult]) -> Vec<&str> {
    (results.iter())
        .filter(|r| !matches!(r.status, rollout::Status::Done { .. }))
        .map(|r| r.host.as_str())
        .collect()
}

/// A failure as a host's result: the whole report (location, cause, fix); the recap shows
/// its first line, and it is printed in full on stderr at the end.
pub fn failed(report: miette::Report) -> String {
    format!("{report:?}").trim_end().to_string()
}

/// How a host's work ended early: interrupted by the operator, or failed with `report`.
pub fn failure(report: miette::Report) -> Failure {
    let interrupted = report
        .downcast_ref::<ApplyError>()
        .is_some_and(ApplyError::interrupted)
        || report
            .downcast_ref::<TransportError>()
            .is_some_and(TransportError::interrupted);
    if interrupted {
        Failure::Interrupted
    } else {
        Failure::Error(failed(report))
    }
}

/// The exit status of a rollout: 130 once interrupted (as a shell says of SIGINT),
/// `otherwise` when every host is done, 1 when one is not.
pub fn rollout_exit(
    loaded: &Loaded,
    results: &[rollout::HostResult],
    otherwise: ExitCode,
) -> ExitCode {
    if loaded.options.interrupt.stopping() {
        ExitCode::from(INTERRUPTED)
    } else if (results.iter()).all(|r| matches!(r.status, rollout::Status::Done { .. })) {
        otherwise
    } else {
        ExitCode::FAILURE
    }
}

/// Steps listed by `--timings`.
const SLOWEST: usize = 10;

/// Exit status of a run stopped by SIGINT or SIGTERM.
pub const INTERRUPTED: u8 = 130;

/// The rollout target of `target`'s host alone: for a command on one host that applies
/// (`restore`) or renders (`import`) it as `apply` would.
pub fn only_host(target: &HostTarget) -> Target {
    Target {
        inventory: target.inventory.clone(),
        limit: vec![target.host.clone()],
        parallel: None,
        json: false,
        timings: false,
        known_hosts: target.known_hosts.clone(),
        roles: None,
    }
}

/// What a command on one host works on: the inventory, the host `--host` names, and its
/// deployments (name and directory), or the one `--deployment` names.
pub struct OnHost {
    pub inventory: Inventory,
    pub host: synprov::inventory::Host,
    pub deployments: Vec<(String, String)>,
}

/// The host `name` of the inventory.
pub fn host_named(inventory: &Inventory, name: &str) -> miette::Result<synprov::inventory::Host> {
    inventory.hosts.get(name).cloned().ok_or_else(|| {
        miette::miette!(
            help = "`synprov check` lists the hosts",
            "host `{}` is not in the inventory",
            synprov::ui::printable(name)
        )
    })
}

pub fn host_deployments(target: &HostTarget) -> miette::Result<OnHost> {
    let inventory = load_inventory(&target.inventory)?;
    let host = host_named(&inventory, &target.host)?;
    let deployments = deployments_on(&inventory, &host.name, target.deployment.as_deref());
    if deployments.is_empty() {
        return Err(miette::miette!(
            help = "`synprov check` lists the deployments of each host",
            "host `{}` has no deployment{} in the inventory",
            host.name,
            target
                .deployment
                .as_ref()
                .map(|d| format!(" named `{}`", synprov::ui::printable(d)))
                .unwrap_or_default()
        ));
    }
    Ok(OnHost {
        inventory,
        host,
        deployments,
    })
}

/// The deployments (name and directory) of `host`, or the one named `only`.
pub fn deployments_on(
    inventory: &Inventory,
    host: &str,
    only: Option<&str>,
) -> Vec<(String, String)> {
    inventory
        .deployments_on(host)
        .filter(|d| only.is_none_or(|only| only == d.name))
        .map(|d| (d.name.clone(), d.deploy_dir.to_string()))
        .collect()
}

impl OnHost {
    /// The one deployment a command on a single deployment (`logs`, `exec`) works on: the
    /// host's only one, or the one `--deployment` named.
    pub fn one_deployment(&self) -> miette::Result<(&str, &str)> {
        match self.deployments.as_slice() {
            [(name, dir)] => Ok((name, dir)),
            several => Err(miette::miette!(
                help = "name one with --deployment",
                "host `{}` has {} deployments: {}",
                self.host.name,
                several.len(),
                several
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Connects to the host, with the inventory's deadlines.
    pub fn connect(&self, target: &HostTarget) -> miette::Result<Connection> {
        let mut options = connect_options(target.known_hosts.clone());
        options.deadlines = self.inventory.rollout.deadlines.clone();
        Ok(Connection::open(&self.host, &options)?)
    }
}

/// The exit status of a command run on a host, as this process's.
pub fn exit_code(status: i32) -> ExitCode {
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

pub fn connect_options(known_hosts: Option<PathBuf>) -> ConnectOptions {
    let mut options = ConnectOptions::default();
    if let Some(path) = known_hosts {
        options.known_hosts = path;
    }
    options
}

/// Connects to a loaded host and prepares its plan; a failure is the host's result. The
/// host's files are rendered once, with its facts, which size Postgres and which plugins are
/// told. Without plugins the facts change no file's path, so the facts are gathered with
/// the hashes of the paths the fleet check found; plugins may add files from the facts, so
/// the facts are gathered alone first (one more round trip).
pub fn connect_and_prepare(
    loaded: &Loaded,
    host: &str,
    step: &dyn Fn(String),
) -> Result<(Connection, Prepared, HostFiles), Failure> {
    prepare_on(loaded, host, None, step)
}

/// [`connect_and_prepare`] over `open`, a connection to the host an earlier step of the same
/// run kept, when there is one.
pub fn prepare_on(
    loaded: &Loaded,
    host: &str,
    open: Option<Connection>,
    step: &dyn Fn(String),
) -> Result<(Connection, Prepared, HostFiles), Failure> {
    step("gathering facts".into());
    let prepare = move || -> miette::Result<(Connection, Prepared, HostFiles)> {
        let inventory = &loaded.inventory;
        let render = |facts| loaded.render(host, facts);
        let connect = |open: Option<Connection>| match open {
            Some(connection) => Ok::<_, TransportError>(connection),
            None => Connection::open(&inventory.hosts[host], &loaded.options),
        };
        let local_ids =
            |survey: &HostSurvey| synprov::apply::images::local_ids(&survey.preload_images());
        let plugins_apply = inventory
            .deployments_on(host)
            .any(|d| loaded.plugins.apply_to(inventory, d));
        let (connection, files, facts, local_images) = if plugins_apply {
            let connection = connect(open)?;
            step("running plugins with the host's facts".into());
            let files = render(Some(&synprov::apply::host_facts(&connection)?))?;
            let survey = files.survey();
            let local_images = local_ids(&survey)?;
            let facts = synprov::apply::gather(&connection, &survey, &local_images)?;
            (connection, files, facts, local_images)
        } else {
            // An image missing here fails before any connection is opened.
            let survey = &loaded.surveys[host];
            let local_images = local_ids(survey)?;
            let connection = connect(open)?;
            let facts = synprov::apply::gather(&connection, survey, &local_images)?;
            let files = render(Some(&facts))?;
            (connection, files, facts, local_images)
        };
        let prepared =
            synprov::apply::prepare(&connection, &files, facts, &local_images, &loaded.images)?;
        Ok((connection, prepared, files))
    };
    prepare().map_err(failure)
}

/// Writes `target` with exactly `mode`, whatever the umask, and never with more: the data
/// goes into a new file beside it, created with `mode` (which the umask can only narrow),
/// set to `mode` exactly through its descriptor, then renamed over `target`. A secret is
/// never readable by others, not even for a moment, and an existing `target` with a wider
/// mode (a render of an older version) is replaced, not written through. The file reaches
/// the disk before the rename (`fsync`), so after a power cut it is old or whole: a saved
/// plan, made against the hosts' facts of then, cannot be made again as it was.
pub fn write_with_mode(target: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let staged = target.with_file_name(format!(".{name}.synprov-new"));
    match std::fs::remove_file(&staged) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&staged)?;
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&staged, target));
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written
}
