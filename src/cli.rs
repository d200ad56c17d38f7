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
}
