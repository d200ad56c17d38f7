//! synprov: a push-based provisioner for Synapse homeservers with workers.
//!
//! The modules follow the way an inventory travels: [`inventory`] (parse, validate) ->
//! [`topology`] (which processes exist, where, with which sockets) -> [`render`] (templates to
//! files), with [`secrets`] deriving every secret from one master key.

pub mod apply;
pub mod confine;
pub mod facts;
pub mod generations;
pub mod host_data;
pub mod inventory;
pub mod layers;
pub mod ops;
pub mod parallel;
pub mod plan;
pub mod plugins;
pub mod regular_file;
pub mod render;
pub mod rollout;
pub mod saved_plan;
pub mod secrets;
pub mod shell;
pub mod sizing;
pub mod status;
pub mod text;
pub mod topology;
pub mod transport;
pub mod ui;
pub mod verify;
