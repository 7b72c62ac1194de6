//! netbridge: turn a host's uplink into a Linux bridge through
//! NetworkManager, prove connectivity, and roll back by itself.
//!
//! Layers, from the bus up: [`nm`] (the only user of the D-Bus proxies),
//! [`plan`] (pure: what to create from what was found), [`transaction`]
//! (checkpoint, apply, verify, commit or roll back), [`checks`], [`journal`]
//! (the on-disk record of an unfinished change), and the CLI verbs in [`cli`].

pub mod agent;
pub mod checks;
pub mod cli;
pub mod config;
pub mod confirm;
pub mod firewall;
pub mod guest_forwarding;
pub mod identity;
pub mod inventory;
pub mod journal;
pub mod kernel;
pub mod libvirt;
pub mod logging;
pub mod nm;
pub mod operations;
pub mod plan;
pub mod recovery;
pub mod report;
pub mod retry;
pub mod state;
pub mod transaction;
pub mod verify;
