//! Test support for netbridge: [`lab`] runs a real NetworkManager in
//! throwaway network namespaces, so end-to-end tests (and people trying
//! netbridge, through the `netbridge-lab` binary) never touch the machine's
//! own network; [`container`] boots a whole Debian host with systemd and its
//! own NetworkManager.service in such a namespace.

pub mod container;
pub mod dns;
pub mod fleet;
pub mod lab;

pub use container::Container;
pub use lab::{Guest, HostSnapshot, Lab, LabError, Uplink};
