//! Request building: pure functions from an image link and the choices already made (which
//! socket, which index, which lower device) to the netlink request.

use std::collections::HashSet;
use std::os::fd::RawFd;

use netcr_image::v1;
use netcr_netlink::Request;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::plan::spare_index;
use super::CreateFrom;
use crate::common::{self, kind_label};
use crate::driver::{DriverError, LinkDriver, RestoreCx};

/// Which socket creates a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// The target namespace's; the lower device, if any, is there too.
    Target,
    /// The caller's namespace, where the external lower device is; the request carries
    /// `IFLA_NET_NS_FD` = the target.
    FromLower,
    /// The target namespace's; the request names the caller's namespace, where the external
    /// lower device is, by `IFLA_LINK_NETNSID`.
    ViaNsid,
}

/// What the request says about namespaces, once the placement is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Nothing: made where it lives.
    Here,
    /// `IFLA_NET_NS_FD`: made from the lower device's namespace, into this one.
    NetnsFd(RawFd),
    /// `IFLA_LINK_NETNSID`: the lower device's namespace as the target numbers it.
    Nsid(i32),
}

/// The indexes and names the kernel reported, for placing a link and choosing its index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken<'a> {
    /// Indexes in use in the target.
    pub target: &'a HashSet<u32>,
    /// Indexes in use in the caller's namespace.
    pub caller: &'a HashSet<u32>,
    /// Names in use in the caller's namespace.
    pub caller_names: &'a HashSet<String>,
    /// Indexes the image's links ask for: a spare index never takes one of them, or a link
    /// made later could not keep its own.
    pub wanted: &'a HashSet<u32>,
}

/// Where `link` is created and whether it asks for its image ifindex (only where the kernel
/// checks the index against the target namespace).
pub(crate) fn placement(
    link: &v1::Link,
    external_lower: bool,
    create_from: CreateFrom,
    taken: Taken<'_>,
) -> (Placement, bool) {
    let keep_index = link.ifindex != 0 && !taken.target.contains(&link.ifindex);
    if !external_lower {
        return (Placement::Target, keep_index);
    }
    // Path (a) looks the requested index (or, without one, the name) up in the caller's
    // namespace first: use it only where that finds nothing.
    let lower_path_ok = if keep_index {
        !taken.caller.contains(&link.ifindex)
    } else {
        !taken.caller_names.contains(&link.name)
    };
    if create_from == CreateFrom::Lower && lower_path_ok {
        (Placement::FromLower, keep_index)
    } else {
        (Placement::ViaNsid, keep_index)
    }
}

/// The index a link asks for: its own when it keeps it, else a spare one that neither the
/// namespaces the kernel checks nor any link of the image wants.
pub(crate) fn chosen_index(
    link: &v1::Link,
    placement: Placement,
    keep_index: bool,
    taken: Taken<'_>,
    given: &mut HashSet<u32>,
) -> u32 {
    if keep_index {
        return link.ifindex;
    }
    if placement == Placement::FromLower {
        spare_index(&[taken.wanted, taken.target, taken.caller], given)
    } else {
        spare_index(&[taken.wanted, taken.target], given)
    }
}

/// Everything a link's creation request depends on, resolved beforehand.
pub(crate) struct Creation<'a> {
    /// The link as the image holds it.
    pub link: &'a v1::Link,
    /// The restore's private link group.
    pub group: u32,
    /// The ifindex asked for.
    pub index: u32,
    /// `IFLA_LINK`: the lower device's index as the sending socket's namespace sees it.
    pub lower_index: Option<u32>,
    /// How the request names namespaces.
    pub via: Via,
    /// A veth's other end, made by the same request.
    pub peer: Option<LinkMessage>,
    /// Whether that end lies outside the image.
    pub peer_is_external: bool,
    /// Devices already created in the target, by name.
    pub index_of: &'a dyn Fn(&str) -> Option<u32>,
}

/// The RTM_NEWLINK (`NLM_F_CREATE | NLM_F_EXCL`) that creates `c.link`.
pub(crate) fn creation_request(
    c: Creation<'_>,
    driver: &dyn LinkDriver,
) -> Result<Request, DriverError> {
    let link = c.link;
    let mut msg = LinkMessage::default();
    msg.header.index = c.index;
    msg.attributes = common_attributes(link, c.group, driver);
    if let Some(lower) = c.lower_index {
        msg.attributes.push(LinkAttribute::Link(lower));
    }
    match c.via {
        Via::Here => {}
        Via::NetnsFd(fd) => msg.attributes.push(LinkAttribute::NetNsFd(fd)),
        Via::Nsid(nsid) => msg.attributes.push(LinkAttribute::LinkNetNsId(nsid)),
    }
    let mut cx = RestoreCx {
        peer: c.peer,
        peer_is_external: c.peer_is_external,
        index_of: c.index_of,
        lower_index: c.lower_index,
    };
    let infos = driver.restore(link, &mut cx)?;
    msg.attributes.push(LinkAttribute::LinkInfo(infos));
    Ok(Request::create(
        RouteNetlinkMessage::NewLink(msg),
        format!("creating {} \"{}\"", link.kind, link.name),
    ))
}

/// The common settings and the private group, for a creation or for the first change of a
/// device a driver made itself. The MAC is left out where the kernel gives the lower's.
fn common_attributes(link: &v1::Link, group: u32, driver: &dyn LinkDriver) -> Vec<LinkAttribute> {
    let mut attrs = common::create_attributes(link, &link.name);
    if driver.inherits_address(&link.config) {
        attrs.retain(|a| !matches!(a, LinkAttribute::Address(_)));
    }
    attrs.push(LinkAttribute::Group(group));
    attrs
}

/// The RTM_SETLINK that gives a device a driver made outside netlink (tun/tap) its common
/// settings and the private group, by name (queue counts are fixed at creation).
pub(crate) fn setup_request(link: &v1::Link, group: u32, driver: &dyn LinkDriver) -> Request {
    let mut msg = LinkMessage::default();
    msg.attributes = common_attributes(link, group, driver);
    msg.attributes.retain(|a| {
        !matches!(
            a,
            LinkAttribute::NumTxQueues(_) | LinkAttribute::NumRxQueues(_)
        )
    });
    Request::change(
        RouteNetlinkMessage::SetLink(msg),
        format!("setting up {} \"{}\"", link.kind, link.name),
    )
}

/// The end of a veth pair that the same request makes: its common settings, the group, the
/// index asked for (0: the kernel picks) and, in another namespace, that namespace's fd.
pub(crate) fn peer_message(
    peer: &v1::Link,
    group: u32,
    index: u32,
    netns_fd: Option<RawFd>,
) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes = common::create_attributes(peer, &peer.name);
    msg.attributes.push(LinkAttribute::Group(group));
    if let Some(fd) = netns_fd {
        msg.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    msg
}

/// The outer end of a veth whose peer lay outside the image: made in the caller's namespace
/// under the name the user mapped it to.
pub(crate) fn outer_end_message(outer: &str, caller_fd: RawFd) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(outer.to_string()));
    msg.attributes.push(LinkAttribute::NetNsFd(caller_fd));
    msg
}

/// The in-place change of loopback (which exists in every namespace): MTU and txqlen, and
/// UP when `up_early` (the image's lo is up and holds addresses): the kernel adds
/// 127.0.0.1/8 as lo comes up, and it must be there before the image's addresses on lo,
/// which were its secondaries.
pub(crate) fn loopback_request(lo: &v1::Link, index: u32, up_early: bool) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if up_early && lo.flags & LinkFlags::Up.bits() != 0 {
        msg.header.change_mask = LinkFlags::Up;
        msg.header.flags = LinkFlags::Up;
    }
    msg.attributes.push(LinkAttribute::Mtu(lo.mtu));
    msg.attributes.push(LinkAttribute::TxQueueLen(lo.txqlen));
    Request::change(RouteNetlinkMessage::SetLink(msg), "changing lo")
}

/// The last change of a link: alias, the image's own group (which takes it out of the
/// private one), protodown, and flags, UP included.
pub(crate) fn final_request(link: &v1::Link, index: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    let mask = common::restorable_flags(link.master.is_some());
    msg.header.change_mask = mask;
    msg.header.flags = LinkFlags::from_bits_retain(link.flags) & mask;
    if !link.alias.is_empty() {
        msg.attributes
            .push(LinkAttribute::IfAlias(link.alias.clone()));
    }
    msg.attributes.push(LinkAttribute::Group(link.group));
    msg.attributes.extend(common::final_attributes(link));
    Request::change(
        RouteNetlinkMessage::SetLink(msg),
        format!("setting up {} \"{}\"", kind_label(link), link.name),
    )
}

/// The change that gives an adopted device the image's MTU, MAC (unless the kernel gives
/// it its lower device's), alias and flags; its group stays its own.
pub(crate) fn adopted_request(link: &v1::Link, index: u32) -> Request {
    let mut request = final_request(link, index);
    if let RouteNetlinkMessage::SetLink(msg) = &mut request.message {
        msg.attributes
            .retain(|a| !matches!(a, LinkAttribute::Group(_)));
        msg.attributes.push(LinkAttribute::Mtu(link.mtu));
        let inherits =
            crate::driver::driver_for(&link.kind).is_some_and(|d| d.inherits_address(&link.config));
        if !link.address.is_empty() && !inherits {
            msg.attributes
                .push(LinkAttribute::Address(link.address.clone()));
        }
    }
    request.context = format!("changing adopted {} \"{}\"", kind_label(link), link.name);
    request
}

/// A port joins its master.
pub(crate) fn join_request(port: &str, index: u32, master: &str, master_index: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Controller(master_index));
    Request::change(
        RouteNetlinkMessage::SetLink(msg),
        format!("attaching \"{port}\" to \"{master}\""),
    )
}

/// A veth's outer end comes up, on its bridge when the mapping names one.
pub(crate) fn outer_end_up(outer: &str, index: u32, bridge: Option<u32>) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.change_mask = LinkFlags::Up;
    msg.header.flags = LinkFlags::Up;
    if let Some(bridge) = bridge {
        msg.attributes.push(LinkAttribute::Controller(bridge));
    }
    Request::change(
        RouteNetlinkMessage::SetLink(msg),
        format!("setting up outer end \"{outer}\""),
    )
}

/// Whether `request` creates a link from the target with IFLA_LINK_NETNSID.
pub(crate) fn via_nsid(request: &Request) -> bool {
    matches!(&request.message, RouteNetlinkMessage::NewLink(m)
        if m.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkNetNsId(_))))
}

/// The temporary name of a link created beside its lower device before it moves in.
pub(crate) fn temporary_name(group: u32, index: u32) -> String {
    format!("ncr{:08x}", group.rotate_left(index % 32) ^ index)
}
