//! One module per command. Each loads what it needs, calls the library, and prints.

pub mod check;
pub mod render;
