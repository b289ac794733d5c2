//! Test-only helpers shared by netcr's tests: the root check, namespaces that clean up after
//! themselves, links built over netlink (the test VM has no iproute2), and a recording fake
//! transport for unit tests of request construction.

pub mod fake;

pub use fake::FakeKernel;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use netcr_netlink::netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode,
};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::nexthop::{
    NexthopAttribute, NexthopGroupEntry, NexthopMessage, ResilientAttribute, NEXTHOP_GRP_TYPE_RES,
    RTM_NEWNEXTHOP,
};
use netcr_netlink::{
    single, Netns, NetnsGuard, RawMessage, Reply, Request, Result, Rtnl, RtnlExt, Transport,
};

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

/// True when the userspace tool `tool` (`tc`, `nft`, `iptables-legacy`, ...) a test builds
/// its state with is on `PATH`. Without it: under `NETCR_VMTEST=1` (the VM's guest, which
/// has no userspace tools) the test is skipped, loudly; under `NETCR_REQUIRE_ROOT=1` (CI)
/// it fails, naming the Debian package to install; otherwise it is skipped, loudly.
pub fn tool_or_skip(test: &str, tool: &str, package: &str) -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if on_path {
        return true;
    }
    if std::env::var_os("NETCR_VMTEST").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: needs {tool}, which the VM's guest does not have");
        return false;
    }
    if std::env::var_os("NETCR_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!("{test}: needs {tool}: install the Debian package {package} (.ci/run)");
    }
    eprintln!("SKIPPED {test}: needs {tool} (Debian package {package})");
    false
}

/// Returns early from a test that needs root and the tools named (see [`tool_or_skip`]):
/// `require_tools!(("tc", "iproute2"), ("nft", "nftables"))`.
#[macro_export]
macro_rules! require_tools {
    ($(($tool:expr, $package:expr)),+ $(,)?) => {
        $crate::require_root!();
        $(
            if !$crate::tool_or_skip(module_path!(), $tool, $package) {
                return;
            }
        )+
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

/// A nexthop object: `id`, family from the gateway (IPv4 without one), on device index
/// `oif`, with `nh_flags` (RTNH_F_ONLINK, ...). Add it with [`add_nexthop`].
pub fn nexthop(id: u32, via: Option<IpAddr>, oif: Option<u32>, flags: u32) -> NexthopMessage {
    let mut msg = NexthopMessage::default();
    msg.header.family = match via {
        Some(IpAddr::V6(_)) => libc::AF_INET6 as u8,
        _ => libc::AF_INET as u8,
    };
    msg.header.flags = flags;
    msg.attributes.push(NexthopAttribute::Id(id));
    if let Some(via) = via {
        msg.attributes.push(NexthopAttribute::Gateway(via));
    }
    if let Some(oif) = oif {
        msg.attributes.push(NexthopAttribute::Oif(oif));
    }
    msg
}

/// A multipath group `id` of `(member id, weight)`.
pub fn nexthop_group(id: u32, members: &[(u32, u32)]) -> NexthopMessage {
    let mut msg = NexthopMessage::default();
    msg.attributes.push(NexthopAttribute::Id(id));
    msg.attributes.push(NexthopAttribute::Group(
        members
            .iter()
            .map(|&(id, weight)| NexthopGroupEntry { id, weight })
            .collect(),
    ));
    msg
}

/// A resilient group `id` of `(member id, weight)`, with `buckets` and its idle and
/// unbalanced timers (clock_t: hundredths of a second).
pub fn resilient_group(
    id: u32,
    members: &[(u32, u32)],
    buckets: u16,
    idle: u32,
    unbalanced: u32,
) -> NexthopMessage {
    let mut msg = nexthop_group(id, members);
    msg.attributes
        .push(NexthopAttribute::GroupType(NEXTHOP_GRP_TYPE_RES));
    msg.attributes.push(NexthopAttribute::ResilientGroup(vec![
        ResilientAttribute::Buckets(buckets),
        ResilientAttribute::IdleTimer(idle),
        ResilientAttribute::UnbalancedTimer(unbalanced),
    ]));
    msg
}

/// Adds a nexthop object (RTM_NEWNEXTHOP; never replaces one).
pub fn add_nexthop(rtnl: &mut Rtnl, msg: &NexthopMessage) -> Result<()> {
    let what = format!("adding nexthop {}", msg.id());
    let request = Request::create(msg.to_raw(RTM_NEWNEXTHOP), what.clone());
    rtnl.batch_raw(vec![request])
        .pop()
        .unwrap_or_else(|| panic!("{what}: no reply"))
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
    /// Every raw request sent through `batch_raw`, in order (each answered with an ACK).
    pub sent_raw: Vec<Request<RawMessage>>,
    /// Every raw dump request, in order (each answered with nothing).
    pub dumps_raw: Vec<RawMessage>,
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

    fn batch_raw(&mut self, requests: Vec<Request<RawMessage>>) -> Vec<Reply<RawMessage>> {
        requests
            .into_iter()
            .map(|r| {
                self.sent_raw.push(r);
                Ok(Vec::new())
            })
            .collect()
    }

    fn dump_raw(&mut self, message: RawMessage, _context: &str) -> Result<Vec<RawMessage>> {
        self.dumps_raw.push(message);
        Ok(Vec::new())
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

/// A process that sits in a user namespace of its own (and optionally a network namespace
/// owned by it), like a rootless container's init. Killed when dropped.
#[derive(Debug)]
pub struct UsernsProcess {
    /// Its pid: `/proc/PID/ns/user` and `/proc/PID/ns/net` name its namespaces.
    pub pid: u32,
}

impl UsernsProcess {
    /// Forks a child that unshares a user namespace (root inside mapped to root outside) and,
    /// with `with_netns`, a network namespace owned by it; then waits to be killed.
    pub fn spawn(with_netns: bool) -> UsernsProcess {
        use nix::sched::{unshare, CloneFlags};
        use nix::unistd::{fork, pipe, read, write, ForkResult};
        let (ready_r, ready_w) = pipe().unwrap();
        let mut flags = CloneFlags::CLONE_NEWUSER;
        if with_netns {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        // SAFETY: the child only makes async-signal-safe system calls.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let ok = unshare(flags).is_ok();
                let _ = write(&ready_w, &[u8::from(ok)]);
                loop {
                    // SAFETY: pause is async-signal-safe; the parent kills us.
                    unsafe { libc::pause() };
                }
            }
            ForkResult::Parent { child } => {
                drop(ready_w);
                let mut b = [0u8; 1];
                let n = read(&ready_r, &mut b).unwrap_or(0);
                let p = UsernsProcess {
                    pid: child.as_raw() as u32,
                };
                assert!(
                    n == 1 && b[0] == 1,
                    "the child could not unshare its namespaces"
                );
                for (file, map) in [("uid_map", "0 0 4294967295"), ("gid_map", "0 0 4294967295")] {
                    std::fs::write(format!("/proc/{}/{file}", p.pid), map)
                        .unwrap_or_else(|e| panic!("writing {file}: {e}"));
                }
                p
            }
        }
    }

    /// `/proc/PID/ns/user`.
    pub fn userns_path(&self) -> std::path::PathBuf {
        format!("/proc/{}/ns/user", self.pid).into()
    }

    /// `/proc/PID/ns/net`.
    pub fn netns_path(&self) -> std::path::PathBuf {
        format!("/proc/{}/ns/net", self.pid).into()
    }
}

impl Drop for UsernsProcess {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

/// Sends one ICMP echo request from inside `from` to `to` and waits up to two seconds for the
/// reply. Traffic stays between the test's own namespaces.
pub fn ping(from: &Netns, to: std::net::Ipv4Addr) -> bool {
    from.run(|| ping_here(to)).unwrap_or(false)
}

fn ping_here(to: std::net::Ipv4Addr) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket creation; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd was just returned by socket().
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: setting a timeval option with its own size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let id = (std::process::id() & 0xffff) as u16;
    let mut packet = [
        8u8,
        0,
        0,
        0,
        (id >> 8) as u8,
        id as u8,
        0,
        1,
        b'n',
        b'e',
        b't',
        b'c',
        b'r',
        0,
        0,
        0,
    ];
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(to.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sending our buffer to a sockaddr_in of the right size.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            packet.as_ptr() as *const libc::c_void,
            packet.len(),
            0,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if sent < 0 {
        return false;
    }
    let mut buf = [0u8; 1500];
    for _ in 0..8 {
        // SAFETY: receiving into our buffer.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return false;
        }
        let n = n as usize;
        let ihl = ((buf[0] & 0x0f) as usize) * 4;
        if n >= ihl + 8
            && buf[12..16] == to.octets()
            && buf[ihl] == 0
            && buf[ihl + 4..ihl + 6] == id.to_be_bytes()
        {
            return true;
        }
    }
    false
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Deletes named namespaces when dropped (those a test asked netcr to create), also when the
/// test fails.
#[derive(Debug)]
pub struct NamedCleanup(pub Vec<String>);

impl Drop for NamedCleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            if netcr_netlink::netns::named_exists(name) {
                let _ = Netns::delete_named(name);
            }
        }
    }
}
