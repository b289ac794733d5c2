//! `netcr-criu-hook` tested as CRIU runs it: no arguments, only CRIU's environment, a process
//! whose namespace is dumped at `network-lock`, and a new process in a new, empty namespace
//! that the hook fills at `setup-namespaces`. Nothing but the hook and netcr binaries is run,
//! so these tests also run in the test VM.
//!
//! The root tests run in a private stand-in for the host ([`TestHost`]), so nothing touches the
//! machine's own interfaces; every namespace and process they make is removed when they end,
//! also when they fail.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netcr::app::Policy;
use netcr::app::{write_image, Durability};
use netcr::criu_hook::{
    choose_externals, is_hook_name, parse_file, parse_list, Action, MappingSource, Origin,
    RECORDED_SOURCE,
};
use netcr_core::LowerRole;
use netcr_image::{v1, Image, NetnsImage};
use netcr_netlink::netlink_packet_route::address::AddressAttribute;
use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use netcr_netlink::netlink_packet_route::route::{
    RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::{single, Netns, Request, Rtnl, RtnlExt};
use netcr_testkit::{
    add_address, add_macvlan, add_simple, add_veth, ifindex, link_name, link_snapshot,
    require_root, set_link, TestHost, TestNetns,
};
use nix::sched::CloneFlags;

const HOOK: &str = env!("CARGO_BIN_EXE_netcr-criu-hook");
const NETCR: &str = env!("CARGO_BIN_EXE_netcr");

// ---------------------------------------------------------------------------------------------
// Processes

/// A process standing in for a container's root task: forked, it enters its namespace and
/// waits; killed and reaped when dropped. It runs no other program (the test VM has none).
struct Task(nix::unistd::Pid);

impl Task {
    fn pid(&self) -> u32 {
        self.0.as_raw() as u32
    }

    fn netns(&self) -> Netns {
        Netns::open_pid(self.pid()).expect("opening the task's namespace")
    }

    /// Forks a child that runs `setup` (setns or unshare), reports, closes every fd it
    /// inherited (other tests' pipes and namespaces) and waits to be killed.
    fn spawn(setup: impl FnOnce() -> nix::Result<()>) -> Task {
        let (ready_r, ready_w) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child calls only async-signal-safe functions (setns or unshare, write,
        // close_range, pause, _exit) and never returns into the test harness.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let ok = u8::from(setup().is_ok());
                // SAFETY: as above; `ok` outlives the write.
                unsafe {
                    libc::write(ready_w.as_raw_fd(), std::ptr::addr_of!(ok).cast(), 1);
                    libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
                    if ok == 1 {
                        loop {
                            libc::pause();
                        }
                    }
                    libc::_exit(1)
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(ready_w);
                let task = Task(child);
                let mut ok = [0u8; 1];
                let n = nix::unistd::read(&ready_r, &mut ok).expect("reading");
                assert!(
                    n == 1 && ok[0] == 1,
                    "the task could not enter its namespace"
                );
                task
            }
        }
    }

    /// A task inside `ns`, as a container's processes are.
    fn in_netns(ns: &Netns) -> Task {
        Task::spawn(|| nix::sched::setns(ns, CloneFlags::CLONE_NEWNET))
    }

    /// A task in a new, empty namespace (lo down), as CRIU's restored root task is.
    fn in_new_netns() -> Task {
        Task::spawn(|| nix::sched::unshare(CloneFlags::CLONE_NEWNET))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.0, None);
    }
}

// ---------------------------------------------------------------------------------------------
// Running the hook

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn assert_ok(&self, what: &str) {
        assert_eq!(
            self.code, 0,
            "{what}: exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
    }

    /// Checks the failure contract: non-zero, one error line naming the hook and the action.
    fn assert_failed(&self, action: &str, needles: &[&str]) {
        assert_ne!(self.code, 0, "expected a failure; stderr: {}", self.stderr);
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("netcr-criu-hook: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "one error line expected:\n{}", self.stderr);
        assert!(
            errors[0].starts_with(&format!("netcr-criu-hook: error: {action}: ")),
            "{}",
            errors[0]
        );
        for needle in needles {
            assert!(
                errors[0].contains(needle),
                "the error should mention {needle:?}: {}",
                errors[0]
            );
        }
    }
}

/// How the hook is started.
struct Hook<'a> {
    program: &'a OsStr,
    action: &'a str,
    pid: Option<u32>,
    image_dir: OsString,
    env: Vec<(&'a str, String)>,
    /// An fd the hook inherits (for CRTOOLS_IMAGE_DIR=/proc/self/fd/N).
    inherit_fd: Option<RawFd>,
    /// Run it as this user (and group), without capabilities.
    user: Option<u32>,
    /// Run it without this capability (dropped from the bounding set), as root in a container
    /// or under `capsh --drop` runs.
    drop_cap: Option<i32>,
}

impl<'a> Hook<'a> {
    fn new(action: &'a str, pid: Option<u32>, image_dir: impl Into<OsString>) -> Hook<'a> {
        Hook {
            program: OsStr::new(HOOK),
            action,
            pid,
            image_dir: image_dir.into(),
            env: Vec::new(),
            inherit_fd: None,
            user: None,
            drop_cap: None,
        }
    }

    fn env(mut self, key: &'a str, value: impl Into<String>) -> Hook<'a> {
        self.env.push((key, value.into()));
        self
    }

    /// Runs it as CRIU does: no arguments, a cleared environment with only CRIU's variables
    /// (and PATH), plus whatever the test added.
    fn run(&self) -> Run {
        let mut cmd = Command::new(self.program);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("CRTOOLS_SCRIPT_ACTION", self.action)
            .env("CRTOOLS_IMAGE_DIR", &self.image_dir)
            .stdin(Stdio::null());
        if let Some(pid) = self.pid {
            cmd.env("CRTOOLS_INIT_PID", pid.to_string());
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(id) = self.user {
            cmd.uid(id).gid(id);
        }
        if let Some(fd) = self.inherit_fd {
            // SAFETY: fcntl is async-signal-safe; it only clears FD_CLOEXEC on our own fd.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(cap) = self.drop_cap {
            // SAFETY: prctl with integer arguments is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let start = Instant::now();
        let out = cmd.output().expect("running the hook");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
    }
}

/// A node-wide mapping file that does not exist, so no test reads the machine's /etc.
fn no_node_file(dir: &Path) -> String {
    dir.join("no-such-node-file").display().to_string()
}

/// The host's own files (its policy, its node-wide mappings) in a directory of the test's, so
/// that no test reads or writes the machine's /etc.
struct Etc(tempfile::TempDir);

impl Etc {
    fn new() -> Etc {
        Etc(tempfile::tempdir().expect("tempdir"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// The host policy's path, for NETCR_POLICY_FILE; no file until [`Etc::policy`] writes one.
    fn policy_path(&self) -> String {
        self.path().join("policy").display().to_string()
    }

    /// Writes the host policy; its path, for NETCR_POLICY_FILE.
    fn policy(&self, text: &str) -> String {
        std::fs::write(self.policy_path(), text).expect("writing the policy");
        self.policy_path()
    }
}

// ---------------------------------------------------------------------------------------------
// Building a container and looking at namespaces

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// `ip route add DST/LEN [via GW] dev DEV table TABLE proto static`.
fn add_route(rtnl: &mut Rtnl, dst: IpAddr, len: u8, gw: Option<IpAddr>, dev: &str, table: u32) {
    let index = ifindex(rtnl, dev).unwrap_or_else(|| panic!("no link {dev}"));
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(dst);
    msg.header.destination_prefix_length = len;
    msg.header.table = if table < 256 { table as u8 } else { 252 };
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = if gw.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    msg.header.kind = RouteType::Unicast;
    if len > 0 {
        msg.attributes.push(RouteAttribute::Destination(dst.into()));
    }
    if let Some(gw) = gw {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    msg.attributes.push(RouteAttribute::Oif(index));
    msg.attributes.push(RouteAttribute::Table(table));
    single(
        rtnl,
        Request::create(
            RouteNetlinkMessage::NewRoute(msg),
            format!("adding a route to {dst}/{len}"),
        ),
    )
    .unwrap_or_else(|e| panic!("adding a route to {dst}/{len}: {e}"));
}

fn up(rtnl: &mut Rtnl, name: &str) {
    set_link(rtnl, name, Some(true), Vec::new()).unwrap_or_else(|e| panic!("{name} up: {e}"));
}

/// Host devices to serve as lower devices: veth ends `name` (peer `p-name`), up.
fn host_lowers(host: &TestHost, names: &[&str]) {
    let mut h = host.rtnl();
    for name in names {
        let peer = format!("p-{name}");
        add_veth(&mut h, name, &peer, None).unwrap_or_else(|e| panic!("veth {name}: {e}"));
        up(&mut h, name);
        up(&mut h, &peer);
    }
}

/// A container's namespace as a runtime builds it: macvlans on host devices (vh0, vh1) in
/// three modes, a gap in the ifindexes, one link left down, a changed MTU, IPv4 and IPv6
/// addresses, a default route, `extra_routes` more routes, one in another table.
fn build_container(host: &TestHost, extra_routes: usize) -> TestNetns {
    host_lowers(host, &["vh0", "vh1"]);
    let ct = TestNetns::new("c");
    let mut h = host.rtnl();
    let mode = |m| vec![InfoMacVlan::Mode(m)];
    add_macvlan(
        &mut h,
        "mv0",
        "vh0",
        mode(MacVlanMode::Bridge),
        Some(&ct.netns),
    )
    .unwrap();
    add_macvlan(
        &mut h,
        "gap",
        "vh0",
        mode(MacVlanMode::Bridge),
        Some(&ct.netns),
    )
    .unwrap();
    add_macvlan(
        &mut h,
        "mv1",
        "vh1",
        mode(MacVlanMode::Private),
        Some(&ct.netns),
    )
    .unwrap();
    add_macvlan(
        &mut h,
        "mv2",
        "vh0",
        mode(MacVlanMode::Vepa),
        Some(&ct.netns),
    )
    .unwrap();
    let mut c = ct.rtnl();
    let gap = ifindex(&mut c, "gap").unwrap();
    c.del_link(gap, "deleting gap").unwrap();
    up(&mut c, "lo");
    up(&mut c, "mv0");
    set_link(&mut c, "mv1", Some(true), vec![LinkAttribute::Mtu(1400)]).unwrap();
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    add_address(&mut c, "mv0", v4(10, 1, 0, 2), 24).unwrap();
    add_address(&mut c, "mv0", "fd00::2".parse().unwrap(), 64).unwrap();
    add_address(&mut c, "mv1", v4(10, 2, 0, 2), 24).unwrap();
    add_address(&mut c, "mv2", v4(10, 3, 0, 2), 24).unwrap();
    let gw = Some(v4(10, 1, 0, 1));
    add_route(&mut c, v4(0, 0, 0, 0), 0, gw, "mv0", 254);
    for i in 0..extra_routes {
        add_route(&mut c, v4(10, 100, i as u8, 0), 24, gw, "mv0", 254);
    }
    add_route(
        &mut c,
        v4(10, 200, 0, 0),
        16,
        Some(v4(10, 2, 0, 1)),
        "mv1",
        100,
    );
    let v6gw: IpAddr = "fd00::1".parse().unwrap();
    add_route(
        &mut c,
        "fd01::".parse().unwrap(),
        64,
        Some(v6gw),
        "mv0",
        254,
    );
    ct
}

/// Removes a container's links, as its namespace's end does. The kernel frees a dead
/// namespace's devices asynchronously, and a macvlan whose MAC is still on its lower device
/// makes the restore fail (EADDRINUSE), so the test removes them synchronously first.
fn remove_links(ns: &Netns) {
    let mut rtnl = Rtnl::open_in(ns).unwrap();
    for link in rtnl.dump_links().unwrap() {
        if link_name(&link) != Some("lo") {
            rtnl.del_link(link.header.index, "removing a container link")
                .unwrap();
        }
    }
}

/// What a user compares: links (ifindex, name, kind, macvlan mode and flags, MTU, MAC, user
/// flags, lower device, group, txqlen, alias), addresses, and routes (IPv4: every table;
/// IPv6: those not made by the kernel).
#[derive(Debug, PartialEq, Eq)]
struct View {
    links: Vec<String>,
    addresses: Vec<String>,
    routes: Vec<String>,
}

fn link_line(l: &LinkMessage) -> String {
    // up, broadcast, loopback, pointopoint, noarp, promisc, allmulti, multicast: not RUNNING,
    // which follows the carrier a moment later.
    const USER_FLAGS: u32 = 0x1 | 0x2 | 0x8 | 0x10 | 0x80 | 0x100 | 0x200 | 0x1000;
    let mut fields = vec![
        format!("#{}", l.header.index),
        format!("flags {:#x}", l.header.flags.bits() & USER_FLAGS),
    ];
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => fields.insert(0, n.clone()),
            LinkAttribute::Mtu(m) => fields.push(format!("mtu {m}")),
            LinkAttribute::Address(m) => fields.push(format!("mac {m:02x?}")),
            LinkAttribute::Link(m) => fields.push(format!("lower #{m}")),
            LinkAttribute::Group(g) => fields.push(format!("group {g}")),
            LinkAttribute::IfAlias(a) => fields.push(format!("alias {a}")),
            LinkAttribute::TxQueueLen(q) => fields.push(format!("txqlen {q}")),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => fields.push(format!("kind {k}")),
                        LinkInfo::Data(InfoData::MacVlan(data)) => {
                            for d in data {
                                match d {
                                    InfoMacVlan::Mode(m) => fields.push(format!("mode {m:?}")),
                                    InfoMacVlan::Flags(f) => fields.push(format!("mvflags {f:?}")),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    fields.join(" ")
}

fn view(ns: &Netns) -> View {
    let mut rtnl = Rtnl::open_in(ns).unwrap();
    let links = rtnl.dump_links().unwrap();
    let name_of = |i: u32| {
        links
            .iter()
            .find(|l| l.header.index == i)
            .and_then(link_name)
            .unwrap_or("?")
            .to_string()
    };
    // The kernel's fallback tunnels (tunl0, gre0, ...), which every namespace gets once a
    // tunnel module is loaded (the VM loads them), are the kernel's, as netcr treats them.
    let mut link_lines: Vec<String> = links
        .iter()
        .filter(|l| {
            let p = netcr_core::common::parse(l);
            !netcr_core::common::is_kernel_fallback(p.name, &p.kind)
        })
        .map(link_line)
        .collect();
    link_lines.sort();
    let mut addresses = Vec::new();
    let mut routes = Vec::new();
    for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
        for a in rtnl.dump_addresses(fam).unwrap() {
            let ip = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let ip = ip.or_else(|| {
                a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            let Some(ip) = ip else { continue };
            if matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80) {
                continue; // link-local: the kernel's, made when the link comes up
            }
            addresses.push(format!(
                "{} {ip}/{}",
                name_of(a.header.index),
                a.header.prefix_len
            ));
        }
        for r in rtnl.dump_routes(fam).unwrap() {
            if fam == AddressFamily::Inet6 && r.header.protocol == RouteProtocol::Kernel {
                continue;
            }
            let mut fields = vec![format!(
                "{fam:?} /{} {:?} {:?} {:?} t{}",
                r.header.destination_prefix_length,
                r.header.kind,
                r.header.protocol,
                r.header.scope,
                r.header.table
            )];
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(d) => fields.push(format!("dst {d:?}")),
                    RouteAttribute::Gateway(g) => fields.push(format!("via {g:?}")),
                    RouteAttribute::PrefSource(s) => fields.push(format!("src {s:?}")),
                    RouteAttribute::Oif(i) => fields.push(format!("dev {}", name_of(*i))),
                    RouteAttribute::Priority(p) => fields.push(format!("metric {p}")),
                    RouteAttribute::Table(t) => fields.push(format!("table {t}")),
                    _ => {}
                }
            }
            routes.push(fields.join(" "));
        }
    }
    addresses.sort();
    routes.sort();
    View {
        links: link_lines,
        addresses,
        routes,
    }
}

/// A new namespace as CRIU makes it: nothing but lo, down.
fn assert_pristine(ns: &Netns) {
    let v = view(ns);
    assert_eq!(v.links.len(), 1, "{:?}", v.links);
    assert!(v.links[0].starts_with("lo #1 flags 0x8 "), "{:?}", v.links);
    assert!(v.addresses.is_empty(), "{:?}", v.addresses);
    assert!(v.routes.is_empty(), "{:?}", v.routes);
}

/// The lower device (`IFLA_LINK`) of a link, by name.
fn lower_of(ns: &Netns, name: &str) -> u32 {
    let mut rtnl = Rtnl::open_in(ns).unwrap();
    let link = rtnl
        .dump_links()
        .unwrap()
        .into_iter()
        .find(|l| link_name(l) == Some(name))
        .unwrap_or_else(|| panic!("no link {name}"));
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Link(i) => Some(*i),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} has no lower device"))
}

/// The image directory CRIU would hand over, and an open fd on it (CRIU passes
/// `/proc/<criu pid>/fd/<fd>`).
struct ImagesDir {
    dir: tempfile::TempDir,
    fd: File,
}

impl ImagesDir {
    fn new() -> ImagesDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let fd = File::open(dir.path()).expect("opening the image dir");
        ImagesDir { dir, fd }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The form CRIU uses: the image directory's fd in another process (here: the test's).
    fn proc_fd_path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    fn netcr(&self) -> PathBuf {
        self.path().join("netcr")
    }
}

// ---------------------------------------------------------------------------------------------
// The contract, end to end

/// The whole cycle as CRIU drives it: `network-lock` with the container's task frozen (here:
/// sleeping), the container gone, a new task in a new empty namespace, `setup-namespaces`,
/// and the namespace is the same as before: links with their ifindexes, names, MACs, modes,
/// addresses and routes.
#[test]
fn checkpoint_and_restore_give_back_the_namespace() {
    require_root!();
    let host = TestHost::enter();
    let ct = build_container(&host, 12);
    let task = Task::in_netns(&ct.netns);
    let before = view(&task.netns());
    // The deleted "gap" link left a hole in the ifindexes, which a restore must keep.
    let indexes: Vec<u32> = before
        .links
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1)?.strip_prefix('#')?.parse().ok())
        .collect();
    assert_eq!(indexes.len(), 4, "{:?}", before.links);
    assert!(indexes.iter().any(|&i| i > 4), "no gap: {:?}", before.links);
    let host_before = link_snapshot(&mut host.rtnl());
    let images = ImagesDir::new();

    // Dump, with CRTOOLS_IMAGE_DIR as CRIU sets it: /proc/<pid>/fd/<n>.
    let run = Hook::new("network-lock", Some(task.pid()), images.proc_fd_path()).run();
    run.assert_ok("network-lock");
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    assert!(images.netcr().join("inventory.img").is_file());
    assert_eq!(
        entries(images.path()),
        ["netcr"],
        "only the image, no temporary files"
    );
    assert!(run.stderr.contains("dumped netns"), "{}", run.stderr);
    // The dump changes nothing.
    assert_eq!(view(&task.netns()), before);

    // The container goes away.
    remove_links(&ct.netns);
    drop(task);
    drop(ct);

    // CRIU's restore: the root task in a new, empty namespace, on a node whose policy lets
    // images put macvlans on its vh* devices.
    let restored = Task::in_new_netns();
    assert_pristine(&restored.netns());
    let etc = Etc::new();
    let policy = etc.policy("# node policy\nlower vh* macvlan\n");
    let run = Hook::new(
        "setup-namespaces",
        Some(restored.pid()),
        images.path().as_os_str(),
    )
    .env("NETCR_POLICY_FILE", policy.clone())
    .run();
    run.assert_ok("setup-namespaces");
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    let after = view(&restored.netns());
    assert_eq!(after.links, before.links, "links (ifindexes included)");
    assert_eq!(after.addresses, before.addresses, "addresses");
    assert_eq!(after.routes, before.routes, "routes");
    // Each mapping source was looked at and said so; the lower devices came from the image,
    // allowed by the policy.
    for needle in [
        "netcr-criu-hook: info: external mappings, 1. NETCR_EXTERNAL: not set",
        "/netcr/external (the image's: honoured where the host policy allows): not present",
        "external mappings, 3. /etc/netcr/external",
        &format!("host policy {policy}: lower vh* macvlan"),
        &format!("macvlan \"mv0\": lower device \"vh0\" (from the devices recorded at dump time; allowed by {policy}, line 2)"),
        &format!("macvlan \"mv1\": lower device \"vh1\" (from the devices recorded at dump time; allowed by {policy}, line 2)"),
    ] {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} not in:\n{}",
            run.stderr
        );
    }
    // The host's devices are as they were.
    assert_eq!(link_snapshot(&mut host.rtnl()), host_before);
}

/// CRTOOLS_IMAGE_DIR as `/proc/self/fd/N`, an fd the hook inherits, works for both steps.
#[test]
fn image_dir_as_an_inherited_fd() {
    require_root!();
    let host = TestHost::enter();
    let ct = build_container(&host, 2);
    let task = Task::in_netns(&ct.netns);
    let before = view(&task.netns());
    let images = ImagesDir::new();
    let fd = images.fd.as_raw_fd();
    let mut hook = Hook::new(
        "network-lock",
        Some(task.pid()),
        format!("/proc/self/fd/{fd}"),
    )
    .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()));
    hook.inherit_fd = Some(fd);
    hook.run().assert_ok("network-lock");
    assert!(images.netcr().join("inventory.img").is_file());
    remove_links(&ct.netns);
    drop(task);
    drop(ct);

    let restored = Task::in_new_netns();
    let etc = Etc::new();
    let mut hook = Hook::new(
        "setup-namespaces",
        Some(restored.pid()),
        format!("/proc/self/fd/{fd}"),
    )
    .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
    .env("NETCR_POLICY_FILE", etc.policy("lower vh0\nlower vh1\n"));
    hook.inherit_fd = Some(fd);
    hook.run().assert_ok("setup-namespaces");
    assert_eq!(view(&restored.netns()), before);
}

/// Per device, the first source with a mapping wins: NETCR_EXTERNAL, then the image's
/// `external` file, then the node-wide file, then the device recorded at dump time (the
/// image's two allowed by the host policy). Run through `netcr` under the hook's name, which
/// must be the same code path.
#[test]
fn external_mappings_follow_their_precedence() {
    require_root!();
    let host = TestHost::enter();
    host_lowers(&host, &["la", "lb", "lc", "ld"]);
    let ct = TestNetns::new("c");
    {
        let mut h = host.rtnl();
        for mv in ["mv0", "mv1", "mv2", "mv3"] {
            add_macvlan(&mut h, mv, "la", Vec::new(), Some(&ct.netns)).unwrap();
        }
    }
    let task = Task::in_netns(&ct.netns);
    let images = ImagesDir::new();
    let bin = tempfile::tempdir().unwrap();
    let as_hook = bin.path().join("netcr-criu-hook");
    std::os::unix::fs::symlink(NETCR, &as_hook).unwrap();
    let node_file = bin.path().join("node-external");
    let etc = Etc::new();
    let policy = etc.policy("lower la macvlan\nlower lc\n");

    let mut hook = Hook::new("network-lock", Some(task.pid()), images.path().as_os_str());
    hook.program = as_hook.as_os_str();
    hook.run().assert_ok("network-lock through netcr");
    assert!(images.netcr().join("inventory.img").is_file());
    remove_links(&ct.netns);
    drop(task);
    drop(ct);

    std::fs::write(
        images.netcr().join("external"),
        "# this image's own mappings\nmacvlan[mv0]:lc\n  macvlan[mv1]:lc   # after a blank: a comment\n",
    )
    .unwrap();
    std::fs::write(
        &node_file,
        "macvlan[mv0]:ld\nmacvlan[mv1]:ld\nmacvlan[mv2]:ld\nmacvlan[another]:ld\n",
    )
    .unwrap();
    let restored = Task::in_new_netns();
    let mut hook = Hook::new(
        "setup-namespaces",
        Some(restored.pid()),
        images.path().as_os_str(),
    )
    .env("NETCR_EXTERNAL", "macvlan[mv0]:lb")
    .env("NETCR_EXTERNAL_FILE", node_file.display().to_string())
    .env("NETCR_POLICY_FILE", policy.clone());
    hook.program = as_hook.as_os_str();
    let run = hook.run();
    run.assert_ok("setup-namespaces through netcr");

    let mut h = host.rtnl();
    let ns = restored.netns();
    for (mv, lower, source) in [
        ("mv0", "lb", "NETCR_EXTERNAL".to_string()),
        (
            "mv1",
            "lc",
            format!(
                "{}; allowed by {policy}, line 2",
                images.netcr().join("external").display()
            ),
        ),
        ("mv2", "ld", node_file.display().to_string()),
        (
            "mv3",
            "la",
            format!("{RECORDED_SOURCE}; allowed by {policy}, line 1"),
        ),
    ] {
        assert_eq!(
            lower_of(&ns, mv),
            ifindex(&mut h, lower).unwrap(),
            "{mv} should sit on {lower}\n{}",
            run.stderr
        );
        let line = format!("macvlan \"{mv}\": lower device \"{lower}\" (from {source})");
        assert!(
            run.stderr.contains(&line),
            "{line:?} not in:\n{}",
            run.stderr
        );
    }
    for needle in [
        "1. NETCR_EXTERNAL: macvlan[mv0]:lb",
        "netcr/external (the image's: honoured where the host policy allows): macvlan[mv0]:lc, macvlan[mv1]:lc",
        "node-external: macvlan[mv0]:ld, macvlan[mv1]:ld, macvlan[mv2]:ld, macvlan[another]:ld",
    ] {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} not in:\n{}",
            run.stderr
        );
    }
}

/// The requests that make a small firewall: table inet ct, a base chain "input" (policy
/// drop), and a rule counting 2 packets and 100 bytes, then accepting.
fn firewall() -> Vec<Request<netcr_netlink::RawMessage>> {
    use netcr_netlink::nftables::{chain, common, hook, msg, rule, table, Attr, NftMessage};
    let inet = 1;
    let expr = |name: &str, data: Vec<Attr>| {
        Attr::nested(
            common::LIST_ELEM,
            &[
                Attr::string(common::EXPR_NAME, name),
                Attr::nested(common::EXPR_DATA, &data),
            ],
        )
    };
    let counter = expr(
        "counter",
        vec![
            Attr::new(1, 100u64.to_be_bytes().to_vec()),
            Attr::new(2, 2u64.to_be_bytes().to_vec()),
        ],
    );
    let accept = expr(
        "immediate",
        vec![
            Attr::be32(1, 0),
            Attr::nested(
                2,
                &[Attr::nested(
                    common::DATA_VERDICT,
                    &[Attr::be32(common::VERDICT_CODE, 1)],
                )],
            ),
        ],
    );
    let messages = [
        NftMessage::new(msg::NEWTABLE, inet, vec![Attr::string(table::NAME, "ct")]),
        NftMessage::new(
            msg::NEWCHAIN,
            inet,
            vec![
                Attr::string(chain::TABLE, "ct"),
                Attr::string(chain::NAME, "input"),
                Attr::nested(
                    chain::HOOK,
                    &[Attr::be32(hook::HOOKNUM, 1), Attr::be32(hook::PRIORITY, 0)],
                ),
                Attr::be32(chain::POLICY, 0),
                Attr::string(chain::TYPE, "filter"),
            ],
        ),
        NftMessage::new(
            msg::NEWRULE,
            inet,
            vec![
                Attr::string(rule::TABLE, "ct"),
                Attr::string(rule::CHAIN, "input"),
                Attr::nested(rule::EXPRESSIONS, &[counter, accept]),
            ],
        ),
    ];
    messages
        .iter()
        .map(|m| Request::create(m.to_raw(), "building the container's firewall"))
        .collect()
}

/// The nf_tables ruleset of `ns` as netcr keeps it (handles aside), or `None` where the
/// kernel has none.
fn ruleset(ns: &Netns) -> Option<Vec<netcr_core::nftables::Object>> {
    let mut s = netcr_netlink::RawSocket::open_in(ns, netcr_netlink::Protocol::Netfilter, "t")
        .expect("netfilter socket");
    let dumped = netcr_netlink::nftables::dump_ruleset(&mut s).unwrap()?;
    Some(netcr_core::nftables::organize(&dumped).unwrap())
}

/// The container's firewall comes back with the rest, its counters as they were (the hook
/// keeps them: a restored container carries on).
#[test]
fn the_firewall_comes_back_through_the_hook_counters_and_all() {
    require_root!();
    let host = TestHost::enter();
    let mut before = None;
    let images = dumped_container_with(&host, |ct| {
        let mut nf = netcr_netlink::RawSocket::open_in(
            &ct.netns,
            netcr_netlink::Protocol::Netfilter,
            "container",
        )
        .unwrap();
        if ruleset(&ct.netns).is_none() {
            let vm = std::env::var_os("NETCR_VMTEST").is_some_and(|v| v == "1");
            assert!(vm, "this kernel has no nf_tables");
            return;
        }
        use netcr_netlink::RawTransport;
        nf.transaction(10, firewall(), "building the container's firewall")
            .unwrap();
        before = ruleset(&ct.netns);
    });
    let Some(before) = before else {
        eprintln!("SKIPPED: the guest's kernel has no nf_tables");
        return;
    };
    assert_eq!(before.len(), 3, "{before:?}");
    let restored = Task::in_new_netns();
    let etc = Etc::new();
    Hook::new(
        "setup-namespaces",
        Some(restored.pid()),
        images.path().as_os_str(),
    )
    .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
    .env("NETCR_POLICY_FILE", etc.policy("lower vh0 macvlan\n"))
    .run()
    .assert_ok("setup-namespaces");
    assert_eq!(ruleset(&restored.netns()).unwrap(), before);
}

// ---------------------------------------------------------------------------------------------
// Failures: non-zero, one line, nothing left behind

/// Dumps a small container (mv0 on vh0) and removes it; returns the image directory.
fn dumped_container(host: &TestHost) -> ImagesDir {
    dumped_container_with(host, |_| {})
}

/// [`dumped_container`], with `add` giving the container more before the dump.
fn dumped_container_with(host: &TestHost, add: impl FnOnce(&TestNetns)) -> ImagesDir {
    host_lowers(host, &["vh0"]);
    let ct = TestNetns::new("c");
    add_macvlan(&mut host.rtnl(), "mv0", "vh0", Vec::new(), Some(&ct.netns)).unwrap();
    let mut c = ct.rtnl();
    up(&mut c, "mv0");
    add_address(&mut c, "mv0", IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2)), 24).unwrap();
    add(&ct);
    let task = Task::in_netns(&ct.netns);
    let images = ImagesDir::new();
    Hook::new("network-lock", Some(task.pid()), images.path().as_os_str())
        .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
        .run()
        .assert_ok("network-lock");
    remove_links(&ct.netns);
    images
}

#[test]
fn restore_without_the_lower_device_fails_and_changes_nothing() {
    require_root!();
    let host = TestHost::enter();
    let images = dumped_container(&host);
    let mut h = host.rtnl();
    let vh0 = ifindex(&mut h, "vh0").unwrap();
    h.del_link(vh0, "deleting vh0").unwrap();
    let host_before = link_snapshot(&mut h);

    let restored = Task::in_new_netns();
    let etc = Etc::new();
    let run = Hook::new(
        "setup-namespaces",
        Some(restored.pid()),
        images.path().as_os_str(),
    )
    .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
    .env("NETCR_POLICY_FILE", etc.policy("lower vh0 macvlan\n"))
    .run();
    run.assert_failed(
        "setup-namespaces",
        &["mv0", "\"vh0\", does not exist here", "NETCR_EXTERNAL"],
    );
    assert_pristine(&restored.netns());
    assert_eq!(link_snapshot(&mut h), host_before);
}

#[test]
fn malformed_mappings_fail_naming_their_source() {
    require_root!();
    let host = TestHost::enter();
    let images = dumped_container(&host);
    let restored = Task::in_new_netns();
    let node_file = images.path().join("node-external");
    let etc = Etc::new();
    let policy = etc.policy("lower vh0 macvlan\n");
    let hook = |env: &[(&'static str, String)]| {
        let mut hook = Hook::new(
            "setup-namespaces",
            Some(restored.pid()),
            images.path().as_os_str(),
        )
        .env("NETCR_EXTERNAL_FILE", node_file.display().to_string())
        .env("NETCR_POLICY_FILE", policy.clone());
        for (k, v) in env {
            hook = hook.env(k, v.clone());
        }
        hook.run()
    };

    let run = hook(&[("NETCR_EXTERNAL", "macvlan[mv0]:vh0, macvlan:eth0".into())]);
    run.assert_failed(
        "setup-namespaces",
        &["NETCR_EXTERNAL, item 2", "macvlan:eth0"],
    );

    let run = hook(&[("NETCR_EXTERNAL", "macvlan[mv0]:vh0,macvlan[mv0]:vh1".into())]);
    run.assert_failed("setup-namespaces", &["NETCR_EXTERNAL", "mapped twice"]);

    std::fs::write(&node_file, "macvlan[mv0]:vh0\n\nmacvlan[mv0 eth0\n").unwrap();
    let run = hook(&[]);
    run.assert_failed(
        "setup-namespaces",
        &[&format!("{}, line 3", node_file.display())],
    );
    std::fs::remove_file(&node_file).unwrap();

    let image_file = images.netcr().join("external");
    std::fs::write(&image_file, "veth[eth0]\n").unwrap();
    let run = hook(&[]);
    run.assert_failed(
        "setup-namespaces",
        &[&format!("{}, line 1", image_file.display())],
    );
    std::fs::remove_file(&image_file).unwrap();

    assert_pristine(&restored.netns());
    // With the sources fixed, the same restore goes through.
    hook(&[]).assert_ok("setup-namespaces");
}

#[test]
fn restore_without_an_image_fails() {
    require_root!();
    let _host = TestHost::enter();
    let images = ImagesDir::new();
    let restored = Task::in_new_netns();
    let run = Hook::new(
        "setup-namespaces",
        Some(restored.pid()),
        images.path().as_os_str(),
    )
    .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
    .run();
    run.assert_failed("setup-namespaces", &["no netcr image", "netcr-criu-hook"]);
    assert_pristine(&restored.netns());
}

/// A restore that fails halfway (an injected failure at its fourth kernel request) rolls back:
/// the namespace is empty again and the host unchanged.
#[test]
fn restore_failing_halfway_leaves_nothing_behind() {
    require_root!();
    let host = TestHost::enter();
    let images = dumped_container(&host);
    let host_before = link_snapshot(&mut host.rtnl());
    let restored = Task::in_new_netns();
    let etc = Etc::new();
    let policy = etc.policy("lower vh0 macvlan\n");
    for at in 0..4 {
        let run = Hook::new(
            "setup-namespaces",
            Some(restored.pid()),
            images.path().as_os_str(),
        )
        .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
        .env("NETCR_POLICY_FILE", policy.clone())
        .env("NETCR_TEST_FAIL_AT_REQUEST", at.to_string())
        .run();
        run.assert_failed("setup-namespaces", &["injected failure"]);
        assert_pristine(&restored.netns());
        assert_eq!(link_snapshot(&mut host.rtnl()), host_before);
    }
}

// ---------------------------------------------------------------------------------------------
// The image is not the host's word

/// Runs `setup-namespaces` for `task` from `images`, with no node-wide file and the host policy
/// at `policy`, plus `env`.
fn restore_with(
    task: &Task,
    images: &ImagesDir,
    policy: &str,
    env: &[(&'static str, String)],
) -> Run {
    let mut hook = Hook::new(
        "setup-namespaces",
        Some(task.pid()),
        images.path().as_os_str(),
    )
    .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
    .env("NETCR_POLICY_FILE", policy.to_string());
    for (k, v) in env {
        hook = hook.env(k, v.clone());
    }
    hook.run()
}

/// A dumped container ([`dumped_container`]: mv0 on vh0, and here also a host device vh1), the
/// host's own files, a new task to restore it for, and the host's links to compare with after
/// a refusal.
struct Restore {
    restored: Task,
    images: ImagesDir,
    etc: Etc,
    host_before: Vec<String>,
    // Last: the test thread leaves the stand-in host when everything else is gone.
    host: TestHost,
}

impl Restore {
    fn new() -> Restore {
        let host = TestHost::enter();
        let images = dumped_container(&host);
        host_lowers(&host, &["vh1"]);
        Restore {
            restored: Task::in_new_netns(),
            images,
            etc: Etc::new(),
            host_before: link_snapshot(&mut host.rtnl()),
            host,
        }
    }

    /// `setup-namespaces` into the new task ([`restore_with`]).
    fn run(&self, policy: &str, env: &[(&'static str, String)]) -> Run {
        restore_with(&self.restored, &self.images, policy, env)
    }

    /// A refused restore left the new namespace and the host as they were.
    fn assert_untouched(&self, case: &str) {
        assert_pristine(&self.restored.netns());
        assert_eq!(
            link_snapshot(&mut self.host.rtnl()),
            self.host_before,
            "{case}"
        );
    }
}

/// The image's macvlan sat on the host's vh0 at dump time. Without a policy, or with one that
/// lists other devices, the restore is refused before any change, naming the device, the host
/// device, the policy line and the NETCR_EXTERNAL value that would allow it; with that line,
/// or with the host's own mapping (NETCR_EXTERNAL, the node-wide file), it restores.
#[test]
fn an_image_alone_cannot_choose_a_lower_device() {
    require_root!();
    let t = Restore::new();
    let run = t.run(&t.etc.policy_path(), &[]);
    run.assert_failed(
        "setup-namespaces",
        &[
            "macvlan \"mv0\": the image asks for lower device \"vh0\" (from the devices recorded at dump time)",
            &format!(
                "the host policy {} does not allow it (there is no such file)",
                t.etc.policy_path()
            ),
            "the line \"lower vh0 macvlan\" there would",
            "NETCR_EXTERNAL=macvlan[mv0]:vh0",
        ],
    );
    t.assert_untouched("no policy");

    let other = t
        .etc
        .policy("lower vh1\nlower vh0 macvtap\nouter *\nbridge *\n");
    t.run(&other, &[]).assert_failed(
        "setup-namespaces",
        &[
            "lower device \"vh0\"",
            "the line \"lower vh0 macvlan\" there would",
        ],
    );
    t.assert_untouched("a policy for other devices");

    let vh0 = ifindex(&mut t.host.rtnl(), "vh0").unwrap();
    let policy = t.etc.policy("lower vh1\nlower vh0 macvlan\n");
    let run = t.run(&policy, &[]);
    run.assert_ok("setup-namespaces with the policy line");
    assert_eq!(lower_of(&t.restored.netns(), "mv0"), vh0);
    let line = format!("(from the devices recorded at dump time; allowed by {policy}, line 2)");
    assert!(run.stderr.contains(&line), "{line:?} not in {}", run.stderr);
    remove_links(&t.restored.netns());

    // No policy at all, and the host maps it itself.
    std::fs::remove_file(t.etc.policy_path()).unwrap();
    let node_file = t.etc.path().join("external");
    std::fs::write(&node_file, "macvlan[*]:vh0\n").unwrap();
    let by_node = [("NETCR_EXTERNAL_FILE", node_file.display().to_string())];
    let by_env = [("NETCR_EXTERNAL", "macvlan[mv0]:vh0".to_string())];
    for env in [&by_env[..], &by_node[..]] {
        let task = Task::in_new_netns();
        let run = restore_with(&task, &t.images, &t.etc.policy_path(), env);
        run.assert_ok(&format!("setup-namespaces with {env:?}"));
        assert_eq!(lower_of(&task.netns(), "mv0"), vh0);
        remove_links(&task.netns());
    }
}

/// The image's own `external` file is the image's word too: a veth's host end on a bridge
/// the policy does not list is refused before anything is created; on one it lists, it
/// restores.
#[test]
fn an_image_file_naming_a_bridge_outside_the_policy_is_refused() {
    require_root!();
    let host = TestHost::enter();
    {
        let mut h = host.rtnl();
        for br in ["br-ct", "br-mgmt"] {
            add_simple(&mut h, br, InfoKind::Bridge).unwrap();
            up(&mut h, br);
        }
    }
    let ct = TestNetns::new("c");
    add_veth(&mut host.rtnl(), "hv0", "eth0", Some(&ct.netns)).unwrap();
    up(&mut ct.rtnl(), "eth0");
    let task = Task::in_netns(&ct.netns);
    let images = ImagesDir::new();
    Hook::new("network-lock", Some(task.pid()), images.path().as_os_str())
        .run()
        .assert_ok("network-lock");
    remove_links(&ct.netns);
    drop(task);
    drop(ct);

    let etc = Etc::new();
    let policy = etc.policy("outer x\nbridge br-ct\n");
    let external = images.netcr().join("external");
    std::fs::write(&external, "veth[eth0]:x@br-mgmt\n").unwrap();
    let host_before = link_snapshot(&mut host.rtnl());
    let restored = Task::in_new_netns();
    let run = restore_with(&restored, &images, &policy, &[]);
    run.assert_failed(
        "setup-namespaces",
        &[
            &format!(
                "veth \"eth0\": the image asks for outer end \"x\" on bridge \"br-mgmt\" (from {})",
                external.display()
            ),
            &format!(
                "the host policy {policy} does not allow it; the line \"bridge br-mgmt\" there would"
            ),
            "NETCR_EXTERNAL=veth[eth0]:x@br-mgmt",
        ],
    );
    assert_pristine(&restored.netns());
    assert_eq!(link_snapshot(&mut host.rtnl()), host_before);

    std::fs::write(&external, "veth[eth0]:x@br-ct\n").unwrap();
    restore_with(&restored, &images, &policy, &[]).assert_ok("setup-namespaces on br-ct");
    let mut h = host.rtnl();
    let br_ct = ifindex(&mut h, "br-ct").unwrap();
    let x = netcr_testkit::find_link(&mut h, "x").expect("the outer end x");
    assert!(
        x.attributes.contains(&LinkAttribute::Controller(br_ct)),
        "x is not on br-ct: {x:?}"
    );
}

/// A file of the image that is a link to a file outside the image directory is refused, both
/// an image file proper and the image's `external` file, though the file linked to is a good
/// one; back in place, the same restore goes through.
#[test]
fn a_symlinked_image_file_pointing_outside_is_refused() {
    require_root!();
    let t = Restore::new();
    let policy = t.etc.policy("lower vh0 macvlan\n");
    let links = t.images.netcr().join("links-0.img");
    let outside = t.etc.path().join("links-0.img");
    std::fs::rename(&links, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &links).unwrap();
    t.run(&policy, &[]).assert_failed(
        "setup-namespaces",
        &[&format!(
            "{}: a symbolic link that leads out of the image directory: refused",
            links.display()
        )],
    );
    t.assert_untouched("a linked image file");
    std::fs::remove_file(&links).unwrap();
    std::fs::rename(&outside, &links).unwrap();

    let external = t.images.netcr().join("external");
    let outside = t.etc.path().join("mappings");
    std::fs::write(&outside, "macvlan[mv0]:vh0\n").unwrap();
    // A relative link this time, climbing out: netcr/ -> the image directory -> /.
    let climbing = Path::new("../..").join(outside.strip_prefix("/").unwrap());
    std::os::unix::fs::symlink(&climbing, &external).unwrap();
    t.run(&policy, &[]).assert_failed(
        "setup-namespaces",
        &[
            "reading the image's own mappings",
            &format!(
                "{}: a symbolic link that leads out of the image directory",
                external.display()
            ),
        ],
    );
    t.assert_untouched("a linked external file");
    std::fs::remove_file(&external).unwrap();

    t.run(&policy, &[])
        .assert_ok("setup-namespaces, files back");
}

/// An image directory that someone else than root could change is refused, saying what is
/// wrong and the command that fixes it.
#[test]
fn an_image_directory_others_can_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    require_root!();
    let t = Restore::new();
    let policy = t.etc.policy("lower vh0 macvlan\n");
    let netcr = t.images.netcr();
    let chmod =
        |mode| std::fs::set_permissions(&netcr, std::fs::Permissions::from_mode(mode)).unwrap();

    chmod(0o777);
    t.run(&policy, &[]).assert_failed(
        "setup-namespaces",
        &[
            &format!(
                "{}: the image directory is writable by group and others (mode 0777)",
                netcr.display()
            ),
            &format!("fix: chmod go-w {}", netcr.display()),
        ],
    );
    t.assert_untouched("mode 0777");

    chmod(0o700);
    std::os::unix::fs::chown(&netcr, Some(65534), None).unwrap();
    t.run(&policy, &[]).assert_failed(
        "setup-namespaces",
        &[
            "the image directory is owned by uid 65534, not by root",
            &format!("fix: chown root {}", netcr.display()),
        ],
    );
    t.assert_untouched("owned by 65534");

    std::os::unix::fs::chown(&netcr, Some(0), None).unwrap();
    t.run(&policy, &[]).assert_ok("setup-namespaces, fixed");
}

#[test]
fn dump_of_a_vanished_process_fails_and_writes_nothing() {
    require_root!();
    let _host = TestHost::enter();
    let images = ImagesDir::new();
    let task = Task::in_new_netns();
    let pid = task.pid();
    drop(task);
    let run = Hook::new("network-lock", Some(pid), images.path().as_os_str()).run();
    run.assert_failed("network-lock", &["CRTOOLS_INIT_PID", &pid.to_string()]);
    assert_eq!(std::fs::read_dir(images.path()).unwrap().count(), 0);
}

#[test]
fn bad_criu_environment_fails() {
    require_root!();
    let images = ImagesDir::new();
    let file = images.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let cases: Vec<(Hook<'_>, &[&str])> = vec![
        (
            Hook::new("network-lock", None, images.path().as_os_str()),
            &["CRTOOLS_INIT_PID is not set"],
        ),
        (
            Hook::new("network-lock", Some(1), images.path().as_os_str())
                .env("CRTOOLS_INIT_PID", "1x"),
            &["CRTOOLS_INIT_PID=\"1x\" is not a process id"],
        ),
        (
            Hook::new("setup-namespaces", Some(1), ""),
            &["CRTOOLS_IMAGE_DIR is not set"],
        ),
        (
            Hook::new("setup-namespaces", Some(1), file.as_os_str()),
            &["is not a directory"],
        ),
        (
            Hook::new("network-lock", Some(1), "/nonexistent/criu-images"),
            &["CRTOOLS_IMAGE_DIR=/nonexistent/criu-images"],
        ),
    ];
    for (hook, needles) in cases {
        let run = hook.run();
        run.assert_failed(hook.action, needles);
    }
    // Without root's capabilities: said plainly, before anything else.
    let mut hook = Hook::new("network-lock", Some(1), images.path().as_os_str());
    hook.user = Some(65534);
    hook.run()
        .assert_failed("network-lock", &["needs CAP_NET_ADMIN and CAP_SYS_ADMIN"]);
    assert_eq!(std::fs::read_dir(images.path()).unwrap().count(), 1);
}

/// Root is not enough: without CAP_NET_ADMIN or CAP_SYS_ADMIN (a container's root, `capsh
/// --drop`) the hook says which one is missing, as `netcr` does, before touching anything.
#[test]
fn root_without_a_capability_is_refused_before_anything() {
    require_root!();
    let images = ImagesDir::new();
    let task = Task::in_new_netns();
    // Capability numbers (linux/capability.h).
    for (cap, name) in [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")] {
        for action in ["network-lock", "setup-namespaces"] {
            let mut hook = Hook::new(action, Some(task.pid()), images.path().as_os_str())
                .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()));
            hook.drop_cap = Some(cap);
            hook.run().assert_failed(
                action,
                &[
                    &format!("missing {name} (uid 0)"),
                    "needs CAP_NET_ADMIN and CAP_SYS_ADMIN",
                ],
            );
        }
    }
    assert_eq!(std::fs::read_dir(images.path()).unwrap().count(), 0);
    assert_pristine(&task.netns());
}

// ---------------------------------------------------------------------------------------------
// Ignored actions and invocation (no root needed)

const IGNORED: &[&str] = &[
    "pre-dump",
    "post-dump",
    "pre-restore",
    "post-restore",
    "network-unlock",
    "post-setup-namespaces",
    "pre-resume",
    "post-resume",
    "orphan-pts-master",
    "pre-stream",
    "query-ext-files",
    "status-ready",
    "",
    "NETWORK-LOCK",
    "network-lock ",
];

#[test]
fn other_actions_do_nothing() {
    let images = ImagesDir::new();
    let bin = tempfile::tempdir().unwrap();
    let as_hook = bin.path().join("netcr-criu-hook");
    std::os::unix::fs::symlink(NETCR, &as_hook).unwrap();
    for program in [OsStr::new(HOOK), as_hook.as_os_str()] {
        for action in IGNORED {
            // Pointing at a process that does not exist: any attempt to act would fail.
            let mut hook = Hook::new(action, Some(u32::MAX - 1), images.path().as_os_str())
                .env("NETCR_EXTERNAL", "not a mapping");
            hook.program = program;
            let run = hook.run();
            assert_eq!(run.code, 0, "{program:?} {action:?}: {}", run.stderr);
            assert!(
                run.stdout.is_empty() && run.stderr.is_empty(),
                "{action:?}: {run:?}"
            );
            // Even without the other variables (CRIU omits CRTOOLS_INIT_PID for pre-dump).
            let mut hook = Hook::new(action, None, "");
            hook.program = program;
            let run = hook.run();
            assert_eq!(run.code, 0, "{program:?} {action:?}: {}", run.stderr);
            assert!(
                run.stdout.is_empty() && run.stderr.is_empty(),
                "{action:?}: {run:?}"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(images.path()).unwrap().count(),
        0,
        "an ignored action created something"
    );
}

#[test]
fn netcr_under_the_hook_name_is_the_hook() {
    let bin = tempfile::tempdir().unwrap();
    let as_hook = bin.path().join("netcr-criu-hook");
    std::os::unix::fs::symlink(NETCR, &as_hook).unwrap();
    for program in [Path::new(HOOK), as_hook.as_path()] {
        let out = Command::new(program)
            .env_remove("CRTOOLS_SCRIPT_ACTION")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{program:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("netcr-criu-hook: error: CRTOOLS_SCRIPT_ACTION is not set"),
            "{program:?}: {stderr}"
        );
        let out = Command::new(program).arg("--version").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("netcr-criu-hook "));
        let out = Command::new(program).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("action-script"));
        let out = Command::new(program).arg("dump").output().unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
    // Under its own name, netcr is still netcr.
    let out = Command::new(NETCR).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("netcr "));
}

#[test]
fn hook_name_and_actions() {
    assert!(is_hook_name(OsStr::new("netcr-criu-hook")));
    assert!(is_hook_name(OsStr::new("/usr/local/bin/netcr-criu-hook")));
    assert!(!is_hook_name(OsStr::new("/usr/local/bin/netcr")));
    assert!(!is_hook_name(OsStr::new("netcr-criu-hook.old")));
    assert!(!is_hook_name(OsStr::new("/netcr-criu-hook/netcr")));
    assert_eq!(
        Action::from_env_value(OsStr::new("network-lock")),
        Some(Action::NetworkLock)
    );
    assert_eq!(
        Action::from_env_value(OsStr::new("setup-namespaces")),
        Some(Action::SetupNamespaces)
    );
    for other in IGNORED {
        assert_eq!(Action::from_env_value(OsStr::new(other)), None, "{other:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Mapping sources, without a kernel

fn maps(list: &[&str]) -> Vec<netcr_core::ExternalMapping> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn source(name: &str, origin: Origin, list: &[&str]) -> MappingSource {
    MappingSource {
        name: name.into(),
        origin,
        mappings: maps(list),
    }
}

const POLICY: &str = "/etc/netcr/policy";

/// A host policy of these lines, as if read from [`POLICY`].
fn policy(text: &str) -> Policy {
    Policy::parse(Path::new(POLICY), text.as_bytes()).unwrap()
}

/// No policy file: nothing the image alone names is allowed.
fn no_policy() -> Policy {
    Policy::load(Path::new("/nonexistent/netcr/policy")).unwrap()
}

/// An image with links whose lower device (or peer) lay outside, recorded as `hint`.
fn image_with(links: &[(&str, &str, &str)]) -> Image {
    let links = links
        .iter()
        .map(|(kind, name, hint)| v1::Link {
            name: name.to_string(),
            kind: kind.to_string(),
            lower: Some(v1::LinkRef {
                target: Some(v1::link_ref::Target::External(v1::ExternalRef {
                    name_hint: hint.to_string(),
                    ifindex_hint: 7,
                    nsid: 0,
                    in_caller: true,
                })),
            }),
            ..Default::default()
        })
        .collect();
    Image {
        inventory: v1::Inventory::default(),
        namespaces: vec![NetnsImage {
            links,
            ..Default::default()
        }],
    }
}

fn names(list: &[&str]) -> HashSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn netcr_external_is_a_comma_separated_list() {
    let m = parse_list(
        "NETCR_EXTERNAL",
        " macvlan[mv0]:eth0 ,, veth[eth1]:hv0@br0,",
    )
    .unwrap();
    assert_eq!(m, maps(&["macvlan[mv0]:eth0", "veth[eth1]:hv0@br0"]));
    assert_eq!(parse_list("NETCR_EXTERNAL", "").unwrap(), vec![]);
    let e = parse_list("NETCR_EXTERNAL", "macvlan[mv0]:eth0,macvlan[mv1]").unwrap_err();
    assert!(
        e.starts_with("NETCR_EXTERNAL, item 2: invalid --external \"macvlan[mv1]\""),
        "{e}"
    );
    let e = parse_list("NETCR_EXTERNAL", "macvlan[*]:a,macvlan[*]:b").unwrap_err();
    assert!(e.contains("macvlan[*] is mapped twice"), "{e}");
    // The same mapping twice is no conflict.
    assert_eq!(
        parse_list("X", "macvlan[mv0]:a,macvlan[mv0]:a")
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn mapping_files_have_one_mapping_a_line_and_comments() {
    let text = "# node-wide mappings\n\nmacvlan[mv0]:eth#1   # '#' inside a name is part of it\n\tmacvlan[*]:br-lan\n#macvlan[mv9]:x\n";
    let m = parse_file("/etc/netcr/external", text).unwrap();
    assert_eq!(m, maps(&["macvlan[mv0]:eth#1", "macvlan[*]:br-lan"]));
    let e = parse_file(
        "/etc/netcr/external",
        "macvlan[mv0]:eth0\nmacvlan[mv1]:eth0 eth1\n",
    )
    .unwrap_err();
    assert!(
        e.starts_with("/etc/netcr/external, line 2: invalid --external"),
        "{e}"
    );
    let e = parse_file("f", "macvlan[mv0]:a\nmacvlan[mv0]:b\n").unwrap_err();
    assert!(e.starts_with("f: macvlan[mv0] is mapped twice"), "{e}");
}

#[test]
fn earlier_sources_win_per_device() {
    let image = image_with(&[
        ("macvlan", "mv0", "la"),
        ("macvlan", "mv1", "la"),
        ("macvlan", "mv2", "la"),
        ("macvlan", "mv3", "la"),
        ("macvlan", "mv4", "la"),
    ]);
    let sources = [
        source("NETCR_EXTERNAL", Origin::Host, &["macvlan[mv0]:lb"]),
        source(
            "img/external",
            Origin::Image,
            &["macvlan[mv0]:lc", "macvlan[mv1]:lc"],
        ),
        // A `*` in an earlier source beats a named mapping in a later one.
        source(
            "node",
            Origin::Host,
            &["macvlan[mv1]:ld", "macvlan[mv2]:ld", "macvlan[*]:le"],
        ),
    ];
    // The image's own mappings (its file, the recorded devices) need the policy's consent.
    let allowing = policy("lower la macvlan\nlower lc macvlan\n");
    let r = choose_externals(&image, &sources[..2], &names(&["la"]), &allowing, "HINT").unwrap();
    let got: Vec<(String, String)> = r
        .choices
        .iter()
        .map(|c| (c.mapping.to_string(), c.source.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("macvlan[mv0]:lb", "NETCR_EXTERNAL"),
            ("macvlan[mv1]:lc", "img/external"),
            ("macvlan[mv2]:la", RECORDED_SOURCE),
            ("macvlan[mv3]:la", RECORDED_SOURCE),
            ("macvlan[mv4]:la", RECORDED_SOURCE),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(r.unused.is_empty(), "{:?}", r.unused);

    let r = choose_externals(&image, &sources, &names(&["la"]), &allowing, "HINT").unwrap();
    let got: Vec<String> = r.choices.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        got,
        [
            "macvlan \"mv0\": lower device \"lb\" (from NETCR_EXTERNAL)",
            "macvlan \"mv1\": lower device \"lc\" (from img/external; allowed by /etc/netcr/policy, line 2)",
            "macvlan \"mv2\": lower device \"ld\" (from node)",
            "macvlan \"mv3\": lower device \"le\" (from node, via *)",
            "macvlan \"mv4\": lower device \"le\" (from node, via *)",
        ]
    );
    assert!(r.choices.iter().all(|c| c.role == LowerRole::Lower));
}

#[test]
fn recorded_devices_are_used_only_when_they_fit() {
    let image = image_with(&[
        ("macvlan", "mv0", "gone"),
        ("macvlan", "mv1", ""),
        ("macvlan", "mv2", "here"),
        ("veth", "eth0", "veth123"),
    ]);
    // The lower device must exist; a veth's outer end must not (the restore creates it).
    // Whatever the policy allows.
    let anything = policy("lower *\nouter *\n");
    let e = choose_externals(
        &image,
        &[],
        &names(&["here", "veth123"]),
        &anything,
        "WHERE",
    )
    .unwrap_err();
    assert!(
        e.contains("macvlan \"mv0\": no mapping, and its lower device at dump time, \"gone\", does not exist here; map it in WHERE (e.g. macvlan[mv0]:gone)"),
        "{e}"
    );
    assert!(
        e.contains("macvlan \"mv1\": no mapping, and its lower device lay in a namespace netcr could not name"),
        "{e}"
    );
    assert!(e.contains("veth \"eth0\": no mapping, and its outer end at dump time, \"veth123\", already exists here"), "{e}");
    assert!(!e.contains("mv2"), "{e}");

    let r = choose_externals(
        &image,
        &[source(
            "NETCR_EXTERNAL",
            Origin::Host,
            &["macvlan[*]:eth9", "macvlan[stale]:x"],
        )],
        &names(&["here"]),
        &anything,
        "WHERE",
    )
    .unwrap();
    let got: Vec<String> = r.choices.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        got,
        [
            "macvlan \"mv0\": lower device \"eth9\" (from NETCR_EXTERNAL, via *)",
            "macvlan \"mv1\": lower device \"eth9\" (from NETCR_EXTERNAL, via *)",
            "macvlan \"mv2\": lower device \"eth9\" (from NETCR_EXTERNAL, via *)",
            "veth \"eth0\": outer end \"veth123\" (from the devices recorded at dump time; allowed by /etc/netcr/policy, line 2)",
        ]
    );
    assert_eq!(r.choices[3].role, LowerRole::Peer);
    assert_eq!(
        r.unused,
        vec![(
            "NETCR_EXTERNAL".to_string(),
            maps(&["macvlan[stale]:x"])[0].clone()
        )]
    );
}

/// Without a policy, a device the image alone names (here: recorded at dump time) is refused,
/// each with the policy line and the host mapping that would allow it; the host's own
/// mappings need no policy; the lines the error suggested are enough.
#[test]
fn the_image_alone_chooses_no_host_device() {
    let image = image_with(&[("macvlan", "mv0", "eth0"), ("veth", "eth0", "vx")]);
    let host = names(&["eth0"]);
    let e = choose_externals(&image, &[], &host, &no_policy(), "HINT").unwrap_err();
    for expected in [
        "macvlan \"mv0\": the image asks for lower device \"eth0\" (from the devices recorded at dump time), but the host policy /nonexistent/netcr/policy does not allow it (there is no such file); the line \"lower eth0 macvlan\" there would, or map it on this host in HINT: NETCR_EXTERNAL=macvlan[mv0]:eth0",
        "veth \"eth0\": the image asks for outer end \"vx\" (from the devices recorded at dump time), but the host policy /nonexistent/netcr/policy does not allow it (there is no such file); the line \"outer vx\" there would, or map it on this host in HINT: NETCR_EXTERNAL=veth[eth0]:vx",
    ] {
        assert!(e.contains(expected), "{expected:?} not in {e:?}");
    }
    // A policy for other devices changes nothing.
    let other = policy("lower eth1\nlower eth0 macvtap\nouter vy\n");
    let e = choose_externals(&image, &[], &host, &other, "HINT").unwrap_err();
    assert!(
        e.contains("the line \"lower eth0 macvlan\" there would"),
        "{e}"
    );
    assert!(e.contains("the line \"outer vx\" there would"), "{e}");

    // The host's own word, without any policy.
    let sources = [
        source("NETCR_EXTERNAL", Origin::Host, &["macvlan[mv0]:eth0"]),
        source("/etc/netcr/external", Origin::Host, &["veth[*]:vx"]),
    ];
    let r = choose_externals(&image, &sources, &host, &no_policy(), "HINT").unwrap();
    let got: Vec<String> = r.choices.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        got,
        [
            "macvlan \"mv0\": lower device \"eth0\" (from NETCR_EXTERNAL)",
            "veth \"eth0\": outer end \"vx\" (from /etc/netcr/external, via *)",
        ]
    );

    // The suggested lines.
    let allowing = policy("lower eth0 macvlan\nouter vx\n");
    let r = choose_externals(&image, &[], &host, &allowing, "HINT").unwrap();
    let got: Vec<(String, Option<String>)> = r
        .choices
        .iter()
        .map(|c| (c.mapping.to_string(), c.allowed_by.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("macvlan[mv0]:eth0", "/etc/netcr/policy, line 1"),
            ("veth[eth0]:vx", "/etc/netcr/policy, line 2"),
        ]
        .map(|(m, p)| (m.to_string(), Some(p.to_string())))
    );
}

/// The image's own `external` file is the image's word too: a bridge or a lower device the
/// policy does not list is refused, though the same mapping from the host would be honoured.
#[test]
fn an_image_file_cannot_name_what_the_policy_does_not_list() {
    let image = image_with(&[("veth", "eth0", "vx"), ("macvlan", "mv0", "eth0")]);
    let host = names(&["eth0", "eth1"]);
    let asks = ["veth[eth0]:x@br-mgmt", "macvlan[*]:eth1"];
    let from_image = [source("img/external", Origin::Image, &asks)];
    let p = policy("outer *\nbridge br-ct\nlower eth0\n");
    let e = choose_externals(&image, &from_image, &host, &p, "HINT").unwrap_err();
    for expected in [
        "veth \"eth0\": the image asks for outer end \"x\" on bridge \"br-mgmt\" (from img/external), but the host policy /etc/netcr/policy does not allow it; the line \"bridge br-mgmt\" there would, or map it on this host in HINT: NETCR_EXTERNAL=veth[eth0]:x@br-mgmt",
        "macvlan \"mv0\": the image asks for lower device \"eth1\" (from img/external, via *), but the host policy /etc/netcr/policy does not allow it; the line \"lower eth1 macvlan\" there would, or map it on this host in HINT: NETCR_EXTERNAL=macvlan[mv0]:eth1",
    ] {
        assert!(e.contains(expected), "{expected:?} not in {e:?}");
    }
    // The image's file comes first: a later host mapping does not make its refusal go away.
    let node = source("/etc/netcr/external", Origin::Host, &["veth[eth0]:y@br-ct"]);
    let e =
        choose_externals(&image, &[from_image[0].clone(), node], &host, &p, "HINT").unwrap_err();
    assert!(e.contains("bridge \"br-mgmt\""), "{e}");

    // The same mappings from the host.
    let from_host = [source("NETCR_EXTERNAL", Origin::Host, &asks)];
    let r = choose_externals(&image, &from_host, &host, &p, "HINT").unwrap();
    assert_eq!(r.choices.len(), 2);
    assert!(r.choices.iter().all(|c| c.allowed_by.is_none()));
    // Or the policy lines the error named.
    let p = policy("outer *\nbridge br-ct\nlower eth0\nbridge br-mgmt\nlower eth1 macvlan\n");
    let r = choose_externals(&image, &from_image, &host, &p, "HINT").unwrap();
    let got: Vec<String> = r.choices.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        got,
        [
            "veth \"eth0\": outer end \"x\" on bridge \"br-mgmt\" (from img/external; allowed by /etc/netcr/policy, lines 1 and 4)",
            "macvlan \"mv0\": lower device \"eth1\" (from img/external, via *; allowed by /etc/netcr/policy, line 5)",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Writing the image

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn small_image(label: &str) -> Image {
    Image {
        inventory: v1::Inventory {
            netcr_version: "test".into(),
            netns: vec![v1::NetnsInfo {
                id: 0,
                label: label.into(),
            }],
            ..Default::default()
        },
        namespaces: vec![NetnsImage {
            netns: v1::Netns {
                id: 0,
                label: label.into(),
                ..Default::default()
            },
            links: vec![v1::Link {
                name: "lo".into(),
                kind: String::new(),
                ifindex: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The hook writes its image atomically (a temporary directory renamed into place), replaces
/// a previous image, refuses to replace anything else, and leaves no temporary files.
#[test]
fn the_image_is_written_atomically_and_replaces_only_an_image() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("netcr");
    let first = small_image("first");
    write_image(&first, &target, Durability::NoFsync).unwrap();
    assert_eq!(Image::read(&target).unwrap(), first);
    assert_eq!(entries(root.path()), ["netcr"]);

    let second = small_image("second");
    write_image(&second, &target, Durability::NoFsync).unwrap();
    assert_eq!(Image::read(&target).unwrap(), second);
    assert_eq!(entries(root.path()), ["netcr"]);

    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    write_image(&first, &empty, Durability::NoFsync).unwrap();
    assert_eq!(Image::read(&empty).unwrap(), first);

    let other = root.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep"), "x").unwrap();
    let file = root.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for (target, why) in [
        (&other, "that is not a netcr image"),
        (&file, "not a directory"),
    ] {
        let err = write_image(&first, target, Durability::NoFsync)
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusing to") && err.contains(why), "{err}");
    }
    assert_eq!(entries(&other), ["keep"]);
    assert_eq!(entries(root.path()), ["empty", "file", "netcr", "other"]);
}

// ---------------------------------------------------------------------------------------------
// Frozen time

/// How long the container stays frozen for netcr at `network-lock`, for a typical container
/// (lo and three macvlans, a few addresses, ~40 routes): the hook process from start to exit,
/// as CRIU waits for it, and the dump itself as the hook reports it. Printed, not asserted:
/// `cargo test -p netcr --test criu_hook frozen_time -- --nocapture`.
#[test]
fn frozen_time_at_network_lock() {
    require_root!();
    let host = TestHost::enter();
    let ct = build_container(&host, 36);
    let task = Task::in_netns(&ct.netns);
    let v = view(&task.netns());
    let user_routes = v.routes.iter().filter(|r| r.contains(" Static ")).count();
    let images = tempfile::tempdir().unwrap();
    let mut wall = Vec::new();
    let mut inner = Vec::new();
    let mut kernel = Vec::new();
    for i in 0..25 {
        let dir = images.path().join(format!("dump{i}"));
        std::fs::create_dir(&dir).unwrap();
        let run = Hook::new("network-lock", Some(task.pid()), dir.as_os_str())
            .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
            .run();
        run.assert_ok("network-lock");
        wall.push(run.elapsed.as_secs_f64() * 1e3);
        // "dumped netns ... into DIR in 4.25 ms (kernel dump 3.10 ms; image directory ...)"
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("dumped netns"))
            .unwrap_or_else(|| panic!("no summary in {}", run.stderr));
        let number_before_ms = |after: &str| -> f64 {
            let rest = &line[line
                .rfind(after)
                .unwrap_or_else(|| panic!("{after:?} not in {line}"))
                + after.len()..];
            rest.split(" ms")
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no timing after {after:?} in {line}"))
        };
        inner.push(number_before_ms(" in "));
        kernel.push(number_before_ms("(kernel dump "));
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let (wmin, wmed, wmax) = stats(&mut wall);
    let (imin, imed, imax) = stats(&mut inner);
    let (kmin, kmed, kmax) = stats(&mut kernel);
    println!(
        "network-lock frozen time ({} build), {} links, {} addresses, {} routes ({} user-added), 25 runs, image on {}:\n  hook process start to exit: min {wmin:.2} ms, median {wmed:.2} ms, max {wmax:.2} ms\n  dump and write in the hook: min {imin:.2} ms, median {imed:.2} ms, max {imax:.2} ms\n  of which the kernel dump:   min {kmin:.2} ms, median {kmed:.2} ms, max {kmax:.2} ms",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        v.links.len(),
        v.addresses.len(),
        v.routes.len(),
        user_routes,
        images.path().display(),
    );
}

// ---------------------------------------------------------------------------------------------
// A runtime that builds the network first

/// Podman, CRI-O and containerd build the restored sandbox's network (CNI, netavark) before
/// CRIU restores the processes: `setup-namespaces` then finds eth0 there already. The hook
/// adopts it (its index and MAC stay the runtime's) and adds the rest of the image; with
/// `NETCR_ADOPT=off` it refuses such a namespace, changing nothing.
#[test]
fn a_namespace_the_runtime_networked_first_is_adopted() {
    require_root!();
    let host = TestHost::enter();
    host_lowers(&host, &["vh0"]);
    let mut h = host.rtnl();
    // The container: eth0 from the "CNI" (a veth to the host), and a macvlan on vh0.
    let ct = TestNetns::new("c");
    add_veth(&mut h, "cni0", "eth0", Some(&ct.netns)).unwrap();
    add_macvlan(&mut h, "mv0", "vh0", Vec::new(), Some(&ct.netns)).unwrap();
    let mut c = ct.rtnl();
    for dev in ["lo", "eth0", "mv0"] {
        up(&mut c, dev);
    }
    add_address(&mut c, "eth0", IpAddr::V4(Ipv4Addr::new(10, 88, 0, 5)), 16).unwrap();
    add_address(&mut c, "mv0", IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2)), 24).unwrap();
    let task = Task::in_netns(&ct.netns);
    let images = ImagesDir::new();
    Hook::new("network-lock", Some(task.pid()), images.path().as_os_str())
        .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
        .run()
        .assert_ok("network-lock");
    drop(c);
    remove_links(&ct.netns);
    drop(task);
    drop(ct);

    // The runtime's restore: a new task, and the CNI gives its namespace eth0 again.
    let restored = Task::in_new_netns();
    let netns = restored.netns();
    add_veth(&mut h, "cni1", "eth0", Some(&netns)).unwrap();
    let mut r = Rtnl::open_in(&netns).unwrap();
    up(&mut r, "lo");
    up(&mut r, "eth0");
    add_address(&mut r, "eth0", IpAddr::V4(Ipv4Addr::new(10, 88, 0, 5)), 16).unwrap();
    let before = view(&netns);
    let eth0 = ifindex(&mut r, "eth0").unwrap();
    let etc = Etc::new();
    let policy = etc.policy("lower vh0 macvlan\n");

    let refused = Hook::new(
        "setup-namespaces",
        Some(restored.pid()),
        images.path().as_os_str(),
    )
    .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
    .env("NETCR_POLICY_FILE", policy.clone())
    .env("NETCR_EXTERNAL", "veth[eth0]:cni2")
    .env("NETCR_ADOPT", "off")
    .run();
    refused.assert_failed(
        "setup-namespaces",
        &["already has a device the image holds: eth0"],
    );
    assert_eq!(view(&netns), before, "a refusal changes nothing");

    let run = Hook::new(
        "setup-namespaces",
        Some(restored.pid()),
        images.path().as_os_str(),
    )
    .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()))
    .env("NETCR_POLICY_FILE", policy)
    .run();
    run.assert_ok("setup-namespaces");
    assert!(run.stderr.contains("adopted eth0"), "{}", run.stderr);
    assert_eq!(ifindex(&mut r, "eth0"), Some(eth0), "eth0 is the runtime's");
    let after = view(&netns);
    assert!(
        after.links.iter().any(|l| l.starts_with("mv0 ")),
        "{:?}",
        after.links
    );
    for addr in &before.addresses {
        assert!(after.addresses.contains(addr), "{addr} kept");
    }
    assert!(
        after.addresses.iter().any(|a| a.contains("10.9.0.2")),
        "{:?}",
        after.addresses
    );
}

/// A checkpoint of a container holding state netcr cannot keep yet (here a tc action that no
/// filter holds, next to a tbf qdisc netcr keeps) fails
/// at `network-lock`, naming it, so that CRIU resumes the container; a node that accepts
/// the loss says so in `NETCR_LEAVE_OUT`, and the image records what was left out.
#[test]
fn a_checkpoint_holding_what_netcr_cannot_keep_fails_unless_the_node_leaves_it_out() {
    netcr_testkit::require_tools!(("tc", "iproute2"));
    let _host = TestHost::enter();
    let ct = TestNetns::new("q");
    let status = Command::new("ip")
        .args(["-n", &ct.name, "link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("tc")
        .args(["-n", &ct.name, "qdisc", "add", "dev", "lo", "root", "tbf"])
        .args(["rate", "10mbit", "burst", "32kbit", "latency", "400ms"])
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("tc")
        .args([
            "-n", &ct.name, "actions", "add", "action", "mirred", "egress",
        ])
        .args(["redirect", "dev", "lo", "index", "3"])
        .status()
        .unwrap();
    assert!(status.success());
    let task = Task::in_netns(&ct.netns);
    let images = ImagesDir::new();
    let hook = |leave_out: Option<&str>| {
        let mut hook = Hook::new("network-lock", Some(task.pid()), images.path().as_os_str())
            .env("NETCR_EXTERNAL_FILE", no_node_file(images.path()));
        if let Some(v) = leave_out {
            hook = hook.env("NETCR_LEAVE_OUT", v.to_string());
        }
        hook.run()
    };
    hook(None).assert_failed(
        "network-lock",
        &[
            "traffic control",
            "action mirred index 3: not held by any filter",
        ],
    );
    assert!(!images.netcr().exists(), "no image");
    hook(Some("bogus")).assert_failed(
        "network-lock",
        &["NETCR_LEAVE_OUT: \"bogus\" is not a family that can be left out"],
    );
    hook(Some("tc,xfrm")).assert_ok("network-lock");
    let image = Image::read(&images.netcr()).unwrap();
    let left_out = &image.namespaces[0].netns.left_out;
    assert_eq!(left_out.len(), 1, "{left_out:?}");
    assert!(
        left_out[0].found.iter().any(|f| f.contains("tbf on lo")),
        "{left_out:?}"
    );
}
