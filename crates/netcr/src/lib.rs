//! The `netcr` command line: dump, restore, show, check and demo.
//!
//! Every first-party driver crate is named here, so its `inventory` registration is linked
//! into the binary (a crate nobody names is not linked, and its driver silently vanishes).

use netcr_link_bridge as _;
use netcr_link_dummy as _;
use netcr_link_ipvlan as _;
use netcr_link_macvlan as _;
use netcr_link_macvtap as _;
use netcr_link_tun as _;
use netcr_link_veth as _;
use netcr_link_vlan as _;
use netcr_link_vxlan as _;

pub mod app;
pub mod check;
pub mod cli;
pub mod criu_hook;
pub mod demo;
pub mod logger;
pub mod signals;

/// Kinds the project ships drivers for; a test fails when one is missing from the registry.
pub const FIRST_PARTY_KINDS: &[&str] = &[
    "bridge", "dummy", "ipvlan", "macvlan", "macvtap", "tun", "veth", "vlan", "vxlan",
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_first_party_kind_is_in_the_registry() {
        let kinds = netcr_core::registered_kinds();
        for kind in super::FIRST_PARTY_KINDS {
            assert!(kinds.contains(kind), "{kind} is not registered: {kinds:?}");
        }
    }
}
