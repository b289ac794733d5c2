//! The `netcr` command line: dump, restore, show, check and demo.
//!
//! Every first-party driver crate is named here, so its `inventory` registration is linked
//! into the binary (a crate nobody names is not linked, and its driver silently vanishes).

/// Names each driver crate (so it is linked) and lists its kind in [`FIRST_PARTY_KINDS`],
/// from one list, so a driver cannot be linked without being checked or the reverse.
macro_rules! first_party_drivers {
    ($($krate:ident => $kind:literal,)*) => {
        $(use $krate as _;)*

        /// Kinds the project ships drivers for; a test fails when one is missing from the
        /// registry.
        pub const FIRST_PARTY_KINDS: &[&str] = &[$($kind),*];
    };
}

first_party_drivers! {
    netcr_link_bridge => "bridge",
    netcr_link_dummy => "dummy",
    netcr_link_ifb => "ifb",
    netcr_link_ipvlan => "ipvlan",
    netcr_link_macvlan => "macvlan",
    netcr_link_macvtap => "macvtap",
    netcr_link_tun => "tun",
    netcr_link_tunnel => "gre",
    netcr_link_tunnel => "gretap",
    netcr_link_tunnel => "ip6gre",
    netcr_link_tunnel => "ip6gretap",
    netcr_link_tunnel => "ipip",
    netcr_link_tunnel => "sit",
    netcr_link_tunnel => "ip6tnl",
    netcr_link_tunnel => "geneve",
    netcr_link_veth => "veth",
    netcr_link_vlan => "vlan",
    netcr_link_vrf => "vrf",
    netcr_link_vxlan => "vxlan",
}

pub mod app;
pub mod check;
pub mod cli;
pub mod criu_hook;
pub mod demo;
pub mod dist;
pub mod logger;
pub mod progress;
pub mod signals;

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
