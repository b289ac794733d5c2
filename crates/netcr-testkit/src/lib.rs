//! Test-only helpers shared by netcr's tests: the root check, namespaces that clean up after
//! themselves, links built over netlink (the test VM has no iproute2), and a recording fake
//! transport for unit tests of request construction.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use netcr_netlink::netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode,
};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::{single, Netns, NetnsGuard, Reply, Request, Result, Rtnl, RtnlExt, Transport};

/// True when the test may touch the kernel. Without root it panics under
/// `NETCR_REQUIRE_ROOT=1` (CI), and otherwise tells the caller to skip, loudly.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("NETCR_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!("{test}: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and NETCR_REQUIRE_ROOT=1 is set");
    }
    eprintln!("SKIPPED {test}: needs root; set NETCR_REQUIRE_ROOT=1 to make this a failure");
    false
}

/// Returns early from a test that needs root (see [`root_or_skip`]).
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::root_or_skip(module_path!()) {
            return;
        }
    };
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test process) uses: `nct<pid>x<n><tag>`.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("nct{}x{}{}", std::process::id(), n, tag)
}

/// A named namespace (`/run/netns/NAME`) made for one test and deleted when dropped, also
/// when the test fails.
#[derive(Debug)]
pub struct TestNetns {
    /// Its name under /run/netns.
    pub name: String,
    /// An open handle.
    pub netns: Netns,
}

impl TestNetns {
    /// Creates a fresh namespace with a unique name.
    pub fn new(tag: &str) -> TestNetns {
        let name = unique_name(tag);
        let netns = Netns::create_named(&name).unwrap_or_else(|e| panic!("creating netns: {e}"));
        TestNetns { name, netns }
    }

    /// A socket inside it.
    pub fn rtnl(&self) -> Rtnl {
        Rtnl::open_in(&self.netns).unwrap_or_else(|e| panic!("socket in {}: {e}", self.name))
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if netcr_netlink::netns::named_exists(&self.name) {
            if let Err(e) = Netns::delete_named(&self.name) {
                eprintln!("cleanup: deleting netns {}: {e}", self.name);
            }
        }
    }
}

/// A private stand-in for the host: the test thread (and every process it spawns) lives in a
/// fresh namespace until this drops, so a test never touches the machine's real interfaces.
#[derive(Debug)]
pub struct TestHost {
    /// The namespace the thread is in.
    pub ns: TestNetns,
    guard: Option<NetnsGuard>,
}

impl TestHost {
    /// Moves the calling thread into a fresh namespace.
    pub fn enter() -> TestHost {
        let ns = TestNetns::new("h");
        let guard = ns
            .netns
            .enter()
            .unwrap_or_else(|e| panic!("entering test host: {e}"));
        TestHost {
            ns,
            guard: Some(guard),
        }
    }

    /// A socket in the test host.
    pub fn rtnl(&self) -> Rtnl {
        self.ns.rtnl()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.guard.take();
    }
}

/// Index of a link by name, from a fresh dump.
pub fn ifindex(rtnl: &mut impl Transport, name: &str) -> Option<u32> {
    find_link(rtnl, name).map(|l| l.header.index)
}

/// A link by name, from a fresh dump.
pub fn find_link(rtnl: &mut impl Transport, name: &str) -> Option<LinkMessage> {
    rtnl.dump_links()
        .unwrap_or_else(|e| panic!("dumping links: {e}"))
        .into_iter()
        .find(|l| link_name(l) == Some(name))
}

/// The IFLA_IFNAME of a dumped link.
pub fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn named(name: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg
}

/// Creates a veth pair `name`/`peer` in the socket's namespace, the peer moved to `peer_ns`
/// when given.
pub fn add_veth(rtnl: &mut Rtnl, name: &str, peer: &str, peer_ns: Option<&Netns>) -> Result<()> {
    let mut peer_msg = named(peer);
    if let Some(ns) = peer_ns {
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(ns.raw_fd()));
    }
    let mut msg = named(name);
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
    ]));
    rtnl.new_link(msg, &format!("creating veth {name}"))
}

/// Creates a link of a kind that needs no data (bridge, dummy).
pub fn add_simple(rtnl: &mut Rtnl, name: &str, kind: InfoKind) -> Result<()> {
    let mut msg = named(name);
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
    rtnl.new_link(msg, &format!("creating {name}"))
}

/// Creates a macvlan on `lower` (in the socket's namespace), placed in `target` when given.
pub fn add_macvlan(
    rtnl: &mut Rtnl,
    name: &str,
    lower: &str,
    data: Vec<InfoMacVlan>,
    target: Option<&Netns>,
) -> Result<()> {
    add_macvlan_at(rtnl, name, lower, data, target, 0)
}

/// [`add_macvlan`] with a requested ifindex (0: the kernel picks).
pub fn add_macvlan_at(
    rtnl: &mut Rtnl,
    name: &str,
    lower: &str,
    data: Vec<InfoMacVlan>,
    target: Option<&Netns>,
    index: u32,
) -> Result<()> {
    let lower_index = ifindex(rtnl, lower).unwrap_or_else(|| panic!("no lower device {lower}"));
    let mut msg = named(name);
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::Link(lower_index));
    if let Some(ns) = target {
        msg.attributes.push(LinkAttribute::NetNsFd(ns.raw_fd()));
    }
    let data = if data.is_empty() {
        vec![InfoMacVlan::Mode(MacVlanMode::Bridge)]
    } else {
        data
    };
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(data)),
    ]));
    rtnl.new_link(msg, &format!("creating macvlan {name}"))
}

/// Changes a link by name: `attrs` plus up/down.
pub fn set_link(
    rtnl: &mut Rtnl,
    name: &str,
    up: Option<bool>,
    attrs: Vec<LinkAttribute>,
) -> Result<()> {
    let index = ifindex(rtnl, name).unwrap_or_else(|| panic!("no link {name}"));
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if let Some(up) = up {
        msg.header.change_mask = LinkFlags::Up;
        msg.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
    }
    msg.attributes = attrs;
    rtnl.set_link(msg, &format!("changing {name}"))
}

/// Adds an address `addr/prefix` to device `dev`.
pub fn add_address(rtnl: &mut Rtnl, dev: &str, addr: IpAddr, prefix: u8) -> Result<()> {
    let index = ifindex(rtnl, dev).unwrap_or_else(|| panic!("no link {dev}"));
    let mut msg = AddressMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    single(
        rtnl,
        Request::create(
            RouteNetlinkMessage::NewAddress(msg),
            format!("adding {addr} to {dev}"),
        ),
    )
    .map(|_| ())
}

/// A fake transport that records every request and answers from a queue (youki's
/// `FakeNetlinkClient` idea): unit tests of what the core sends, without a kernel.
#[derive(Debug, Default)]
pub struct RecordingTransport {
    /// Label returned by `netns_label`.
    pub label: String,
    /// Every request sent through `batch`, in order.
    pub sent: Vec<Request>,
    /// Every dump request, in order.
    pub dumps: Vec<RouteNetlinkMessage>,
    /// Replies handed out to batch requests in order; an empty queue answers with an ACK.
    pub replies: VecDeque<Reply>,
    /// Replies handed out to dumps in order; an empty queue answers with nothing.
    pub dump_replies: VecDeque<Vec<RouteNetlinkMessage>>,
}

impl RecordingTransport {
    /// A fake whose namespace label is `label`.
    pub fn new(label: &str) -> RecordingTransport {
        RecordingTransport {
            label: label.to_string(),
            ..Default::default()
        }
    }
}

impl Transport for RecordingTransport {
    fn netns_label(&self) -> &str {
        &self.label
    }

    fn batch(&mut self, requests: Vec<Request>) -> Vec<Reply> {
        requests
            .into_iter()
            .map(|r| {
                self.sent.push(r);
                self.replies.pop_front().unwrap_or(Ok(Vec::new()))
            })
            .collect()
    }

    fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        _context: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.dumps.push(message);
        Ok(self.dump_replies.pop_front().unwrap_or_default())
    }
}

/// Every named namespace that exists now (`ip netns list`).
pub fn named_namespaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(netcr_netlink::netns::NETNS_RUN_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A comparable picture of a namespace's links: name, kind, MTU, MAC, flags, master and
/// lower index, sorted by name. Equal snapshots mean nothing was created, deleted or changed.
pub fn link_snapshot(rtnl: &mut impl Transport) -> Vec<String> {
    let mut out: Vec<String> = rtnl
        .dump_links()
        .unwrap_or_else(|e| panic!("dumping links: {e}"))
        .iter()
        .map(|l| {
            let mut fields = vec![
                format!("#{}", l.header.index),
                format!("flags {:#x}", l.header.flags.bits() & 0xffff),
            ];
            for a in &l.attributes {
                match a {
                    LinkAttribute::IfName(n) => fields.insert(0, n.clone()),
                    LinkAttribute::Mtu(m) => fields.push(format!("mtu {m}")),
                    LinkAttribute::Address(m) => fields.push(format!("mac {m:02x?}")),
                    LinkAttribute::Controller(m) => fields.push(format!("master {m}")),
                    LinkAttribute::Link(m) => fields.push(format!("link {m}")),
                    LinkAttribute::Group(g) => fields.push(format!("group {g}")),
                    LinkAttribute::IfAlias(a) => fields.push(format!("alias {a}")),
                    LinkAttribute::TxQueueLen(q) => fields.push(format!("txqlen {q}")),
                    _ => {}
                }
            }
            fields.join(" ")
        })
        .collect();
    out.sort();
    out
}
