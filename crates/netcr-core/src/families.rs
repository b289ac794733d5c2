//! Every state family the kernel can hold in a network namespace, in one table
//! ([`FAMILIES`]): the dump either saves a family, or looks for it and, when the namespace
//! holds any, stops with an error naming what it found and the flag that leaves it out
//! (`netcr dump --leave-out FAMILY`). What a dump leaves out on request is recorded in the
//! image (`Netns.left_out`) and shown by `netcr show`. Nothing is lost silently: a family
//! missing from the table fails a unit test, and so does a refused family without a
//! detector.
//!
//! Detectors only find and name objects; they read them with [`RawTransport`] dumps (any
//! netlink protocol, strict framing), the typed link and neighbour dumps the dump already
//! made, and a few `/proc` files inside the namespace. A kernel that lacks a family (no
//! xfrm, no nf_tables, no MPLS) holds none of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv6Addr;

use netcr_image::v1;
use netcr_netlink::raw::attributes;
use netcr_netlink::{Connector, Netns, Protocol, RawTransport, ReceivedMessage};
use netlink_packet_route::link::XdpAttached;
use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, LinkAttribute, LinkMessage, LinkXdp};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};

use crate::error::{CoreError, Result};
use crate::xfrm::{
    GETDEFAULT as XFRM_MSG_GETDEFAULT, GETPOLICY as XFRM_MSG_GETPOLICY, GETSA as XFRM_MSG_GETSA,
    NEWPOLICY as XFRM_MSG_NEWPOLICY, NEWSA as XFRM_MSG_NEWSA, POLICY_INFO_LEN as XFRM_POLICY_INFO,
    SA_INFO_LEN as XFRM_SA_INFO,
};

/// A kind of state a network namespace can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Network devices of the registered kinds, with their common attributes.
    Links,
    /// IPv4 and IPv6 addresses.
    Addresses,
    /// Routes of every table and type.
    Routes,
    /// Policy routing rules.
    Rules,
    /// Neighbour entries that are configuration.
    Neighbours,
    /// `net.*` sysctls, namespace-wide and per device.
    Sysctls,
    /// The namespace's nsid table.
    Nsids,
    /// Traffic control: qdiscs, classes, filters, chains, actions.
    Tc,
    /// Nexthop objects (`ip nexthop`).
    Nexthops,
    /// IPsec: xfrm states, policies and default policies.
    Xfrm,
    /// nf_tables tables (nft, iptables-nft).
    Nftables,
    /// Legacy x_tables: iptables, ip6tables, arptables, ebtables.
    Iptables,
    /// IPVS virtual services (ipvsadm).
    Ipvs,
    /// IPv6 address labels (`ip addrlabel`).
    AddrLabels,
    /// MPLS routes and per-device MPLS input.
    Mpls,
    /// IPv6 interface identifiers (`ip token`).
    Ipv6Tokens,
    /// XDP programs attached to devices.
    Xdp,
    /// Per-device neighbour table parameters (`ip ntable`, net.ipv4.neigh.DEV.*).
    NeighParams,
    /// Neighbour entries netcr does not keep: managed, extern_learn, proxy on no device.
    NeighOther,
}

impl Family {
    /// Every family, in table order.
    pub const ALL: &'static [Family] = &[
        Family::Links,
        Family::Addresses,
        Family::Routes,
        Family::Rules,
        Family::Neighbours,
        Family::Sysctls,
        Family::Nsids,
        Family::Tc,
        Family::Nexthops,
        Family::Xfrm,
        Family::Nftables,
        Family::Iptables,
        Family::Ipvs,
        Family::AddrLabels,
        Family::Mpls,
        Family::Ipv6Tokens,
        Family::Xdp,
        Family::NeighParams,
        Family::NeighOther,
    ];

    /// This family's entry in [`FAMILIES`].
    pub fn info(self) -> &'static FamilyInfo {
        FAMILIES
            .iter()
            .find(|f| f.family == self)
            .unwrap_or(&FAMILIES[0])
    }

    /// The name `--leave-out` and the image use ("tc", "xfrm", ...).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The family a `--leave-out` value names, if it names one.
    pub fn from_name(name: &str) -> Option<Family> {
        FAMILIES.iter().find(|f| f.name == name).map(|f| f.family)
    }

    /// The families the dump refuses when found.
    pub fn refused() -> impl Iterator<Item = Family> {
        FAMILIES
            .iter()
            .filter(|f| matches!(f.handling, Handling::Refused { .. }))
            .map(|f| f.family)
    }

    /// The families `--leave-out` accepts: those the dump refuses, and those it saves unless
    /// told to leave them out.
    pub fn can_leave_out() -> impl Iterator<Item = Family> {
        FAMILIES
            .iter()
            .filter(|f| f.handling.detector().is_some())
            .map(|f| f.family)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A message's attributes: (type, value).
type Attrs<'m> = Vec<(u16, &'m [u8])>;

/// Looks for a family in one namespace.
pub type Detector = fn(&mut Probe<'_>) -> Result<Found>;

/// What the dump does with a family.
#[derive(Clone, Copy)]
pub enum Handling {
    /// The dump saves it; the restore puts it back and the verification compares it.
    Saved {
        /// What is kept, and where.
        kept: &'static str,
    },
    /// netcr cannot keep it yet: the dump looks for it and stops when it finds any, unless
    /// `--leave-out` names the family.
    Refused {
        /// How the dump finds it.
        detected_by: &'static str,
        /// The detector.
        detect: Detector,
    },
    /// The dump saves it, unless `--leave-out` names the family: then it leaves it out,
    /// recording what it found (as for a refused family), and the restore does without it.
    SavedUnlessLeftOut {
        /// What is kept, and where.
        kept: &'static str,
        /// How the dump finds it when it is left out.
        detected_by: &'static str,
        /// The detector.
        detect: Detector,
    },
}

impl Handling {
    /// The detector of a family `--leave-out` can name.
    pub fn detector(&self) -> Option<Detector> {
        match self {
            Handling::Saved { .. } => None,
            Handling::Refused { detect, .. } | Handling::SavedUnlessLeftOut { detect, .. } => {
                Some(*detect)
            }
        }
    }
}

impl fmt::Debug for Handling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handling::Saved { kept } => f.debug_struct("Saved").field("kept", kept).finish(),
            Handling::Refused { detected_by, .. } => f
                .debug_struct("Refused")
                .field("detected_by", detected_by)
                .finish(),
            Handling::SavedUnlessLeftOut {
                kept, detected_by, ..
            } => f
                .debug_struct("SavedUnlessLeftOut")
                .field("kept", kept)
                .field("detected_by", detected_by)
                .finish(),
        }
    }
}

/// One row of the family table.
#[derive(Debug)]
pub struct FamilyInfo {
    /// The family.
    pub family: Family,
    /// Its name in flags, messages and the image: "tc", "xfrm", ...
    pub name: &'static str,
    /// What it is, in words: "traffic control (qdiscs, classes, filters, actions)".
    pub title: &'static str,
    /// What the dump does with it.
    pub handling: Handling,
}

/// The family table: every state family a namespace can hold and what the dump does with it.
pub static FAMILIES: &[FamilyInfo] = &[
    FamilyInfo {
        family: Family::Links,
        name: "links",
        title: "network devices",
        handling: Handling::Saved {
            kept: "every device of a registered kind (an unknown kind stops the dump; --skip-unknown), \
                   with name, ifindex, MTU, MAC, broadcast, txqlen, alias, group, flags, link mode, \
                   altnames, protodown and its reasons, GSO/GRO limits, master, lower device or peer",
        },
    },
    FamilyInfo {
        family: Family::Addresses,
        name: "addresses",
        title: "IP addresses",
        handling: Handling::Saved {
            kept: "every address but those the kernel makes itself (loopback's, link-local, \
                   privacy and router-advertised ones), in an order that gives back primaries \
                   and secondaries as they were",
        },
    },
    FamilyInfo {
        family: Family::Routes,
        name: "routes",
        title: "routes",
        handling: Handling::Saved {
            kept: "every route of every table and type but those the kernel derives from \
                   addresses and devices; routes in table local or with protocol kernel that \
                   no address explains (AnyIP, custom broadcast, NetworkManager's prefix \
                   routes) are kept",
        },
    },
    FamilyInfo {
        family: Family::Rules,
        name: "rules",
        title: "policy routing rules",
        handling: Handling::Saved {
            kept: "every rule the user added, and the kernel's default rules the user deleted \
                   (deleted again by the restore)",
        },
    },
    FamilyInfo {
        family: Family::Neighbours,
        name: "neighbours",
        title: "neighbour entries",
        handling: Handling::Saved {
            kept: "permanent entries, noarp entries the user added (not the kernel's multicast \
                   and broadcast ones) and proxy entries (IPv4 and IPv6)",
        },
    },
    FamilyInfo {
        family: Family::Sysctls,
        name: "sysctls",
        title: "sysctls",
        handling: Handling::Saved {
            kept: "net.{ipv4,ipv6}.conf.{all,default,DEV}.*, net.{ipv4,ipv6,core,unix,mptcp,\
                   bridge,netfilter,mpls}.*, net.ipv4.route.*, net.ipv6.{route,icmp}.*, and \
                   each device's IPv6 stable_secret",
        },
    },
    FamilyInfo {
        family: Family::Nsids,
        name: "nsids",
        title: "the nsid table",
        handling: Handling::Saved {
            kept: "the ids this namespace gives the other dumped namespaces and the caller's",
        },
    },
    FamilyInfo {
        family: Family::Tc,
        name: "tc",
        title: "traffic control",
        handling: Handling::SavedUnlessLeftOut {
            kept: "per device, the qdiscs the user made (root, ingress, clsact and child ones) \
                   with their options, the classes of htb, hfsc, drr and qfq, the filters of \
                   every chain (u32, matchall, basic, flower, fw, cgroup, route) with their \
                   actions (gact, mirred by device name, police, skbedit, pedit, vlan, csum, \
                   nat, tunnel_key, connmark, ct, sample, skbmod, mpls, simple); restored after \
                   the links exist and before any comes up. BPF filters and actions, shared \
                   blocks, chain templates and empty chains are refused by name",
            detected_by: "RTM_GETQDISC (qdiscs the user made: any with a handle; the kernel's \
                          own noqueue, pfifo_fast, mq and default_qdisc have none), \
                          RTM_GETTCLASS and RTM_GETTFILTER on their devices, RTM_GETACTION for \
                          every action kind",
            detect: detect_tc,
        },
    },
    FamilyInfo {
        family: Family::Nexthops,
        name: "nexthops",
        title: "nexthop objects",
        handling: Handling::Saved {
            kept: "every nexthop under its id: gateway, device, onlink, blackhole, fdb, encap; \
                   groups with their members and weights, type and resilient parameters",
        },
    },
    FamilyInfo {
        family: Family::Xfrm,
        name: "xfrm",
        title: "IPsec (xfrm)",
        handling: Handling::SavedUnlessLeftOut {
            kept: "every state (SA) with its algorithms and keys, mode, reqid, replay state, \
                   marks, if_id, encapsulation; every policy (not sockets' own) with its \
                   selector, direction, action, priority, index, templates, mark and if_id; \
                   the default policies; restored before any link comes up. Not kept: \
                   lifetime counters (bytes, packets, times) and statistics; a state offloaded \
                   to a device stops the dump",
            detected_by: "NETLINK_XFRM: XFRM_MSG_GETSA, XFRM_MSG_GETPOLICY (not sockets' own \
                          policies), XFRM_MSG_GETDEFAULT",
            detect: detect_xfrm,
        },
    },
    FamilyInfo {
        family: Family::Nftables,
        name: "nftables",
        title: "nf_tables",
        handling: Handling::SavedUnlessLeftOut {
            kept: "every table of every family (iptables-nft's too) with its flags, chains (hook, \
                   priority, policy, devices, flags, counters), rules in order with their \
                   expressions as the kernel dumped them (xt matches and targets included), \
                   sets and maps with their elements, stateful objects, flowtables; restored \
                   in one transaction before any link comes up",
            detected_by: "NETLINK_NETFILTER: NFT_MSG_GETTABLE (iptables-nft's tables too)",
            detect: detect_nftables,
        },
    },
    FamilyInfo {
        family: Family::Iptables,
        name: "iptables",
        title: "legacy iptables",
        handling: Handling::Refused {
            detected_by: "the tables in /proc/net/{ip,ip6,arp}_tables_names, read with \
                          IPT_SO_GET_INFO/GET_ENTRIES: any rule, user chain or non-ACCEPT \
                          policy; ebtables by its hooks on the bridge family (nfnetlink_hook)",
            detect: detect_iptables,
        },
    },
    FamilyInfo {
        family: Family::Ipvs,
        name: "ipvs",
        title: "IPVS",
        handling: Handling::Refused {
            detected_by: "the virtual services in /proc/net/ip_vs",
            detect: detect_ipvs,
        },
    },
    FamilyInfo {
        family: Family::AddrLabels,
        name: "addrlabels",
        title: "IPv6 address labels",
        handling: Handling::Refused {
            detected_by: "RTM_GETADDRLABEL, against the kernel's default table",
            detect: detect_addrlabels,
        },
    },
    FamilyInfo {
        family: Family::Mpls,
        name: "mpls",
        title: "MPLS",
        handling: Handling::Refused {
            detected_by: "where the kernel has MPLS (/proc/sys/net/mpls): RTM_GETROUTE for \
                          AF_MPLS, and net.mpls.conf.DEV.input",
            detect: detect_mpls,
        },
    },
    FamilyInfo {
        family: Family::Ipv6Tokens,
        name: "ipv6-tokens",
        title: "IPv6 tokens",
        handling: Handling::Refused {
            detected_by: "IFLA_INET6_TOKEN in the link dump",
            detect: detect_tokens,
        },
    },
    FamilyInfo {
        family: Family::Xdp,
        name: "xdp",
        title: "XDP programs",
        handling: Handling::Refused {
            detected_by: "IFLA_XDP in the link dump (a BPF program cannot be re-created from a \
                          dump)",
            detect: detect_xdp,
        },
    },
    FamilyInfo {
        family: Family::NeighParams,
        name: "neigh-params",
        title: "neighbour table parameters",
        handling: Handling::Refused {
            detected_by: "RTM_GETNEIGHTBL: a device's parameters that differ from its table's \
                          defaults",
            detect: detect_neigh_params,
        },
    },
    FamilyInfo {
        family: Family::NeighOther,
        name: "neigh-other",
        title: "neighbour entries netcr does not keep",
        handling: Handling::Refused {
            detected_by: "the neighbour dump: managed and extern_learn entries, proxy entries \
                          on no device",
            detect: detect_neigh_other,
        },
    },
];

/// Objects of one sort that a detector found: `one`/`many` name them ("qdisc", "qdiscs").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The noun for one.
    pub one: &'static str,
    /// The noun for several.
    pub many: &'static str,
    /// Each object, described ("tbf on zxa").
    pub items: Vec<String>,
}

/// What a detector found in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The family.
    pub family: Family,
    /// What was found, by sort; empty groups are dropped.
    pub groups: Vec<Group>,
}

/// How many objects of one group an error names before "and N more".
const NAMED: usize = 6;

impl Found {
    /// Nothing of `family`.
    pub fn none(family: Family) -> Found {
        Found {
            family,
            groups: Vec::new(),
        }
    }

    /// Adds a group (an empty one is dropped).
    pub fn with(mut self, one: &'static str, many: &'static str, items: Vec<String>) -> Found {
        if !items.is_empty() {
            self.groups.push(Group { one, many, items });
        }
        self
    }

    /// How many objects were found.
    pub fn count(&self) -> usize {
        self.groups.iter().map(|g| g.items.len()).sum()
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// The image record of a family left out: every object, named with its noun.
    pub fn record(&self) -> v1::LeftOut {
        v1::LeftOut {
            family: self.family.name().to_string(),
            count: self.count() as u32,
            found: self
                .groups
                .iter()
                .flat_map(|g| g.items.iter().map(move |i| format!("{} {i}", g.one)))
                .collect(),
        }
    }
}

impl fmt::Display for Found {
    /// `2 qdiscs (tbf on zxa, ingress on zxb), 1 class (htb 1:1 on zxb)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.groups.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let n = g.items.len();
            let noun = if n == 1 { g.one } else { g.many };
            let mut named: Vec<&str> = g.items.iter().take(NAMED).map(String::as_str).collect();
            let more = format!("and {} more", n.saturating_sub(NAMED));
            if n > NAMED {
                named.push(&more);
            }
            write!(f, "{n} {noun} ({})", named.join(", "))?;
        }
        Ok(())
    }
}

/// The error text for families a namespace holds that netcr cannot keep yet.
pub fn refusal_text(netns: &str, found: &[Found]) -> String {
    let flags: Vec<String> = found
        .iter()
        .map(|f| format!("--leave-out {}", f.family.name()))
        .collect();
    match found {
        [one] => format!(
            "netns \"{netns}\": {} netcr cannot keep yet: {one}; {} leaves it out (recorded in the image)",
            one.family.info().title,
            flags[0]
        ),
        _ => format!(
            "netns \"{netns}\": state netcr cannot keep yet: {}; {} leave them out (recorded in the image)",
            found
                .iter()
                .map(|f| format!("{}: {f}", f.family.info().title))
                .collect::<Vec<_>>()
                .join("; "),
            flags.join(" ")
        ),
    }
}

/// One message of a [`Probe::query`]: its fixed header and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The fixed header (tcmsg, nhmsg, ...).
    pub head: Vec<u8>,
    /// The attributes after it: (type, value).
    pub attrs: Vec<(u16, Vec<u8>)>,
}

impl Reply {
    /// The value of the first attribute of type `kind`.
    pub fn attr(&self, kind: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }
}

/// What the detectors look at in one namespace: its sockets (taken from the dump's
/// connector when first needed), its links and neighbours as the dump read them.
pub struct Probe<'a> {
    /// The namespace.
    pub netns: &'a Netns,
    /// Its label, for messages.
    pub label: &'a str,
    /// Its links, as dumped.
    pub links: &'a [LinkMessage],
    /// Its neighbour entries (proxy entries included), as dumped.
    pub neighbours: &'a [NeighbourMessage],
    names: HashMap<u32, String>,
    connector: &'a mut dyn Connector,
    /// One socket per protocol; `None` once the kernel said it lacks the protocol.
    sockets: HashMap<Protocol, Option<Box<dyn RawTransport>>>,
}

impl<'a> Probe<'a> {
    /// A probe of `netns` that takes its sockets from `connector`.
    pub fn new(
        netns: &'a Netns,
        label: &'a str,
        links: &'a [LinkMessage],
        neighbours: &'a [NeighbourMessage],
        connector: &'a mut dyn Connector,
    ) -> Probe<'a> {
        Probe {
            netns,
            label,
            links,
            neighbours,
            names: crate::state::names_by_index(links),
            connector,
            sockets: HashMap::new(),
        }
    }

    /// A device's name by index, or `ifN` when the link dump did not see it.
    pub fn name(&self, index: u32) -> String {
        self.names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("if{index}"))
    }

    fn socket(&mut self, protocol: Protocol) -> Result<Option<&mut Box<dyn RawTransport>>> {
        if !self.sockets.contains_key(&protocol) {
            let socket = match self.connector.connect_raw(self.netns, protocol, self.label) {
                Ok(s) => Some(s),
                Err(e) if e.is_unsupported() => None,
                Err(e) => return Err(e.into()),
            };
            self.sockets.insert(protocol, socket);
        }
        Ok(self.sockets.get_mut(&protocol).and_then(Option::as_mut))
    }

    /// A dump, or `None` when this kernel lacks the protocol or the message type (it then
    /// holds none of the objects). nfnetlink answers a subsystem it lacks (no nf_tables, no
    /// nfnetlink_hook) with `EINVAL`.
    pub fn dump(
        &mut self,
        protocol: Protocol,
        kind: u16,
        body: &[u8],
        context: &str,
    ) -> Result<Option<Vec<ReceivedMessage>>> {
        let lacks_on_einval = protocol == Protocol::Netfilter;
        self.call(protocol, true, lacks_on_einval, kind, body, context)
    }

    /// A single request and its answer, or `None` when this kernel lacks it (`EINVAL` for a
    /// message type it does not know counts as lacking it too).
    pub fn request(
        &mut self,
        protocol: Protocol,
        kind: u16,
        body: &[u8],
        context: &str,
    ) -> Result<Option<Vec<ReceivedMessage>>> {
        self.call(protocol, false, true, kind, body, context)
    }

    fn call(
        &mut self,
        protocol: Protocol,
        dump: bool,
        lacks_on_einval: bool,
        kind: u16,
        body: &[u8],
        context: &str,
    ) -> Result<Option<Vec<ReceivedMessage>>> {
        let Some(socket) = self.socket(protocol)? else {
            return Ok(None);
        };
        let answer = if dump {
            socket.dump(kind, body, context)
        } else {
            socket.request(kind, body, context)
        };
        match answer {
            Ok(messages) => Ok(Some(messages)),
            Err(e) if e.is_unsupported() => Ok(None),
            Err(e) if lacks_on_einval && e.errno() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A dump whose answers of type `reply` come split into their `fixed`-byte header and
    /// attributes (a message too short for its header, or with malformed attributes, is an
    /// error); `None` when this kernel lacks it.
    pub fn query(
        &mut self,
        protocol: Protocol,
        kind: u16,
        body: &[u8],
        (reply, fixed): (&[u16], usize),
        context: &str,
    ) -> Result<Option<Vec<Reply>>> {
        let Some(messages) = self.dump(protocol, kind, body, context)? else {
            return Ok(None);
        };
        self.replies(&messages, reply, fixed, context).map(Some)
    }

    /// [`Probe::query`], each answer described by `describe` (`None`: not one to name);
    /// nothing when this kernel lacks it.
    pub fn describe_each(
        &mut self,
        protocol: Protocol,
        (kind, body): (u16, &[u8]),
        query: (&[u16], usize),
        context: &str,
        describe: impl Fn(&Probe<'_>, &Reply) -> Option<String>,
    ) -> Result<Vec<String>> {
        let replies = self
            .query(protocol, kind, body, query, context)?
            .unwrap_or_default();
        Ok(replies.iter().filter_map(|m| describe(self, m)).collect())
    }

    fn replies(
        &self,
        messages: &[ReceivedMessage],
        reply: &[u16],
        fixed: usize,
        context: &str,
    ) -> Result<Vec<Reply>> {
        messages
            .iter()
            .filter(|m| reply.contains(&m.kind))
            .map(|m| {
                let (head, attrs) = self.split(m, fixed, context)?;
                Ok(Reply {
                    head: head.to_vec(),
                    attrs: attrs.into_iter().map(|(k, v)| (k, v.to_vec())).collect(),
                })
            })
            .collect()
    }

    fn decode_err(&self, context: &str, detail: String) -> CoreError {
        CoreError::Netlink(netcr_netlink::Error::Decode {
            context: context.to_string(),
            netns: self.label.to_string(),
            detail,
        })
    }

    /// A message body split into its fixed header (`fixed` bytes) and attributes.
    fn split<'m>(
        &self,
        message: &'m ReceivedMessage,
        fixed: usize,
        context: &str,
    ) -> Result<(&'m [u8], Attrs<'m>)> {
        let head = message.payload.get(..fixed).ok_or_else(|| {
            self.decode_err(
                context,
                format!(
                    "message type {}: {} bytes, less than its {fixed}-byte header",
                    message.kind,
                    message.payload.len()
                ),
            )
        })?;
        let attrs = attributes(&message.payload[fixed..])
            .map_err(|d| self.decode_err(context, format!("message type {}: {d}", message.kind)))?;
        Ok((head, attrs))
    }
}

/// Looks for every refused family in the namespace of `probe`. Families named in
/// `leave_out` are returned as image records of what was found; any other family found
/// stops the dump with [`CoreError::Unkept`], which names all of them at once.
pub fn check(probe: &mut Probe<'_>, leave_out: &BTreeSet<Family>) -> Result<Vec<v1::LeftOut>> {
    let mut refused = Vec::new();
    let mut left_out = Vec::new();
    for info in FAMILIES {
        let detect = match info.handling {
            Handling::Refused { detect, .. } => detect,
            // Saved: looked for only when it is to be left out.
            Handling::SavedUnlessLeftOut { detect, .. } if leave_out.contains(&info.family) => {
                detect
            }
            _ => continue,
        };
        let found = detect(probe)?;
        if found.is_empty() {
            continue;
        }
        if leave_out.contains(&info.family) {
            log::info!(
                "netns \"{}\": leaving out {} ({found})",
                probe.label,
                info.title
            );
            left_out.push(found.record());
        } else {
            refused.push(found);
        }
    }
    if refused.is_empty() {
        Ok(left_out)
    } else {
        Err(CoreError::Unkept {
            netns: probe.label.to_string(),
            found: refused,
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
        .unwrap_or(0)
}

fn be32(b: &[u8]) -> u32 {
    b.get(..4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
        .unwrap_or(0)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(&[])).into_owned()
}

fn attr<'m>(attrs: &[(u16, &'m [u8])], kind: u16) -> Option<&'m [u8]> {
    attrs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
}

fn tc_handle(h: u32) -> String {
    format!("{:x}:{:x}", h >> 16, h & 0xffff)
}

const RTM_NEWQDISC: u16 = 36;
const RTM_GETQDISC: u16 = 38;
const RTM_NEWTCLASS: u16 = 40;
const RTM_GETTCLASS: u16 = 42;
const RTM_NEWTFILTER: u16 = 44;
const RTM_GETTFILTER: u16 = 46;
const RTM_NEWACTION: u16 = 48;
const RTM_GETACTION: u16 = 50;
const TCA_KIND: u16 = 1;
const TCA_DUMP_INVISIBLE: u16 = 10;
const TCA_CHAIN: u16 = 11;
const TCA_ACT_TAB: u16 = 1;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_ACT_INDEX: u16 = 3;
/// `sizeof(struct tcmsg)`.
const TCMSG: usize = 20;
/// `TC_H_ROOT`.
const TC_H_ROOT: u32 = 0xffff_ffff;
/// `TC_H_MIN_INGRESS`, `TC_H_MIN_EGRESS`.
const TC_H_MIN_INGRESS: u32 = 0xfff2;
const TC_H_MIN_EGRESS: u32 = 0xfff3;

/// The action kinds the kernel has (net/sched/act_*.c). Actions not bound to a filter are
/// found only by asking for each kind.
pub const TC_ACTION_KINDS: &[&str] = &[
    "gact",
    "mirred",
    "police",
    "skbedit",
    "pedit",
    "csum",
    "vlan",
    "tunnel_key",
    "nat",
    "sample",
    "ct",
    "ctinfo",
    "connmark",
    "simple",
    "skbmod",
    "ife",
    "bpf",
    "mpls",
    "gate",
    "xt",
];

fn tcmsg(ifindex: u32, parent: u32) -> Vec<u8> {
    let mut b = vec![0u8; TCMSG];
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b[12..16].copy_from_slice(&parent.to_ne_bytes());
    b
}

fn detect_tc(p: &mut Probe<'_>) -> Result<Found> {
    let found = Found::none(Family::Tc);
    let mut body = tcmsg(0, 0);
    body.extend(netcr_netlink::raw::attribute(TCA_DUMP_INVISIBLE, &[]));
    let context = "dumping qdiscs";
    let query = (&[RTM_NEWQDISC][..], TCMSG);
    let Some(qdisc_dump) = p.query(Protocol::Route, RTM_GETQDISC, &body, query, context)? else {
        return Ok(found);
    };
    // Qdiscs the user made: the kernel's own (noqueue, pfifo_fast, mq and its children,
    // net.core.default_qdisc) have handle 0.
    let mut qdiscs = Vec::new();
    let mut user = Vec::new();
    for m in &qdisc_dump {
        let h = &m.head;
        let (ifindex, handle, parent) = (u32_at(h, 4), u32_at(h, 8), u32_at(h, 12));
        if handle >> 16 == 0 {
            continue;
        }
        let kind = m.attr(TCA_KIND).map(text).unwrap_or_default();
        let dev = p.name(ifindex);
        let place = if parent == TC_H_ROOT || parent >> 16 == 0xffff {
            String::new()
        } else {
            format!(" parent {}", tc_handle(parent))
        };
        qdiscs.push(format!("{kind} on {dev}{place}"));
        user.push((ifindex, handle, kind));
    }
    let mut classes = Vec::new();
    let mut parents: Vec<(u32, u32)> = Vec::new();
    let devices: BTreeSet<u32> = user.iter().map(|(i, _, _)| *i).collect();
    for &ifindex in &devices {
        let context = format!("dumping the classes of {}", p.name(ifindex));
        let query = (&[RTM_NEWTCLASS][..], TCMSG);
        let body = tcmsg(ifindex, 0);
        let Some(class_dump) = p.query(Protocol::Route, RTM_GETTCLASS, &body, query, &context)?
        else {
            continue;
        };
        for m in &class_dump {
            let classid = u32_at(&m.head, 8);
            let kind = m.attr(TCA_KIND).map(text).unwrap_or_default();
            classes.push(format!(
                "{kind} {} on {}",
                tc_handle(classid),
                p.name(ifindex)
            ));
            parents.push((ifindex, classid));
        }
    }
    for (ifindex, handle, kind) in &user {
        match kind.as_str() {
            "clsact" => {
                parents.push((*ifindex, (handle & 0xffff_0000) | TC_H_MIN_INGRESS));
                parents.push((*ifindex, (handle & 0xffff_0000) | TC_H_MIN_EGRESS));
            }
            "ingress" => parents.push((*ifindex, (handle & 0xffff_0000) | TC_H_MIN_INGRESS)),
            _ => parents.push((*ifindex, *handle)),
        }
    }
    // A filter answers with one message per element (u32 hash tables and keys): count each
    // (device, parent, priority and protocol, chain) once.
    let mut filters: BTreeMap<(u32, u32, u32, u32), String> = BTreeMap::new();
    for (ifindex, parent) in parents {
        let dev = p.name(ifindex);
        let context = format!("dumping the filters of {dev} parent {}", tc_handle(parent));
        let query = (&[RTM_NEWTFILTER][..], TCMSG);
        let body = tcmsg(ifindex, parent);
        let Some(filter_dump) = p.query(Protocol::Route, RTM_GETTFILTER, &body, query, &context)?
        else {
            continue;
        };
        for m in &filter_dump {
            let info = u32_at(&m.head, 16);
            let chain = m.attr(TCA_CHAIN).map(|c| u32_at(c, 0)).unwrap_or(0);
            let kind = m.attr(TCA_KIND).map(text).unwrap_or_default();
            let what = if kind == "bpf" {
                "bpf (a BPF program: it cannot be re-created from a dump)".to_string()
            } else {
                kind
            };
            let where_ = match parent & 0xffff {
                TC_H_MIN_INGRESS if parent >> 16 == 0xffff => "ingress".to_string(),
                TC_H_MIN_EGRESS if parent >> 16 == 0xffff => "egress".to_string(),
                _ => format!("parent {}", tc_handle(parent)),
            };
            filters
                .entry((ifindex, parent, info, chain))
                .or_insert_with(|| format!("{what} on {dev} {where_} pref {}", info >> 16));
        }
    }
    let mut actions = Vec::new();
    for kind in TC_ACTION_KINDS {
        let mut kind_attr = kind.as_bytes().to_vec();
        kind_attr.push(0);
        let one = netcr_netlink::raw::attribute(
            1,
            &netcr_netlink::raw::attribute(TCA_ACT_KIND, &kind_attr),
        );
        let mut body = vec![0u8; 4];
        body.extend(netcr_netlink::raw::attribute(TCA_ACT_TAB | 0x8000, &one));
        let context = format!("dumping {kind} actions");
        // The kernel answers an action dump with the request's own type.
        let query = (&[RTM_NEWACTION, RTM_GETACTION][..], 4);
        let Some(action_dump) = p.query(Protocol::Route, RTM_GETACTION, &body, query, &context)?
        else {
            // No actions in this kernel at all.
            break;
        };
        for m in &action_dump {
            let Some(tab) = m.attr(TCA_ACT_TAB) else {
                continue;
            };
            let list = attributes(tab).map_err(|d| p.decode_err(&context, d))?;
            for (_, action) in list {
                let a = attributes(action).map_err(|d| p.decode_err(&context, d))?;
                let name = attr(&a, TCA_ACT_KIND)
                    .map(text)
                    .unwrap_or_else(|| kind.to_string());
                // The index: TCA_ACT_INDEX where the kernel sends it, else the first field
                // (tc_gen's index) of the options' parameters, TCA_*_PARMS (2) for most kinds.
                let index = attr(&a, TCA_ACT_INDEX).map(|i| u32_at(i, 0)).or_else(|| {
                    let options = attributes(attr(&a, TCA_ACT_OPTIONS)?).ok()?;
                    attr(&options, 2)
                        .filter(|p| p.len() >= 4)
                        .map(|p| u32_at(p, 0))
                });
                actions.push(match index {
                    Some(i) => format!("{name} index {i}"),
                    None => name,
                });
            }
        }
    }
    Ok(found
        .with("qdisc", "qdiscs", qdiscs)
        .with("class", "classes", classes)
        .with("filter", "filters", filters.into_values().collect())
        .with("action", "actions", actions))
}

/// An xfrm state or policy the detector found, in words (never with a key).
fn xfrm_text(kind: crate::xfrm::Kind, m: &Reply) -> String {
    crate::xfrm::describe(&crate::xfrm::Object {
        kind,
        head: m.head.clone(),
        attrs: Vec::new(),
    })
}

fn detect_xfrm(p: &mut Probe<'_>) -> Result<Found> {
    let found = Found::none(Family::Xfrm);
    let context = "dumping xfrm states";
    let query = (&[XFRM_MSG_NEWSA][..], XFRM_SA_INFO);
    let Some(sa_dump) = p.query(Protocol::Xfrm, XFRM_MSG_GETSA, &[], query, context)? else {
        return Ok(found);
    };
    // Never key material: protocol, SPI, addresses and mode only.
    let states: Vec<String> = sa_dump
        .iter()
        .map(|m| xfrm_text(crate::xfrm::Kind::State, m))
        .collect();
    let context = "dumping xfrm policies";
    let mut policies = Vec::new();
    let query = (&[XFRM_MSG_NEWPOLICY][..], XFRM_POLICY_INFO);
    if let Some(policy_dump) = p.query(Protocol::Xfrm, XFRM_MSG_GETPOLICY, &[], query, context)? {
        for m in &policy_dump {
            // Directions 3 and up are sockets' own policies (setsockopt), not the namespace's.
            if m.head[160] <= 2 {
                policies.push(xfrm_text(crate::xfrm::Kind::Policy, m));
            }
        }
    }
    // The default policy per direction (5.16+): ACCEPT (2) unless the user changed it.
    let context = "reading the xfrm default policies";
    let mut defaults = Vec::new();
    if let Some(messages) = p.request(Protocol::Xfrm, XFRM_MSG_GETDEFAULT, &[0u8; 4], context)? {
        for m in p.replies(&messages, &[XFRM_MSG_GETDEFAULT], 3, context)? {
            for (dir, value) in ["in", "fwd", "out"].iter().zip(&m.head) {
                if *value == 1 {
                    defaults.push(format!("{dir} block"));
                }
            }
        }
    }
    Ok(found
        .with("state", "states", states)
        .with("policy", "policies", policies)
        .with("default policy", "default policies", defaults))
}

/// NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE, and NEWTABLE.
const NFT_GETTABLE: u16 = (10 << 8) | 1;
const NFT_NEWTABLE: u16 = 10 << 8;

fn detect_nftables(p: &mut Probe<'_>) -> Result<Found> {
    let query = (&[NFT_NEWTABLE][..], 4);
    let items = p.describe_each(
        Protocol::Netfilter,
        (NFT_GETTABLE, &[0u8; 4]),
        query,
        "dumping nf_tables tables",
        |_, m| {
            let name = m.attr(1).map(text).unwrap_or_default();
            let chains = m.attr(3).map(be32).unwrap_or(0);
            Some(format!(
                "{} {name} ({chains} chain{})",
                netcr_netlink::nftables::family_name(m.head[0]),
                if chains == 1 { "" } else { "s" }
            ))
        },
    )?;
    Ok(Found::none(Family::Nftables).with("table", "tables", items))
}

/// NFNL_SUBSYS_HOOK << 8 | NFNL_MSG_HOOK_GET.
const NFNL_HOOK_GET: u16 = 12 << 8;
/// NFPROTO_BRIDGE.
const NFPROTO_BRIDGE: u8 = 7;

fn detect_iptables(p: &mut Probe<'_>) -> Result<Found> {
    let mut tables = Vec::new();
    for t in netcr_netlink::xtables::legacy_tables(p.netns)? {
        if t.is_pristine() {
            continue;
        }
        let mut item = format!("{} {}", t.family.command(), t.name);
        let mut what = Vec::new();
        match t.extra_entries {
            0 => {}
            1 => what.push("1 entry more than a fresh table".to_string()),
            n => what.push(format!("{n} entries more than a fresh table")),
        }
        for (chain, policy) in &t.policies {
            what.push(format!("policy {chain} {policy}"));
        }
        item.push_str(&format!(" ({})", what.join(", ")));
        tables.push(item);
    }
    // ebtables lists no tables in /proc, and asking for one creates it: its hooks on the
    // bridge family tell that a table exists (nfnetlink_hook, 5.14+).
    let mut ebtables = BTreeSet::new();
    for (hook, name) in ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        .iter()
        .enumerate()
    {
        // NF_BR_PRE_ROUTING (0) ... NF_BR_POST_ROUTING (4); the broute table uses 0 too.
        let mut body = vec![NFPROTO_BRIDGE, 0, 0, 0];
        body.extend(netcr_netlink::raw::attribute(
            1,
            &(hook as u32).to_be_bytes(),
        ));
        let context = format!("dumping the bridge hooks at {name}");
        let query = (&[NFNL_HOOK_GET][..], 4);
        let Some(hooks) = p.query(Protocol::Netfilter, NFNL_HOOK_GET, &body, query, &context)?
        else {
            break;
        };
        for m in &hooks {
            let function = m.attr(4).map(text).unwrap_or_default();
            let module = m.attr(5).map(text).unwrap_or_default();
            if function.starts_with("ebt_") || module.starts_with("ebtable") {
                ebtables.insert(if module.is_empty() { function } else { module });
            }
        }
    }
    let ebtables: Vec<String> = ebtables
        .into_iter()
        .map(|t| format!("ebtables table ({t})"))
        .collect();
    Ok(Found::none(Family::Iptables)
        .with("table", "tables", tables)
        .with("bridge table", "bridge tables", ebtables))
}

/// The virtual services listed in the text of /proc/net/ip_vs.
pub fn ipvs_services(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            ["TCP ", "UDP ", "SCTP ", "FWM "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

fn detect_ipvs(p: &mut Probe<'_>) -> Result<Found> {
    let text = p
        .netns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/ip_vs").ok())?
        .unwrap_or_default();
    Ok(Found::none(Family::Ipvs).with("virtual service", "virtual services", ipvs_services(&text)))
}

const RTM_NEWADDRLABEL: u16 = 72;
const RTM_GETADDRLABEL: u16 = 74;

/// The kernel's default address label table (net/ipv6/addrlabel.c): prefix, length, label.
pub const DEFAULT_ADDRLABELS: &[(&str, u8, u32)] = &[
    ("::1", 128, 0),
    ("::", 96, 3),
    ("::ffff:0.0.0.0", 96, 4),
    ("2001::", 32, 6),
    ("2001:10::", 28, 7),
    ("3ffe::", 16, 12),
    ("2002::", 16, 2),
    ("fec0::", 10, 11),
    ("fc00::", 7, 5),
    ("::", 0, 1),
];

fn detect_addrlabels(p: &mut Probe<'_>) -> Result<Found> {
    let context = "dumping IPv6 address labels";
    let mut body = vec![0u8; 12];
    body[0] = libc::AF_INET6 as u8;
    let query = (&[RTM_NEWADDRLABEL][..], 12);
    let Some(labels) = p.query(Protocol::Route, RTM_GETADDRLABEL, &body, query, context)? else {
        return Ok(Found::none(Family::AddrLabels));
    };
    let mut have: BTreeSet<(Ipv6Addr, u8, u32, u32)> = BTreeSet::new();
    for m in &labels {
        let Some(addr) = m.attr(1).filter(|a| a.len() == 16) else {
            continue;
        };
        let mut a = [0u8; 16];
        a.copy_from_slice(addr);
        let label = m.attr(2).map(|l| u32_at(l, 0)).unwrap_or(0);
        have.insert((Ipv6Addr::from(a), m.head[2], u32_at(&m.head, 4), label));
    }
    let defaults: BTreeSet<(Ipv6Addr, u8, u32, u32)> = DEFAULT_ADDRLABELS
        .iter()
        .filter_map(|(a, len, label)| Some((a.parse().ok()?, *len, 0, *label)))
        .collect();
    let describe = |(a, len, ifindex, label): &(Ipv6Addr, u8, u32, u32), p: &Probe<'_>| {
        let dev = if *ifindex == 0 {
            String::new()
        } else {
            format!(" dev {}", p.name(*ifindex))
        };
        format!("{a}/{len} label {label}{dev}")
    };
    let added: Vec<String> = have.difference(&defaults).map(|l| describe(l, p)).collect();
    let removed: Vec<String> = defaults.difference(&have).map(|l| describe(l, p)).collect();
    Ok(Found::none(Family::AddrLabels)
        .with("label", "labels", added)
        .with("deleted default label", "deleted default labels", removed))
}

const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const AF_MPLS: u8 = 28;

fn detect_mpls(p: &mut Probe<'_>) -> Result<Found> {
    // Without the mpls_router module the route dump would fall back to every family's.
    let inputs = p.netns.run(|| {
        let Ok(dir) = std::fs::read_dir("/proc/sys/net/mpls/conf") else {
            return None;
        };
        let mut on = Vec::new();
        for entry in dir.filter_map(|e| e.ok()) {
            let dev = entry.file_name().to_string_lossy().into_owned();
            let input = std::fs::read_to_string(entry.path().join("input")).unwrap_or_default();
            if input.trim() == "1" {
                on.push(format!("on {dev}"));
            }
        }
        on.sort();
        Some(on)
    })?;
    let Some(inputs) = inputs else {
        return Ok(Found::none(Family::Mpls));
    };
    let mut body = vec![0u8; 12];
    body[0] = AF_MPLS;
    let query = (&[RTM_NEWROUTE][..], 12);
    let routes = p.describe_each(
        Protocol::Route,
        (RTM_GETROUTE, &body),
        query,
        "dumping MPLS routes",
        |_, m| {
            let label = m.attr(1).map(|d| be32(d) >> 12).unwrap_or(0);
            (m.head[0] == AF_MPLS).then(|| format!("label {label}"))
        },
    )?;
    Ok(Found::none(Family::Mpls)
        .with("route", "routes", routes)
        .with("device input", "device inputs", inputs))
}

fn detect_tokens(p: &mut Probe<'_>) -> Result<Found> {
    let mut items = Vec::new();
    for link in p.links {
        for a in &link.attributes {
            let LinkAttribute::AfSpecUnspec(specs) = a else {
                continue;
            };
            for spec in specs {
                let AfSpecUnspec::Inet6(items6) = spec else {
                    continue;
                };
                for i in items6 {
                    if let AfSpecInet6::Token(t) = i {
                        if !t.is_unspecified() {
                            items.push(format!("{t} on {}", p.name(link.header.index)));
                        }
                    }
                }
            }
        }
    }
    Ok(Found::none(Family::Ipv6Tokens).with("token", "tokens", items))
}

fn detect_xdp(p: &mut Probe<'_>) -> Result<Found> {
    let mut items = Vec::new();
    for link in p.links {
        for a in &link.attributes {
            let LinkAttribute::Xdp(xdp) = a else {
                continue;
            };
            let attached = xdp
                .iter()
                .any(|x| matches!(x, LinkXdp::Attached(m) if *m != XdpAttached::None));
            if attached {
                let id = xdp.iter().find_map(|x| match x {
                    LinkXdp::ProgId(id) => Some(*id),
                    _ => None,
                });
                items.push(format!(
                    "program {} on {}",
                    id.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
                    p.name(link.header.index)
                ));
            }
        }
    }
    Ok(Found::none(Family::Xdp).with("XDP program", "XDP programs", items))
}

const RTM_NEWNEIGHTBL: u16 = 64;
const RTM_GETNEIGHTBL: u16 = 66;
const NDTA_NAME: u16 = 1;
const NDTA_PARMS: u16 = 6;
const NDTPA_IFINDEX: u16 = 1;

/// A neighbour table parameter's sysctl name, or `None` for derived state (refcnt,
/// reachable_time: a random value around base_reachable_time) and padding.
fn ntable_param(kind: u16) -> Option<&'static str> {
    Some(match kind {
        4 => "base_reachable_time_ms",
        5 => "retrans_time_ms",
        6 => "gc_stale_time",
        7 => "delay_first_probe_time",
        8 => "unres_qlen",
        9 => "app_solicit",
        10 => "ucast_solicit",
        11 => "mcast_solicit",
        12 => "anycast_delay",
        13 => "proxy_delay",
        14 => "proxy_qlen",
        15 => "locktime",
        16 => "unres_qlen_bytes",
        17 => "mcast_resolicit",
        19 => "interval_probe_time_ms",
        _ => return None,
    })
}

fn param_value(v: &[u8]) -> u64 {
    match v.len() {
        8 => u64::from_ne_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]),
        4 => u64::from(u32_at(v, 0)),
        _ => 0,
    }
}

fn detect_neigh_params(p: &mut Probe<'_>) -> Result<Found> {
    let context = "dumping neighbour tables";
    let query = (&[RTM_NEWNEIGHTBL][..], 4);
    let Some(tables) = p.query(Protocol::Route, RTM_GETNEIGHTBL, &[0u8; 4], query, context)? else {
        return Ok(Found::none(Family::NeighParams));
    };
    // Per table: its defaults, and each device's parameters.
    let mut defaults: HashMap<String, HashMap<u16, Vec<u8>>> = HashMap::new();
    let mut devices: Vec<(String, u32, HashMap<u16, Vec<u8>>)> = Vec::new();
    for m in &tables {
        let name = m.attr(NDTA_NAME).map(text).unwrap_or_default();
        let Some(parms) = m.attr(NDTA_PARMS) else {
            continue;
        };
        let parms = attributes(parms).map_err(|d| p.decode_err(context, d))?;
        let ifindex = attr(&parms, NDTPA_IFINDEX).map(|i| u32_at(i, 0));
        let values: HashMap<u16, Vec<u8>> = parms
            .iter()
            .filter(|(k, _)| ntable_param(*k).is_some())
            .map(|(k, v)| (*k, v.to_vec()))
            .collect();
        match ifindex {
            None => {
                defaults.insert(name, values);
            }
            Some(i) => devices.push((name, i, values)),
        }
    }
    let mut items = Vec::new();
    for (table, ifindex, values) in devices {
        let Some(dflt) = defaults.get(&table) else {
            continue;
        };
        let mut keys: Vec<&u16> = values.keys().collect();
        keys.sort();
        for k in keys {
            let (Some(v), Some(d)) = (values.get(k), dflt.get(k)) else {
                continue;
            };
            if v != d {
                items.push(format!(
                    "{} {} {} {} (default {})",
                    p.name(ifindex),
                    table,
                    ntable_param(*k).unwrap_or("?"),
                    param_value(v),
                    param_value(d)
                ));
            }
        }
    }
    items.sort();
    Ok(Found::none(Family::NeighParams).with("parameter", "parameters", items))
}

fn neighbour_dst(msg: &NeighbourMessage) -> String {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(ip.to_string()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(ip.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "?".into())
}

/// Why the dump does not keep a neighbour entry that is configuration, if it is one:
/// "managed", "extern_learn", "proxy on no device".
pub fn neighbour_not_kept(msg: &NeighbourMessage) -> Option<&'static str> {
    let flags = msg.header.flags;
    if flags.contains(NeighbourFlags::Proxy) {
        return (msg.header.ifindex == 0).then_some("proxy on no device");
    }
    if flags.contains(NeighbourFlags::ExtLearned) {
        return Some("extern_learn");
    }
    let managed = msg.attributes.iter().any(|a| {
        matches!(a, NeighbourAttribute::ExtFlags(f)
            if f.contains(netlink_packet_route::neighbour::NeighbourExtFlags::Managed))
    });
    managed.then_some("managed")
}

fn detect_neigh_other(p: &mut Probe<'_>) -> Result<Found> {
    let items: Vec<String> = p
        .neighbours
        .iter()
        .filter_map(|n| {
            let why = neighbour_not_kept(n)?;
            let dev = if n.header.ifindex == 0 {
                String::new()
            } else {
                format!(" dev {}", p.name(n.header.ifindex))
            };
            Some(format!("{}{dev} ({why})", neighbour_dst(n)))
        })
        .collect();
    Ok(Found::none(Family::NeighOther).with("entry", "entries", items))
}

#[cfg(test)]
mod tests;
