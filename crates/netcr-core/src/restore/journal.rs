//! The undo journal: every change a restore made, in the order it made them, across all of
//! its namespaces. The rollback walks it backwards ([`super::undo`]).

use netcr_netlink::Request;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;

/// One change (or, for an existing namespace, one picture of it taken before any change),
/// with what its undo needs. Namespaces are indexes into the session's targets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    /// The restore created the named namespace; undone by deleting it.
    NetnsCreated { ns: usize, name: String },
    /// An existing namespace's devices before any change: their per-device sysctls are put
    /// back, since namespace-wide writes such as `ip_forward` rewrite them.
    DevicesBefore { ns: usize, links: Vec<LinkMessage> },
    /// The addresses on an existing namespace's lo (index `lo`) before any change: bringing
    /// lo up adds 127.0.0.1/8, which taking it down again does not remove.
    LoAddressesBefore {
        ns: usize,
        lo: u32,
        addresses: Vec<AddressMessage>,
    },
    /// Namespace-wide sysctls written: (name, previous value), in the order written.
    NetnsSysctls {
        ns: usize,
        changed: Vec<(String, String)>,
    },
    /// A link changed in place (lo of an existing namespace), as it was before.
    LinkChanged { ns: usize, before: LinkMessage },
    /// Links created in the restore's private link group, living in namespace `ns`.
    LinksCreated { ns: usize, names: Vec<String> },
    /// A device a driver made outside netlink (tun/tap); it joins the group only with its
    /// first change, so it is also removed by name.
    DeviceMade { ns: usize, name: String },
    /// A link created in the caller's namespace under a temporary name, to be moved in.
    TemporaryLink { name: String },
    /// The final settings are about to move the links of `ns` out of the private group.
    LinksRegrouped { ns: usize },
    /// An object that would outlive the restore's links (a rule, an address on an existing
    /// lo, a route on lo or on no device): the request that deletes it. (For a default rule
    /// the restore deleted, the request that adds it back.)
    ObjectAdded { ns: usize, delete: Request },
}

/// The journal of one restore.
#[derive(Debug, Clone, Default)]
pub(crate) struct Journal {
    /// The private link group every link the restore creates is made in: one RTM_DELLINK
    /// by group removes them all (one RCU grace period, not one per link).
    pub group: u32,
    entries: Vec<Entry>,
}

impl Journal {
    /// An empty journal for a restore using link group `group`.
    pub fn new(group: u32) -> Journal {
        Journal {
            group,
            entries: Vec::new(),
        }
    }

    /// Records a change that was made.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The links created in namespace `ns`, oldest first.
    pub fn links_in(&self, ns: usize) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::LinksCreated { ns: n, names } if *n == ns => Some(names),
                _ => None,
            })
            .flatten()
            .cloned()
            .collect()
    }
}
