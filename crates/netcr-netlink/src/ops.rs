//! Typed operations on top of [`Transport`]: dumps of each object type, link creation and
//! deletion, and nsid queries. Provided methods, so a fake transport gets them too.

use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use netlink_packet_core::Parseable;

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::nexthop::{
    NexthopAttribute, NexthopMessage, NHA_OP_FLAG_DUMP_STATS, RTM_GETNEXTHOP, RTM_NEWNEXTHOP,
};
use crate::transport::{Request, Transport};

/// Typed requests every [`Transport`] supports.
pub trait RtnlExt: Transport {
    /// Every link, without statistics (`IFLA_EXT_MASK` = skip stats).
    fn dump_links(&mut self) -> Result<Vec<LinkMessage>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self.dump(RouteNetlinkMessage::GetLink(msg), "dumping links")?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    /// Every address of one family (`AddressFamily::Inet` or `Inet6`).
    fn dump_addresses(&mut self, family: AddressFamily) -> Result<Vec<AddressMessage>> {
        let mut msg = AddressMessage::default();
        msg.header.family = family;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(msg), "dumping addresses")?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    /// Every route of one family, in every table.
    fn dump_routes(&mut self, family: AddressFamily) -> Result<Vec<RouteMessage>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let replies = self.dump(RouteNetlinkMessage::GetRoute(msg), "dumping routes")?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    /// Every policy rule of one family.
    fn dump_rules(&mut self, family: AddressFamily) -> Result<Vec<RuleMessage>> {
        let mut msg = RuleMessage::default();
        msg.header.family = family;
        let replies = self.dump(RouteNetlinkMessage::GetRule(msg), "dumping rules")?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    /// Every neighbour entry of one family.
    fn dump_neighbours(&mut self, family: AddressFamily) -> Result<Vec<NeighbourMessage>> {
        neighbours(self, family, NeighbourFlags::empty(), "dumping neighbours")
    }

    /// Every proxy neighbour entry of one family (`ip neigh add proxy ...`), which the plain
    /// neighbour dump leaves out (a dump with `NTF_PROXY`).
    fn dump_proxy_neighbours(&mut self, family: AddressFamily) -> Result<Vec<NeighbourMessage>> {
        neighbours(
            self,
            family,
            NeighbourFlags::Proxy,
            "dumping proxy neighbours",
        )
    }

    /// The link with `index` in the namespace this socket's namespace calls `nsid`
    /// (RTM_GETLINK with IFLA_TARGET_NETNSID), for a peer in a namespace netcr cannot name;
    /// `None` when that namespace or device is gone or may not be read.
    fn get_link_in(&mut self, nsid: i32, index: u32) -> Result<Option<LinkMessage>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfNetnsId(nsid));
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let context = format!("reading device {index} of nsid {nsid}");
        match single(
            self,
            Request::change(RouteNetlinkMessage::GetLink(msg), &context),
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e)
                if e.is_not_found()
                    || matches!(e.errno(), Some(libc::EINVAL | libc::EPERM | libc::EACCES)) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Every nexthop object of every family (RTM_GETNEXTHOP). Asks for each group's
    /// statistics too, the only way the kernel reports a group's `hw_stats` setting; a kernel
    /// that knows no such request (before 6.9) is asked again without, and one without
    /// nexthop objects at all (before 5.3) holds none.
    fn dump_nexthops(&mut self) -> Result<Vec<NexthopMessage>> {
        let context = "dumping nexthops";
        let mut with_stats = NexthopMessage::default();
        with_stats
            .attributes
            .push(NexthopAttribute::OpFlags(NHA_OP_FLAG_DUMP_STATS));
        let replies = match self.dump_raw(with_stats.to_raw(RTM_GETNEXTHOP), context) {
            Ok(replies) => replies,
            Err(e) if e.errno() == Some(libc::EINVAL) => {
                self.dump_raw(NexthopMessage::default().to_raw(RTM_GETNEXTHOP), context)?
            }
            Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => Vec::new(),
            Err(e) => return Err(e),
        };
        replies
            .into_iter()
            .filter(|m| m.kind == RTM_NEWNEXTHOP)
            .map(|m| {
                NexthopMessage::parse(m.body.as_slice()).map_err(|e| Error::Decode {
                    context: context.to_string(),
                    netns: self.netns_label().to_string(),
                    detail: format!("nexthop: {e}"),
                })
            })
            .collect()
    }

    /// The id this socket's namespace uses for `peer`, if one is assigned (RTM_GETNSID).
    fn get_nsid(&mut self, peer: &Netns) -> Result<Option<i32>> {
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(peer.raw_fd() as u32));
        let context = format!("reading the nsid of netns \"{}\"", peer.label());
        let reply = single(
            self,
            Request::change(RouteNetlinkMessage::GetNsId(msg), &context),
        )?;
        let id = reply.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewNsId(n) => n.attributes.into_iter().find_map(|a| match a {
                NsidAttribute::Id(id) => Some(id),
                _ => None,
            }),
            _ => None,
        });
        Ok(id.filter(|id| *id >= 0))
    }

    /// Makes sure this socket's namespace has an id for `peer` (RTM_NEWNSID) and returns it.
    /// `wanted` asks for a specific value; `None` lets the kernel pick.
    fn ensure_nsid(&mut self, peer: &Netns, wanted: Option<i32>) -> Result<i32> {
        if let Some(id) = self.get_nsid(peer)? {
            return Ok(id);
        }
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(peer.raw_fd() as u32));
        msg.attributes.push(NsidAttribute::Id(wanted.unwrap_or(-1)));
        let context = format!("assigning an nsid to netns \"{}\"", peer.label());
        single(
            self,
            Request::create(RouteNetlinkMessage::NewNsId(msg), &context),
        )?;
        self.get_nsid(peer)?.ok_or_else(|| Error::Protocol {
            context,
            netns: self.netns_label().to_string(),
            detail: "the kernel accepted the nsid but does not report it".into(),
        })
    }

    /// Creates a link; never modifies an existing one (`NLM_F_EXCL`).
    fn new_link(&mut self, msg: LinkMessage, context: &str) -> Result<()> {
        single(
            self,
            Request::create(RouteNetlinkMessage::NewLink(msg), context),
        )
        .map(|_| ())
    }

    /// Changes an existing link (RTM_SETLINK).
    fn set_link(&mut self, msg: LinkMessage, context: &str) -> Result<()> {
        single(
            self,
            Request::change(RouteNetlinkMessage::SetLink(msg), context),
        )
        .map(|_| ())
    }

    /// Deletes a link by index.
    fn del_link(&mut self, index: u32, context: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        single(
            self,
            Request::change(RouteNetlinkMessage::DelLink(msg), context),
        )
        .map(|_| ())
    }

    /// Deletes every link of a group in one request (one RCU grace period for all of them,
    /// instead of one per link).
    fn del_link_group(&mut self, group: u32, context: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        single(
            self,
            Request::change(RouteNetlinkMessage::DelLink(msg), context),
        )
        .map(|_| ())
    }
}

impl<T: Transport + ?Sized> RtnlExt for T {}

fn neighbours<T: Transport + ?Sized>(
    t: &mut T,
    family: AddressFamily,
    flags: NeighbourFlags,
    context: &str,
) -> Result<Vec<NeighbourMessage>> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg.header.flags = flags;
    let replies = t.dump(RouteNetlinkMessage::GetNeighbour(msg), context)?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => Some(n),
            _ => None,
        })
        .collect())
}

/// Sends one request and returns its reply.
pub fn single<T: Transport + ?Sized>(
    t: &mut T,
    request: Request,
) -> Result<Vec<RouteNetlinkMessage>> {
    let context = request.context.clone();
    t.batch(vec![request]).pop().unwrap_or_else(|| {
        Err(Error::Protocol {
            context,
            netns: t.netns_label().to_string(),
            detail: "no reply".into(),
        })
    })
}
