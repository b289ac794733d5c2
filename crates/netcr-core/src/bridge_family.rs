//! The bridge-family views of a namespace that some drivers read (a bridge's and its ports'
//! VLANs, forwarding entries such as a vxlan's remote destinations). The dumps run only when
//! the namespace holds a kind whose driver asks for them, so a namespace of macvlans pays
//! nothing.

use std::collections::HashMap;

use netcr_netlink::{RtnlExt, Transport};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::common;
use crate::driver::driver_for;
use crate::error::Result;

/// Bridge-family link and neighbour dumps of one namespace, by ifindex.
#[derive(Debug, Default)]
pub struct BridgeFamily {
    links: HashMap<u32, LinkMessage>,
    fdb: HashMap<u32, Vec<NeighbourMessage>>,
}

impl BridgeFamily {
    /// Reads the views when a link of `links` (the namespace's own dump) has a kind whose
    /// driver wants them; an empty set otherwise.
    pub fn read(rtnl: &mut dyn Transport, links: &[LinkMessage]) -> Result<BridgeFamily> {
        let wanted = links
            .iter()
            .any(|l| driver_for(&common::parse(l).kind).is_some_and(|d| d.wants_bridge_family()));
        if !wanted {
            return Ok(BridgeFamily::default());
        }
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let mut out = BridgeFamily::default();
        for reply in rtnl.dump(
            RouteNetlinkMessage::GetLink(msg),
            "dumping bridge-family links (VLANs)",
        )? {
            if let RouteNetlinkMessage::NewLink(l) = reply {
                out.links.insert(l.header.index, l);
            }
        }
        for n in rtnl.dump_neighbours(AddressFamily::Bridge)? {
            out.fdb.entry(n.header.ifindex).or_default().push(n);
        }
        Ok(out)
    }

    /// The bridge-family view of a link.
    pub fn link(&self, index: u32) -> Option<&LinkMessage> {
        self.links.get(&index)
    }

    /// The bridge-family neighbour entries of a link.
    pub fn fdb(&self, index: u32) -> &[NeighbourMessage] {
        self.fdb.get(&index).map(Vec::as_slice).unwrap_or(&[])
    }
}
