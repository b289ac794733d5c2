//! One namespace compared with its image: what the kernel is asked ([`observe`]) and how its
//! answer is held against the image ([`compare`]). The restore's verification and `netcr
//! diff` both go through these two functions, so "the restore would verify" and "diff says
//! identical" are the same statement. [`extras`] adds the other direction that only a diff
//! wants: what a namespace holds and the image does not.

use std::collections::{HashMap, HashSet};

use netcr_image::NetnsImage;
use netcr_netlink::nexthop::NexthopMessage;
use netcr_netlink::nftables::NftMessage;
use netcr_netlink::{Netns, RawTransport, RtnlExt, Transport};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::AddressFamily;

use crate::bridge_family::BridgeFamily;
use crate::error::Result;
use crate::{state, sysctl};

/// What the kernel holds of one namespace, read for a comparison with its image: only the
/// families the image has objects of.
#[derive(Debug, Default)]
pub struct Observed {
    /// The namespace's label, for messages.
    pub label: String,
    /// Its links.
    pub links: Vec<LinkMessage>,
    /// The links of the namespace netcr runs in (where external lower devices are).
    pub caller_links: Vec<LinkMessage>,
    /// The nsid the namespace gives the caller's, if any.
    pub nsid_of_caller: Option<i32>,
    /// Other namespaces its veth peers may be in: nsid to (image id, names by index).
    pub peers: HashMap<i32, (u32, HashMap<u32, String>)>,
    /// VLANs and forwarding entries of its bridges.
    pub bridge: BridgeFamily,
    /// Its addresses of the families the image has addresses of.
    pub addresses: Vec<AddressMessage>,
    /// Its routes of the families of the image's routes and addresses.
    pub routes: Vec<RouteMessage>,
    /// Its nexthop objects (when the image has any).
    pub nexthops: Vec<NexthopMessage>,
    /// Its rules (when the image has or deleted any).
    pub rules: Vec<RuleMessage>,
    /// The current values of the image's namespace sysctls.
    pub sysctls: HashMap<String, String>,
    /// Its nf_tables ruleset (when the image has one).
    pub nftables: Vec<NftMessage>,
    /// Its traffic control, kept as a dump keeps it (when the image has any).
    pub tc: Vec<netcr_image::v1::TcObject>,
    /// Its xfrm states and policies, normalized as a dump keeps them, with the device each
    /// selector names (when the image has any; read apart: [`observe_xfrm`]).
    pub xfrm: Vec<(crate::xfrm::Object, String)>,
}

/// What the comparison must not count as a difference, because the restore decided so.
#[derive(Debug, Default)]
pub struct Expected<'a> {
    /// For each link whose lower device lies outside: the outer device it was given.
    pub outer_of: HashMap<String, String>,
    /// Namespace sysctls the kernel would not take.
    pub sysctls_left_out: Option<&'a HashSet<String>>,
    /// Devices adopted as they were: their differences are reported apart.
    pub adopted: Option<&'a HashSet<String>>,
    /// Whether xfrm policies may have other indexes than the image's (a restore into an
    /// existing namespace, where the image's may have been in use).
    pub xfrm_indexes_may_differ: bool,
}

/// The result of [`compare`]: one line per difference, naming the object and the field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Differences between the image and the kernel.
    pub differences: Vec<String>,
    /// Differences of adopted devices (left as they were, not an error).
    pub adopted: Vec<String>,
}

/// Reads from `rtnl` (a socket in `netns`) what [`compare`] needs to hold the namespace
/// against `image`; `caller_links` are the links of `caller`, the namespace netcr runs in.
/// The firewall is read apart ([`observe_nftables`]), on a socket of its own.
pub fn observe(
    image: &NetnsImage,
    netns: &Netns,
    rtnl: &mut dyn Transport,
    caller_links: Vec<LinkMessage>,
    caller: &Netns,
) -> Result<Observed> {
    let links = rtnl.dump_links()?;
    let nsid_of_caller = rtnl.get_nsid(caller)?;
    let bridge = BridgeFamily::read(rtnl, &links)?;
    // Only the families the image holds addresses or routes of: the comparison looks the
    // image's objects up in these dumps, so other families would be read for nothing.
    let addresses = dump_families(rtnl, image.addresses.iter().map(|a| &a.message), |t, f| {
        t.dump_addresses(f)
    })?;
    // Routes of the families of the image's routes and of its addresses (whose prefix routes
    // the kernel must have made).
    let route_families = image
        .routes
        .iter()
        .map(|r| &r.message)
        .chain(image.addresses.iter().map(|a| &a.message));
    let routes = dump_families(rtnl, route_families, |t, f| t.dump_routes(f))?;
    let nexthops = if image.nexthops.is_empty() {
        Vec::new()
    } else {
        rtnl.dump_nexthops()?
    };
    let rules = if image.rules.is_empty() && image.netns.deleted_default_rules.is_empty() {
        Vec::new()
    } else {
        let mut rules = rtnl.dump_rules(AddressFamily::Inet)?;
        rules.extend(rtnl.dump_rules(AddressFamily::Inet6)?);
        rules
    };
    let names: Vec<&str> = image
        .netns
        .sysctls
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    let sysctls = sysctl::read_named(netns, &names)?
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    let tc = if image.tc.is_empty() {
        Vec::new()
    } else {
        let dumped = crate::tc::read(rtnl)?;
        let names = state::names_by_index(&links);
        // What netcr could not keep there is the namespace's own (an existing target's BPF
        // filter on a device of its own): the image holds only what it could.
        crate::tc::keep(&dumped, &|i| names.get(&i).cloned(), &|_| true).records
    };
    Ok(Observed {
        label: netns.label().to_string(),
        links,
        caller_links,
        nsid_of_caller,
        peers: HashMap::new(),
        bridge,
        addresses,
        routes,
        nexthops,
        rules,
        sysctls,
        nftables: Vec::new(),
        tc,
        xfrm: Vec::new(),
    })
}

/// The xfrm states and policies for [`Observed::xfrm`], read on `xfrm` (a NETLINK_XFRM
/// socket) when the image has any; `names` names the devices selectors refer to by index.
pub fn observe_xfrm(
    image: &NetnsImage,
    xfrm: &mut dyn RawTransport,
    names: &HashMap<u32, String>,
) -> Result<Vec<(crate::xfrm::Object, String)>> {
    if image.xfrm.is_empty() {
        return Ok(Vec::new());
    }
    let dumped = crate::xfrm::dump(xfrm)?;
    let label = xfrm.netns_label().to_string();
    crate::xfrm::dumped_objects(&dumped, &|i| names.get(&i).cloned()).map_err(|detail| {
        crate::error::CoreError::Netlink(netcr_netlink::Error::Decode {
            context: "reading xfrm states and policies".into(),
            netns: label,
            detail,
        })
    })
}

/// The nf_tables ruleset for [`Observed::nftables`], read on `netfilter` when the image has
/// a firewall (nothing otherwise).
pub fn observe_nftables(
    image: &NetnsImage,
    netfilter: &mut dyn RawTransport,
) -> Result<Vec<NftMessage>> {
    if image.nftables.is_empty() {
        return Ok(Vec::new());
    }
    Ok(netcr_netlink::nftables::dump_ruleset(netfilter)?.unwrap_or_default())
}

/// Holds `observed` against `image`: every object of the image that the kernel lacks or
/// holds otherwise, one line each (`mv0: mtu: image 1400, kernel 1500`).
pub fn compare(
    image: &NetnsImage,
    observed: &Observed,
    expected: &Expected<'_>,
) -> Result<Comparison> {
    let after = &observed.links;
    let diffs = crate::verify::links(
        image,
        after,
        &observed.caller_links,
        observed.nsid_of_caller,
        expected.outer_of.clone(),
        &observed.peers,
        &observed.bridge,
    );
    // An adopted device kept its own settings: how they differ from the image is said, not
    // an error.
    let (adopted, mut differences): (Vec<String>, Vec<String>) = diffs.into_iter().partition(|d| {
        expected
            .adopted
            .is_some_and(|a| a.iter().any(|name| d.starts_with(&format!("{name}: "))))
    });
    differences.extend(crate::verify::addresses(image, after, &observed.addresses));
    differences.extend(crate::nexthops::diffs(image, after, &observed.nexthops));
    differences.extend(crate::verify::routes(image, after, &observed.routes));
    differences.extend(crate::verify::derived_routes(
        image,
        after,
        &observed.routes,
    ));
    differences.extend(crate::verify::rules(image, &observed.rules));
    differences.extend(sysctl_diffs(image, observed, expected));
    differences.extend(nftables_diffs(image, observed)?);
    if !image.tc.is_empty() {
        differences.extend(crate::tc::diffs(&image.tc, &observed.tc));
    }
    if !image.xfrm.is_empty() {
        differences.extend(
            crate::xfrm::diffs(image, &observed.xfrm, !expected.xfrm_indexes_may_differ)
                .map_err(crate::error::CoreError::Refused)?,
        );
    }
    Ok(Comparison {
        differences,
        adopted,
    })
}

/// The differences between the image's firewall and the kernel's, and the devices its rules
/// match by index that do not have that index now.
fn nftables_diffs(image: &NetnsImage, observed: &Observed) -> Result<Vec<String>> {
    if image.nftables.is_empty() {
        return Ok(Vec::new());
    }
    let mut diffs = crate::nftables::diffs(image, &observed.nftables).map_err(|detail| {
        netcr_netlink::Error::Decode {
            context: "reading the nf_tables firewall".into(),
            netns: observed.label.clone(),
            detail,
        }
    })?;
    let now = index_map(&observed.links);
    for rec in &image.nftables {
        for i in &rec.ifindexes {
            match now.get(&i.dev) {
                Some(&index) if index != i.ifindex => diffs.push(format!(
                    "nf_tables: a rule matches \"{}\" by index {}, and it has index {index} now",
                    i.dev, i.ifindex
                )),
                _ => {}
            }
        }
    }
    Ok(diffs)
}

/// The namespace sysctls that differ from the image (those the kernel would not take are
/// left out).
fn sysctl_diffs(image: &NetnsImage, observed: &Observed, expected: &Expected<'_>) -> Vec<String> {
    image
        .netns
        .sysctls
        .iter()
        .filter(|w| {
            !expected
                .sysctls_left_out
                .is_some_and(|l| l.contains(&w.name))
        })
        .filter_map(|w| {
            let have = observed.sysctls.get(&w.name)?;
            (*have != w.value)
                .then(|| format!("sysctl {}: image {:?}, kernel {:?}", w.name, w.value, have))
        })
        .collect()
}

/// Name to index of `links`.
pub(crate) fn index_map(links: &[LinkMessage]) -> HashMap<String, u32> {
    links
        .iter()
        .map(|l| (crate::common::parse(l).name.to_string(), l.header.index))
        .collect()
}

/// Dumps with `dump` each address family that `messages` (stored message bodies) hold.
fn dump_families<'m, T>(
    socket: &mut dyn Transport,
    messages: impl Iterator<Item = &'m Vec<u8>>,
    dump: impl Fn(&mut dyn Transport, AddressFamily) -> netcr_netlink::Result<Vec<T>>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for family in stored_families(messages) {
        out.extend(dump(socket, family)?);
    }
    Ok(out)
}

/// The address families of stored address or route message bodies, IPv4 first. Byte 0 of
/// both (`ifa_family`, `rtm_family`) is the family; any other value asks for both.
pub(crate) fn stored_families<'m>(
    messages: impl Iterator<Item = &'m Vec<u8>>,
) -> Vec<AddressFamily> {
    let (mut inet, mut inet6) = (false, false);
    for message in messages {
        match message.first().map(|&b| i32::from(b)) {
            Some(libc::AF_INET) => inet = true,
            Some(libc::AF_INET6) => inet6 = true,
            _ => (inet, inet6) = (true, true),
        }
    }
    let mut out = Vec::new();
    if inet {
        out.push(AddressFamily::Inet);
    }
    if inet6 {
        out.push(AddressFamily::Inet6);
    }
    out
}

/// What `live` (a dump of a namespace) holds that `image` does not, by each object's
/// identity: links by name, addresses by device and prefix, routes, rules, nexthops by id,
/// namespace sysctls by name. One line each, in the words of [`compare`] (`dev0: address
/// 10.0.0.1/24 not in the image`). Differences within objects both hold are [`compare`]'s.
pub fn extras(image: &NetnsImage, live: &NetnsImage) -> Vec<String> {
    let mut out = Vec::new();
    let links: HashSet<&str> = image.links.iter().map(|l| l.name.as_str()).collect();
    for l in live
        .links
        .iter()
        .filter(|l| !links.contains(l.name.as_str()))
    {
        out.push(format!("{}: not in the image", l.name));
    }
    let address_key = |rec: &netcr_image::v1::Address| {
        let msg = state::decode::<AddressMessage>(&rec.message, "address").ok()?;
        let (ip, len) = crate::verify::address_key(&msg)?;
        Some((rec.dev.clone(), format!("{ip}/{len}")))
    };
    let addresses: HashSet<(String, String)> =
        image.addresses.iter().filter_map(address_key).collect();
    for (dev, prefix) in live.addresses.iter().filter_map(address_key) {
        if !addresses.contains(&(dev.clone(), prefix.clone())) {
            out.push(format!("{dev}: address {prefix} not in the image"));
        }
    }
    let route_key = |rec: &netcr_image::v1::Route| {
        let msg = state::decode::<RouteMessage>(&rec.message, "route").ok()?;
        Some((
            crate::verify::route_key(&msg, &rec.oif),
            state::describe_route(&msg, rec),
        ))
    };
    let routes: HashSet<String> = image
        .routes
        .iter()
        .filter_map(route_key)
        .map(|(k, _)| k)
        .collect();
    for (key, what) in live.routes.iter().filter_map(route_key) {
        if !routes.contains(&key) {
            out.push(format!("route {what} not in the image"));
        }
    }
    let rule_key = |rec: &netcr_image::v1::Rule| {
        let msg = state::decode::<RuleMessage>(&rec.message, "rule").ok()?;
        Some((
            u8::from(msg.header.family),
            format!("{:?}", crate::verify::rule_selectors(&msg)),
        ))
    };
    let rules: HashSet<_> = image.rules.iter().filter_map(rule_key).collect();
    for (family, text) in live.rules.iter().filter_map(rule_key) {
        if !rules.contains(&(family, text.clone())) {
            out.push(format!("rule {text} not in the image"));
        }
    }
    let nexthop_id = |rec| crate::nexthops::decode(rec).ok().map(|n| n.id());
    let nexthops: HashSet<u32> = image.nexthops.iter().filter_map(nexthop_id).collect();
    for id in live.nexthops.iter().filter_map(nexthop_id) {
        if !nexthops.contains(&id) {
            out.push(format!("nexthop {id}: not in the image"));
        }
    }
    let sysctls: HashSet<&str> = image
        .netns
        .sysctls
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for s in live
        .netns
        .sysctls
        .iter()
        .filter(|s| !sysctls.contains(s.name.as_str()))
    {
        out.push(format!(
            "sysctl {}: not in the image, kernel {:?}",
            s.name, s.value
        ));
    }
    out
}
