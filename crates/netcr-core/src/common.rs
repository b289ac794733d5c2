//! The attributes every link has, between a dumped `LinkMessage` and an image `Link`.

use netcr_image::v1;
use netlink_packet_core::{DefaultNla, Emitable, Nla};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkMode, LinkProtocolDownReason,
    Prop,
};

use crate::driver::{driver_for, LowerRef};

/// Devices the kernel creates by itself in every namespace once a tunnel module is loaded.
/// They come back by themselves and are skipped, never refused.
pub const KERNEL_FALLBACK_DEVICES: &[(&str, &str)] = &[
    ("tunl0", "ipip"),
    ("gre0", "gre"),
    ("gretap0", "gretap"),
    ("erspan0", "erspan"),
    ("sit0", "sit"),
    ("ip6tnl0", "ip6tnl"),
    ("ip6gre0", "ip6gre"),
    ("ip_vti0", "vti"),
    ("ip6_vti0", "vti6"),
];

/// The kind string of a link kind, as the kernel spells it.
pub fn kind_name(kind: &InfoKind) -> String {
    kind.to_string()
}

/// The flags netcr restores. Others (RUNNING, LOWER_UP, ...) are state the kernel derives.
pub fn restorable_flags(has_master: bool) -> LinkFlags {
    let mut flags = LinkFlags::Up | LinkFlags::Noarp | LinkFlags::Multicast | LinkFlags::Dynamic;
    // A port's PROMISC/ALLMULTI comes from its master; setting it would add a reference.
    if !has_master {
        flags |= LinkFlags::Promisc | LinkFlags::Allmulti;
    }
    flags
}

/// What a dumped link says about itself, before references are resolved.
#[derive(Debug, Default, Clone)]
pub struct Parsed<'a> {
    /// IFLA_IFNAME.
    pub name: &'a str,
    /// IFLA_INFO_KIND, empty when absent.
    pub kind: String,
    /// IFLA_LINK when it names another device.
    pub lower_index: Option<u32>,
    /// IFLA_LINK_NETNSID.
    pub lower_nsid: Option<i32>,
    /// IFLA_MASTER when non-zero.
    pub master_index: Option<u32>,
}

/// Reads the name, kind and references of a dumped link.
pub fn parse(link: &LinkMessage) -> Parsed<'_> {
    let mut p = Parsed::default();
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(n) => p.name = n,
            LinkAttribute::Link(i) if *i != 0 => p.lower_index = Some(*i),
            LinkAttribute::LinkNetNsId(id) => p.lower_nsid = Some(*id),
            LinkAttribute::Controller(i) if *i != 0 => p.master_index = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        p.kind = kind_name(k);
                    }
                }
            }
            _ => {}
        }
    }
    // A kind may keep its lower device in its own data (vxlan's IFLA_VXLAN_LINK).
    let lower = driver_for(&p.kind).map_or(LowerRef::FromIflaLink, |d| d.lower_ref(link));
    match lower {
        LowerRef::FromIflaLink => {}
        LowerRef::Device(index) => p.lower_index = Some(index),
        LowerRef::NoDevice => p.lower_index = None,
    }
    // Some devices name themselves as their own link; only another device is a lower one.
    if p.lower_nsid.is_none() && p.lower_index == Some(link.header.index) {
        p.lower_index = None;
    }
    p
}

/// The common fields of an image link from a dump (references and config are filled by the
/// caller).
pub fn to_image(link: &LinkMessage) -> v1::Link {
    let mut out = v1::Link {
        ifindex: link.header.index,
        flags: link.header.flags.bits(),
        link_type: u16::from(link.header.link_layer_type) as u32,
        ..Default::default()
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(n) => out.name = n.clone(),
            LinkAttribute::Mtu(m) => out.mtu = *m,
            LinkAttribute::Address(a) => out.address = a.clone(),
            LinkAttribute::Broadcast(b) => out.broadcast = b.clone(),
            LinkAttribute::TxQueueLen(q) => out.txqlen = *q,
            LinkAttribute::IfAlias(a) => out.alias = a.clone(),
            LinkAttribute::Group(g) => out.group = *g,
            LinkAttribute::NumTxQueues(n) => out.num_tx_queues = *n,
            LinkAttribute::NumRxQueues(n) => out.num_rx_queues = *n,
            LinkAttribute::PropList(props) => {
                out.altnames.extend(props.iter().filter_map(|p| match p {
                    Prop::AltIfName(n) => Some(n.clone()),
                    _ => None,
                }))
            }
            LinkAttribute::ProtoDown(d) => out.proto_down = *d != 0,
            LinkAttribute::ProtoDownReason(reasons) => {
                for r in reasons {
                    if let LinkProtocolDownReason::Value(v) = r {
                        out.proto_down_reason = *v;
                    }
                }
            }
            LinkAttribute::GsoMaxSize(n) => out.gso_max_size = *n,
            LinkAttribute::GsoMaxSegs(n) => out.gso_max_segs = *n,
            LinkAttribute::GroMaxSize(n) => out.gro_max_size = *n,
            LinkAttribute::GsoIpv4MaxSize(n) => out.gso_ipv4_max_size = *n,
            LinkAttribute::GroIpv4MaxSize(n) => out.gro_ipv4_max_size = *n,
            LinkAttribute::Mode(m) => out.link_mode = u8::from(*m).into(),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        out.kind = kind_name(k);
                    }
                }
            }
            LinkAttribute::Other(nla) => out.extra.push(attr_of(nla)),
            _ => {}
        }
    }
    (out.ipv4_devconf, out.ipv6_devconf) = crate::sysctl::devconf_of(link);
    out
}

/// An attribute kept verbatim.
pub fn attr_of(nla: &DefaultNla) -> v1::Attr {
    let mut value = vec![0; nla.value_len()];
    nla.emit_value(&mut value);
    v1::Attr {
        kind: nla.kind() as u32,
        value,
    }
}

/// Back from a verbatim attribute.
pub fn nla_of(attr: &v1::Attr) -> DefaultNla {
    DefaultNla::new(attr.kind as u16, attr.value.clone())
}

/// Size in bytes an attribute list takes when emitted; for sanity checks.
pub fn emitted_len<T: Emitable>(items: &[T]) -> usize {
    items.iter().map(|i| i.buffer_len()).sum()
}

/// The kernel's defaults for the GSO/GRO limits of a new device (GSO_LEGACY_MAX_SIZE,
/// GSO_MAX_SEGS, GRO_LEGACY_MAX_SIZE): a creation request names only the limits that differ.
pub const GSO_DEFAULT_SIZE: u32 = 65536;
/// See [`GSO_DEFAULT_SIZE`].
pub const GSO_DEFAULT_SEGS: u32 = 65535;

/// Every GSO/GRO limit of `link`, by the name `ip -d link` gives it: (name, value, the
/// kernel's default for a new device).
fn all_offload_limits(link: &v1::Link) -> [(&'static str, u32, u32); 5] {
    [
        ("gso_max_size", link.gso_max_size, GSO_DEFAULT_SIZE),
        ("gso_max_segs", link.gso_max_segs, GSO_DEFAULT_SEGS),
        ("gro_max_size", link.gro_max_size, GSO_DEFAULT_SIZE),
        (
            "gso_ipv4_max_size",
            link.gso_ipv4_max_size,
            GSO_DEFAULT_SIZE,
        ),
        (
            "gro_ipv4_max_size",
            link.gro_ipv4_max_size,
            GSO_DEFAULT_SIZE,
        ),
    ]
}

/// The GSO/GRO limits of `link` that differ from the kernel's defaults, by name; a limit the
/// image does not hold (0) is left out. Sent at creation, compared by the verification.
pub fn offload_limits(link: &v1::Link) -> Vec<(&'static str, u32)> {
    all_offload_limits(link)
        .into_iter()
        .filter(|(_, value, default)| *value != 0 && value != default)
        .map(|(name, value, _)| (name, value))
        .collect()
}

/// A GSO/GRO limit of `link` by name (see [`offload_limits`]).
pub fn offload_limit(link: &v1::Link, name: &str) -> u32 {
    all_offload_limits(link)
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .map_or(0, |(_, v, _)| v)
}

fn offload_attribute(name: &str, value: u32) -> Option<LinkAttribute> {
    Some(match name {
        "gso_max_size" => LinkAttribute::GsoMaxSize(value),
        "gso_max_segs" => LinkAttribute::GsoMaxSegs(value),
        "gro_max_size" => LinkAttribute::GroMaxSize(value),
        "gso_ipv4_max_size" => LinkAttribute::GsoIpv4MaxSize(value),
        "gro_ipv4_max_size" => LinkAttribute::GroIpv4MaxSize(value),
        _ => return None,
    })
}

/// A broadcast address someone set (`ip link set DEV broadcast ...`): not the all-ones
/// address every Ethernet-like device starts with, nor none.
pub fn custom_broadcast(link: &v1::Link) -> Option<&[u8]> {
    let b = link.broadcast.as_slice();
    (!b.is_empty() && !b.iter().all(|x| *x == 0xff) && !is_loopback(link)).then_some(b)
}

/// Attributes a creation request carries for the common fields. Alias, final group and flags
/// are set after creation (RTM_NEWLINK ignores the alias).
pub fn create_attributes(link: &v1::Link, name: &str) -> Vec<LinkAttribute> {
    let mut attrs = vec![LinkAttribute::IfName(name.to_string())];
    if link.mtu != 0 {
        attrs.push(LinkAttribute::Mtu(link.mtu));
    }
    if !link.address.is_empty() {
        attrs.push(LinkAttribute::Address(link.address.clone()));
    }
    if let Some(b) = custom_broadcast(link) {
        attrs.push(LinkAttribute::Broadcast(b.to_vec()));
    }
    attrs.push(LinkAttribute::TxQueueLen(link.txqlen));
    if link.num_tx_queues > 1 {
        attrs.push(LinkAttribute::NumTxQueues(link.num_tx_queues));
    }
    if link.num_rx_queues > 1 {
        attrs.push(LinkAttribute::NumRxQueues(link.num_rx_queues));
    }
    if link.link_mode != 0 {
        attrs.push(LinkAttribute::Mode(LinkMode::from(link.link_mode as u8)));
    }
    attrs.extend(
        offload_limits(link)
            .into_iter()
            .filter_map(|(name, value)| offload_attribute(name, value)),
    );
    attrs
}

/// Settings a device takes only once it exists (RTM_SETLINK, with its final settings):
/// protodown and its reasons.
pub fn final_attributes(link: &v1::Link) -> Vec<LinkAttribute> {
    let mut attrs = Vec::new();
    if link.proto_down_reason != 0 {
        attrs.push(LinkAttribute::ProtoDownReason(vec![
            LinkProtocolDownReason::Mask(u32::MAX),
            LinkProtocolDownReason::Value(link.proto_down_reason),
        ]));
    }
    if link.proto_down {
        attrs.push(LinkAttribute::ProtoDown(1));
    }
    attrs
}

/// The RTM_NEWLINKPROP that gives a device its alternative names back, if it has any.
pub fn altname_request(link: &v1::Link, index: u32) -> Option<netcr_netlink::Request> {
    if link.altnames.is_empty() {
        return None;
    }
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::PropList(
        link.altnames.iter().cloned().map(Prop::AltIfName).collect(),
    ));
    Some(netcr_netlink::Request::create(
        netlink_packet_route::RouteNetlinkMessage::NewLinkProp(msg),
        format!("adding the altnames of \"{}\"", link.name),
    ))
}

/// The RTM_DELLINKPROP that takes them away again (undo, on an existing namespace's lo).
pub fn altname_deletion(link: &v1::Link, index: u32) -> Option<netcr_netlink::Request> {
    let add = altname_request(link, index)?;
    let netlink_packet_route::RouteNetlinkMessage::NewLinkProp(msg) = add.message else {
        return None;
    };
    Some(netcr_netlink::Request::change(
        netlink_packet_route::RouteNetlinkMessage::DelLinkProp(msg),
        format!("removing the altnames of \"{}\"", link.name),
    ))
}

/// A hardware address as iproute2 writes it: `02:00:00:0d:00:01`.
pub fn mac_text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The human name of a kind for messages ("loopback" for the kind-less `lo`).
pub fn kind_label(link: &v1::Link) -> &str {
    if link.kind.is_empty() {
        "device"
    } else {
        &link.kind
    }
}

/// True for the namespace's loopback device, which exists in every namespace and is changed
/// in place, never created.
pub fn is_loopback(link: &v1::Link) -> bool {
    link.kind.is_empty() && link.link_type == 772
}

/// True for a kernel-made fallback tunnel device.
pub fn is_kernel_fallback(name: &str, kind: &str) -> bool {
    KERNEL_FALLBACK_DEVICES
        .iter()
        .any(|(n, k)| *n == name && *k == kind)
}

/// Is `name` a name the kernel accepts for a device (dev_valid_name)?
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::ipip("tunl0", "ipip", true)]
    #[case::gre("gre0", "gre", true)]
    #[case::gretap("gretap0", "gretap", true)]
    #[case::erspan("erspan0", "erspan", true)]
    #[case::sit("sit0", "sit", true)]
    #[case::ip6tnl("ip6tnl0", "ip6tnl", true)]
    #[case::ip6gre("ip6gre0", "ip6gre", true)]
    #[case::vti("ip_vti0", "vti", true)]
    #[case::vti6("ip6_vti0", "vti6", true)]
    // A user's own tunnel named like a fallback device, or a fallback name on another kind,
    // is not the kernel's: it is recorded (or refused as an unknown kind), never skipped.
    #[case::user_tunnel("tunl1", "ipip", false)]
    #[case::renamed_kind("tunl0", "veth", false)]
    fn kernel_fallback_devices_are_recognized_by_name_and_kind(
        #[case] name: &str,
        #[case] kind: &str,
        #[case] fallback: bool,
    ) {
        assert_eq!(is_kernel_fallback(name, kind), fallback);
    }

    #[rstest]
    #[case("eth0", true)]
    #[case("abcdefghijklmno", true)]
    #[case("abcdefghijklmnop", false)]
    #[case("", false)]
    #[case("a/b", false)]
    #[case("a:b", false)]
    #[case("a b", false)]
    #[case(".", false)]
    #[case("..", false)]
    fn device_names_follow_the_kernels_rules(#[case] name: &str, #[case] valid: bool) {
        assert_eq!(valid_ifname(name), valid);
    }
}
