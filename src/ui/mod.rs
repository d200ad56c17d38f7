//! What the user sees: diffs and plan summaries. The engine never prints; commands hand
//! its results to this module.

pub mod diff;
pub mod lines;
pub mod plan;
pub mod progress;
pub mod timings;

pub use crate::text::{json_line, one_line, printable, printable_report};

/// Whether to colour output: a terminal, and no NO_COLOR.
pub fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout())
}
