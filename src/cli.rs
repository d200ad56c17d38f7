//! Command-line arguments. Parsing only: each command is one function in `command/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  synprov check inventory/example.toml
      Validate an inventory and show what would be deployed where.
  synprov render inventory/example.toml --out rendered
      Write every file of every host to rendered/HOST/DEPLOYMENT/.
  synprov render inventory/fleet.toml --out rendered --host hs2
      Only the files of host hs2.
  synprov plan inventory/example.toml
      Connect, and show per host what would change (exit 0: nothing, 2: changes pending).
  synprov apply inventory/example.toml
      Deploy, then verify /health of every Synapse listener. With [deployments.NAME.tls],
      a renewed certificate is reloaded by Nginx (SIGHUP), no container recreated.
  synprov plan inventory/fleet.toml --out fleet.plan
  synprov show fleet.plan
  synprov apply fleet.plan
      Save the plan (mode 0600, hashes only, no secret), review it, then apply exactly
      it: a host that changed since is refused, and then nothing is applied.
  synprov apply inventory/fleet.toml --parallel 20 --limit eu
      Hosts of group eu, 20 at a time, in the batches [rollout] sets.
  synprov plan inventory/fleet.toml --json
      One JSON event per line, for CI, each with its time; step_done gives each step's
      seconds.
  synprov apply inventory/fleet.toml --timings
      After the recap, the ten slowest steps. Ctrl-C stops starting hosts and steps (exit
      130); a second Ctrl-C aborts the steps in flight. [rollout.deadlines] bounds each step.
  synprov status inventory/fleet.toml
      Per host: the generation deployed, drifted files and images, unhealthy processes
      (exit 0: all as recorded and healthy, 1: something is not).
  synprov history inventory/example.toml --host hs1
      The generations the host kept, and its audit log.
  synprov rollback inventory/example.toml --host hs1 --to 3
      Back to generation 3, read from the host (default: the one before the current).
  synprov destroy inventory/example.toml --host hs1
      Bring hs1's stacks down and remove synprov's files, keeping the database, media,
      signing key and generations (a later apply brings the same server back).
  synprov unlock inventory/example.toml --host hs1
      Remove the lock record a run left on hs1 when the host crashed under it (refused,
      naming the run, while a run holds the lock).
  synprov logs inventory/example.toml --host hs1 main rooms1 --since 10m --follow
      The logs of Synapse's main process and room worker 1, as they come.
  synprov exec inventory/example.toml --host hs1 db -- psql -U synapse -c 'select 1'
      A command in the container of a process or service; its exit status is synprov's.
  synprov backup inventory/example.toml --host hs1
      A backup of hs1's deployments now, by the service their timer starts.
  synprov backup verify inventory/example.toml --host hs1
      Restore drill: the latest snapshot restored into a scratch database and directory,
      and compared with the live ones (exit 1 when it fails, naming why).
  synprov backups inventory/example.toml --host hs1
      The snapshots of hs1's deployments: time, size, generation.
  synprov restore inventory/example.toml --host hs2 --deployment example
      Bring `example` back from its backups onto hs2, a fresh host the inventory now
      names for it: applied, the latest snapshot's database and media restored, verified.
  synprov import inventory/example.toml --host hs1 --deployment example
      Read the secrets of a homeserver deployed before synprov in example's deploy_dir
      into example.imported.toml; with `imported = \"example.imported.toml\"` in the
      inventory, apply takes it over with its own signing key and secrets.
  synprov plugins check inventory/demo.toml
      Load the inventory's plugins, check their configs and what they would add.

Secrets are derived from a master key kept beside the inventory (NAME.master-key, mode
0600, created on first use) or given in SYNPROV_MASTER_KEY.";

/// Deploys Synapse (Matrix) homeservers with workers onto a fleet of hosts.
#[derive(Debug, Parser)]
#[command(name = "synprov", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate an inventory and print the hosts, deployments and workers it describes.
    #[command(after_help = "Example:\n  synprov check inventory/example.toml")]
    Check {
        /// The inventory file (TOML).
        inventory: PathBuf,
    },
    /// Render every file of every deployment into a local directory, without connecting.
    #[command(
        after_help = "Examples:\n  synprov render inventory/example.toml --out rendered\n  synprov render inventory/fleet.toml --out rendered --host hs2"
    )]
    Render {
        /// The inventory file (TOML).
        inventory: PathBuf,
        /// Directory to write to: one folder per host, one per deployment inside it.
        #[arg(long, short)]
        out: PathBuf,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// A directory whose ROLE/templates/FILE.hbs files replace the built-in templates.
        #[arg(long, value_name = "DIR")]
        roles: Option<PathBuf>,
    },
    /// Connect to the hosts and show what `apply` would change, changing nothing.
    /// Exit status: 0 nothing to change, 2 changes pending, 1 error.
    #[command(
        after_help = "Examples:\n  synprov plan inventory/example.toml --host hs1\n  synprov plan inventory/fleet.toml --out fleet.plan\n      Also save the plan, for `synprov show fleet.plan` and `synprov apply fleet.plan`."
    )]
    Plan {
        #[command(flatten)]
        target: Target,
        /// Save the plan to FILE (JSON, mode 0600): per host the facts it was made against
        /// and each change by path and SHA-256, no file contents and no secret.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Plan for `apply --files-only`: Docker, Compose and images are left out.
        #[arg(long)]
        files_only: bool,
    },
    /// Print a plan saved by `plan --out`, as `plan` printed it (each changed file with its
    /// hashes rather than its diff). Exit status: 0 nothing to change, 2 changes pending.
    #[command(
        after_help = "Examples:\n  synprov show fleet.plan\n  synprov show fleet.plan --json"
    )]
    Show {
        /// The plan file.
        plan: PathBuf,
        /// The plan as it is saved (JSON), for programs.
        #[arg(long)]
        json: bool,
    },
    /// Deploy: install Docker where missing, write the files, bring the stacks up, verify
    /// the health of every Synapse listener. Given a plan file (`plan --out`) instead of
    /// an inventory, apply exactly that plan.
    #[command(
        after_help = "Examples:\n  synprov apply inventory/example.toml\n  synprov apply inventory/example.toml --dry-run   (same as plan)\n  synprov apply fleet.plan\n      The plan saved by `synprov plan inventory/fleet.toml --out fleet.plan`, on the\n      inventory it names, which must not have changed. Each host's facts and plan are\n      made again: a host where they differ is refused, naming what changed, and then\n      nothing is applied.\n  synprov apply fleet.plan --partial\n      Apply the hosts that still match; report the others failed.\n  synprov apply fleet.plan --dry-run\n      Check the plan against the hosts, applying nothing.\n\nA file whose first non-blank character is `{` is read as a plan (JSON), any other as an\ninventory (TOML)."
    )]
    Apply {
        #[command(flatten)]
        target: Target,
        /// Only show the plan (exit 0 when nothing would change, 2 when changes are pending);
        /// with a plan file, check it against the hosts.
        #[arg(long)]
        dry_run: bool,
        /// Write the files only: no Docker, no images, no Compose, no health checks. A plan
        /// file made with `plan --files-only` is applied so without it.
        #[arg(long)]
        files_only: bool,
        /// With a plan file: apply the hosts that still match it even when others are
        /// refused (those are reported failed).
        #[arg(long)]
        partial: bool,
        /// With a plan file: refuse it when it is older than this (default 24h).
        #[arg(long, value_name = "DURATION")]
        max_age: Option<humantime::Duration>,
        /// Upgrade Synapse without dumping Postgres first (the dump is what `rollback
        /// --restore-db` puts back). A new image reference of Synapse is an upgrade, and so
        /// is, with `preload`, an image rebuilt under the same tag.
        #[arg(long)]
        no_backup: bool,
    },
    /// Back a host's deployments up now (`[deployments.NAME.backup]`): the service their
    /// timer starts is started, and its result printed. `backup verify` runs the restore
    /// drill instead. Exit 1 when one failed.
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        after_help = "Examples:\n  synprov backup inventory/example.toml --host hs1\n  synprov backup inventory/example.toml --host hs1 --deployment example\n  synprov backup verify inventory/example.toml --host hs1\n      The latest snapshot read whole (`restic check --read-data`: a damaged pack file is\n      named), restored into a scratch directory and a scratch database beside the live\n      one, and compared: the dump loads, the schema version is the live one, the users\n      and rooms are close to the live counts, the signing key and every media file are\n      as stored. The live database and media are only read."
    )]
    Backup {
        #[command(subcommand)]
        action: Option<BackupCommand>,
        #[command(flatten)]
        target: Option<HostTarget>,
    },
    /// List the snapshots of a host's deployments: ID, time, size (what a restore writes)
    /// and the generation that was current.
    #[command(after_help = "Example:\n  synprov backups inventory/example.toml --host hs1")]
    Backups {
        #[command(flatten)]
        target: HostTarget,
    },
    /// Bring a deployment back from its backups onto a fresh host that the inventory now
    /// names for it (its `host`): the stack applied, the snapshot's database (in one
    /// transaction, every Synapse process stopped) and media restored, the stack verified.
    /// The signing key comes from the master key, as on the old host; a snapshot with
    /// another key is refused before anything changes.
    #[command(
        after_help = "Examples:\n  synprov restore inventory/example.toml --host hs2 --deployment example\n  synprov restore inventory/example.toml --host hs2 --deployment example --snapshot 86f0730f\n      A snapshot `synprov backups` listed (default: the latest)."
    )]
    Restore {
        #[command(flatten)]
        target: HostTarget,
        /// The snapshot to restore (its ID, as `synprov backups` lists it).
        #[arg(long, value_name = "ID")]
        snapshot: Option<String>,
    },
    /// Take over a homeserver deployed before synprov (from the guide's files, or by
    /// another deployer) in a deployment's deploy_dir: its signing key, registration shared
    /// secret, macaroon key, form secret and database password are read from the host into
    /// `DEPLOYMENT.imported.toml` beside the inventory (0600, never printed). Named by the
    /// deployment's `imported`, they replace the derived ones.
    #[command(
        after_help = "Example:\n  synprov import inventory/example.toml --host hs1 --deployment example\n  then, in the inventory:\n    [deployments.example]\n    imported = \"example.imported.toml\"\n  and `synprov plan` shows what taking over changes; `synprov apply` does it."
    )]
    Import {
        #[command(flatten)]
        target: HostTarget,
    },
    /// The inventory's WebAssembly plugins (`[[plugins]]`): custom roles.
    Plugins {
        #[command(subcommand)]
        action: PluginsCommand,
    },
    /// Return a host's deployments to a generation the host kept: only what differs is
    /// written and recreated, the stack is verified, and the result recorded as a new
    /// generation. Needs no inventory of that time.
    #[command(
        after_help = "Examples:\n  synprov rollback inventory/example.toml --host hs1\n      Back to the generation before the current one (or to the current one when the\n      last apply did not finish).\n  synprov rollback inventory/example.toml --host hs1 --deployment example --to 3\n  synprov rollback inventory/example.toml --host hs1 --restore-db\n      Back from a failed upgrade, with the database as it was before it."
    )]
    Rollback {
        #[command(flatten)]
        target: HostTarget,
        /// The generation to return to (see `synprov history`).
        #[arg(long, value_name = "N")]
        to: Option<u32>,
        /// Also put back the database dumped beside that generation before an upgrade from
        /// it, exactly as dumped (tables created since are gone too), in one transaction.
        /// Every Synapse process is stopped meanwhile.
        #[arg(long)]
        restore_db: bool,
    },
    /// Take a host's deployments down: the Compose stack brought down and synprov's files,
    /// sockets and logs removed, but the data kept (database, media, signing key,
    /// generations, audit log), so that a later apply brings the same server back.
    /// `--purge` removes the whole deploy directory, data and volumes included.
    #[command(
        after_help = "Examples:\n  synprov destroy inventory/example.toml --host hs1\n      Every deployment of hs1 down, its data kept.\n  synprov destroy inventory/example.toml --host hs1 --deployment example --purge\n      Everything of `example` gone, once its name is typed back on the terminal.\n  synprov destroy inventory/example.toml --host hs1 --deployment example --purge --yes\n      The same without asking, for scripts."
    )]
    Destroy {
        #[command(flatten)]
        target: HostTarget,
        /// Remove the whole deploy directory: the database, the media, the signing key, the
        /// generations and the audit log, and the stack's Compose volumes. Asks to type the
        /// deployment's name back, or needs `--yes` when not on a terminal.
        #[arg(long)]
        purge: bool,
        /// Do not ask before `--purge` (for scripts: without a terminal, `--purge` needs it).
        #[arg(long)]
        yes: bool,
        /// Remove files only and leave Docker alone: for a host deployed with
        /// `apply --files-only`.
        #[arg(long)]
        files_only: bool,
    },
    /// Remove the lock record a run left behind, e.g. when its host crashed under it.
    ///
    /// The lock file of each of the host's deployments (or the one named) is removed when no
    /// run holds its lock. A run that ends or loses its connection releases its lock by
    /// itself; a lock a run still holds is refused, naming that run (exit status 1).
    #[command(after_help = "Examples:
  synprov unlock inventory/example.toml --host hs1
  synprov unlock inventory/example.toml --host hs1 --deployment example")]
    Unlock {
        #[command(flatten)]
        target: HostTarget,
    },
    /// Show the generations a host kept for its deployments, and their audit log.
    #[command(after_help = "Example:\n  synprov history inventory/example.toml --host hs1")]
    History {
        #[command(flatten)]
        target: HostTarget,
    },
    /// Check every host against what it recorded: the current generation, files and images
    /// drifted from it, the health of every recorded listener and plugin check, the state of
    /// every container. Exit 0 when all is as recorded and healthy, 1 otherwise.
    #[command(
        after_help = "Examples:\n  synprov status inventory/fleet.toml\n  synprov status inventory/fleet.toml --limit eu --json"
    )]
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Print the full logs of a deployment's Synapse processes (`main`, `rooms1`, ...: the
    /// file each writes, INFO lines included) and what the containers of its other services
    /// (`db`, `redis`, `nginx`) printed (`compose logs`), as the host's current generation
    /// names them; all of them when none is named. Exit status: 0, or 1 when one could not
    /// be read.
    #[command(
        after_help = "Examples:\n  synprov logs inventory/example.toml --host hs1 main --tail 50\n  synprov logs inventory/example.toml --host hs1 rooms1 rooms2 --since 10m --follow\n\n--since takes a duration (10m, 1h 30m) or a UTC time (2026-12-01T10:00:00Z); a host\nwith only Compose v1 has no --since for the services other than Synapse's.\n\nA Synapse process's lines come from its log file (logs/NAME/ on the host, with the files\nrotated before it), each after `NAME | `."
    )]
    Logs {
        #[command(flatten)]
        target: HostTarget,
        /// Processes or services (default: all of them).
        #[arg(value_name = "PROCESS")]
        processes: Vec<String>,
        /// Only lines since then: a duration before now (10m) or a UTC time.
        #[arg(long, value_name = "WHEN")]
        since: Option<synprov::ops::logs::Since>,
        /// Only the last N lines of each process or service.
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
        /// Keep printing new lines, until the containers stop or Ctrl-C.
        #[arg(long, short)]
        follow: bool,
    },
    /// Run a command in the container of a process (`main`, `rooms1`, ...) or service
    /// (`db`, `redis`, `nginx`) of each deployment of the hosts named, without a terminal.
    /// On one deployment its output is streamed unchanged and its exit status is synprov's;
    /// on several, the hosts run it at once and each one's output comes grouped under its
    /// name, then a recap of the exit statuses (synprov's: 0 when all are 0, else 1).
    #[command(
        after_help = "Examples:\n  synprov exec inventory/example.toml --host hs1 main -- python -m synapse.app.admin_cmd --help\n  synprov exec inventory/example.toml --host hs1 db -- pg_dump -U synapse synapse > synapse.sql\n  synprov exec inventory/fleet.toml --limit eu --service main -- python -c 'import synapse; print(synapse.__version__)'"
    )]
    Exec {
        #[command(flatten)]
        target: HostsTarget,
        /// The process or service (also given as the first word before `--`).
        #[arg(long = "service", value_name = "NAME", conflicts_with = "process")]
        service: Option<String>,
        /// The process or service, unless `--service` names it.
        #[arg(value_name = "PROCESS", required_unless_present = "service")]
        process: Option<String>,
        /// The command and its arguments, after `--`: each passed as one word.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Restore drill: the latest snapshot restored into a scratch database and directory on
    /// the host and checked against the live ones (as its weekly timer does). Exit 1 when
    /// it fails.
    #[command(
        after_help = "Example:\n  synprov backup verify inventory/example.toml --host hs1 --deployment example"
    )]
    Verify {
        #[command(flatten)]
        target: HostTarget,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Load every plugin of the inventory and show what it is and where it applies.
    #[command(after_help = "Example:\n  synprov plugins list inventory/demo.toml")]
    List {
        /// The inventory file (TOML).
        inventory: PathBuf,
    },
    /// Load every plugin, check its config, and run it for each deployment it applies to
    /// (without host facts), checking what it returns. Exit 1 on the first problem.
    #[command(after_help = "Example:\n  synprov plugins check inventory/demo.toml")]
    Check {
        /// The inventory file (TOML).
        inventory: PathBuf,
    },
}

/// One host of an inventory, and optionally one of its deployments.
#[derive(Debug, clap::Args)]
pub struct HostTarget {
    /// The inventory file (TOML): where the host is and which deployments it has.
    pub inventory: PathBuf,
    /// The host.
    #[arg(long, required = true)]
    pub host: String,
    /// Only this deployment of the host (default: each of them; for `logs` and `exec`,
    /// the host's only one).
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,
    /// known_hosts file (default ~/.ssh/known_hosts, or SYNPROV_KNOWN_HOSTS).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
}

/// Which hosts of an inventory, and which of their deployments, an ad-hoc command runs on.
#[derive(Debug, clap::Args)]
pub struct HostsTarget {
    /// The inventory file (TOML).
    pub inventory: PathBuf,
    /// The hosts or groups (comma-separated names; `--host` is the same).
    #[arg(
        long,
        alias = "host",
        value_name = "NAMES",
        value_delimiter = ',',
        required = true
    )]
    pub limit: Vec<String>,
    /// Only this deployment of each host (default: each of them).
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,
    /// Hosts worked on at once (default: `[rollout] parallel`, 25).
    #[arg(long, value_name = "N")]
    pub parallel: Option<u32>,
    /// known_hosts file (default ~/.ssh/known_hosts, or SYNPROV_KNOWN_HOSTS).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
}

/// Which inventory and hosts a connecting command works on.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The inventory file (TOML); for `apply`, or a plan file made by `plan --out`.
    pub inventory: PathBuf,
    /// Only these hosts or groups (comma-separated names).
    #[arg(long, alias = "host", value_name = "NAMES", value_delimiter = ',')]
    pub limit: Vec<String>,
    /// Hosts worked on at once (default: `[rollout] parallel`, 25).
    #[arg(long, value_name = "N")]
    pub parallel: Option<u32>,
    /// One JSON object per line for each event (with its time, and each step's duration in
    /// a `step_done` event), for CI systems.
    #[arg(long)]
    pub json: bool,
    /// After the recap, list the ten slowest steps (host, seconds, step).
    #[arg(long)]
    pub timings: bool,
    /// known_hosts file (default ~/.ssh/known_hosts, or SYNPROV_KNOWN_HOSTS).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// A directory whose ROLE/templates/FILE.hbs files replace the built-in templates.
    #[arg(long, value_name = "DIR")]
    pub roles: Option<PathBuf>,
}
