//! `netcr demo`: the main job on throwaway namespaces. It builds a namespace with macvlans in
//! several modes, a veth pair, addresses and routes; dumps it; restores it into a new
//! namespace on a different lower device (as after a migration); and cleans up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use netcr_core::{DumpOptions, ExternalMapping, RestoreOptions, RestoreTarget};
use netcr_netlink::netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMacAddressMode, MacVlanMode,
};
use netcr_netlink::netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::{single, Netns, Request, Rtnl, RtnlExt};

use crate::app::{self, AppError, Durability, Targets};

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Not privileged enough, or the dump, show or restore failed.
    #[error(transparent)]
    App(#[from] AppError),
    /// Building the demo namespaces failed.
    #[error(transparent)]
    Netlink(#[from] netcr_netlink::Error),
    /// A link the demo made is not there.
    #[error("{0} not found")]
    NotFound(String),
    /// The temporary image directory could not be made.
    #[error("creating {}: {source}", .path.display())]
    TempDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Named namespaces the demo made; deleted on every path.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in self.0.iter().rev() {
            if netcr_netlink::netns::named_exists(name) {
                let _ = Netns::delete_named(name);
            }
        }
    }
}

fn named(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m
}

fn index_of(rtnl: &mut Rtnl, name: &str) -> Result<u32, DemoError> {
    rtnl.dump_links()?
        .into_iter()
        .find(|l| l.attributes.contains(&LinkAttribute::IfName(name.into())))
        .map(|l| l.header.index)
        .ok_or_else(|| DemoError::NotFound(name.to_string()))
}

fn up(rtnl: &mut Rtnl, name: &str) -> Result<(), DemoError> {
    let mut m = LinkMessage::default();
    m.header.index = index_of(rtnl, name)?;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    Ok(rtnl.set_link(m, &format!("setting {name} up"))?)
}

fn build_source(host: &mut Rtnl, src_ns: &Netns, src: &mut Rtnl) -> Result<(), DemoError> {
    let mut pair = named("lowerA");
    pair.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(named("lowerB")))),
    ]));
    host.new_link(pair, "creating veth lowerA/lowerB")?;
    up(host, "lowerA")?;
    up(host, "lowerB")?;
    let lower = index_of(host, "lowerA")?;
    let modes: Vec<(&str, Vec<InfoMacVlan>, u32)> = vec![
        (
            "mv-bridge",
            vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
            1400,
        ),
        (
            "mv-private",
            vec![InfoMacVlan::Mode(MacVlanMode::Private)],
            1500,
        ),
        ("mv-vepa", vec![InfoMacVlan::Mode(MacVlanMode::Vepa)], 1500),
        (
            "mv-source",
            vec![
                InfoMacVlan::Mode(MacVlanMode::Source),
                InfoMacVlan::MacAddrMode(MacVlanMacAddressMode::Set),
                InfoMacVlan::MacAddrData(vec![
                    InfoMacVlan::MacAddr([2, 0, 0, 0xd, 0, 1]),
                    InfoMacVlan::MacAddr([2, 0, 0, 0xd, 0, 2]),
                ]),
            ],
            1500,
        ),
    ];
    for (i, (name, data, mtu)) in modes.into_iter().enumerate() {
        let mut m = named(name);
        m.attributes.push(LinkAttribute::Link(lower));
        m.attributes.push(LinkAttribute::NetNsFd(src_ns.raw_fd()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::Address(vec![
            2,
            0x6e,
            0x63,
            0x72,
            0,
            i as u8 + 1,
        ]));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(data)),
        ]));
        host.new_link(m, &format!("creating macvlan {name}"))?;
    }
    let mut inner = named("in0");
    inner.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(named("in1")))),
    ]));
    src.new_link(inner, "creating veth in0/in1")?;
    for name in ["lo", "mv-bridge", "mv-private", "in0", "in1"] {
        up(src, name)?;
    }
    let dev = index_of(src, "mv-bridge")?;
    let addresses = [
        (IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2)), 24u8),
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2)),
            64,
        ),
    ];
    for (ip, prefix) in addresses {
        let mut a = AddressMessage::default();
        a.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        a.header.prefix_len = prefix;
        a.header.index = dev;
        a.attributes.push(AddressAttribute::Local(ip));
        a.attributes.push(AddressAttribute::Address(ip));
        single(
            src,
            Request::create(RouteNetlinkMessage::NewAddress(a), format!("adding {ip}")),
        )?;
    }
    let mut r = RouteMessage::default();
    r.header.address_family = AddressFamily::Inet;
    r.header.destination_prefix_length = 16;
    r.header.table = 254;
    r.header.protocol = netcr_netlink::netlink_packet_route::route::RouteProtocol::Static;
    r.header.scope = netcr_netlink::netlink_packet_route::route::RouteScope::Universe;
    r.header.kind = netcr_netlink::netlink_packet_route::route::RouteType::Unicast;
    r.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            Ipv4Addr::new(10, 201, 0, 0),
        )));
    r.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
            10, 200, 0, 1,
        ))));
    r.attributes.push(RouteAttribute::Oif(dev));
    single(
        src,
        Request::create(
            RouteNetlinkMessage::NewRoute(r),
            "adding 10.201.0.0/16 via 10.200.0.1",
        ),
    )?;
    Ok(())
}

/// Runs the demo, keeping the image in `keep_dir` when given.
pub fn demo(keep_dir: Option<&Path>) -> Result<(), DemoError> {
    // The same check as every command that creates namespaces and links.
    app::require_privileges()?;
    let tag = std::process::id();
    let (host_name, src_name, dst_name) = (
        format!("netcr-demo-{tag}-host"),
        format!("netcr-demo-{tag}-src"),
        format!("netcr-demo-{tag}-dst"),
    );
    let mut cleanup = Cleanup(Vec::new());
    let host_ns = Netns::create_named(&host_name)?;
    cleanup.0.push(host_name.clone());
    let src_ns = Netns::create_named(&src_name)?;
    cleanup.0.push(src_name.clone());
    cleanup.0.push(dst_name.clone());

    let temp;
    let dir = match keep_dir {
        Some(d) => d.to_path_buf(),
        None => {
            temp = TempDir::new()?;
            temp.0.join("image")
        }
    };

    // The demo's "host" is a namespace of its own: the machine's interfaces are never touched.
    let _in_host = host_ns.enter()?;
    let mut host = Rtnl::open_in(&host_ns)?;
    let mut src = Rtnl::open_in(&src_ns)?;
    build_source(&mut host, &src_ns, &mut src)?;
    println!("built netns {src_name}: 4 macvlans (bridge, private, vepa, source) on lowerA, a veth pair, 2 addresses, a route");

    println!("$ netcr dump -D {} --netns {src_name}", dir.display());
    let summary = app::dump_to_dir(
        std::slice::from_ref(&src_ns),
        &dir,
        &DumpOptions::default(),
        Durability::Fsync,
    )?;
    for w in &summary.warnings {
        log::warn!("{w}");
    }
    println!("{summary}");
    println!("$ netcr show -D {}", dir.display());
    print!("{}", app::show(&dir, app::Format::Text)?);

    println!(
        "$ netcr restore -D {} --netns {dst_name} --external 'macvlan[*]:lowerB'",
        dir.display()
    );
    let options = RestoreOptions {
        externals: vec![ExternalMapping {
            kind: "macvlan".into(),
            inner: None,
            outer: "lowerB".into(),
            bridge: None,
        }],
        ..Default::default()
    };
    let targets = Targets::Opened(vec![RestoreTarget::Named(dst_name.clone())]);
    for restored in app::restore_from_dir(&dir, targets, &options)? {
        println!("{restored}");
        for w in restored.warnings() {
            println!("warning: {w}");
        }
    }
    println!(
        "verified: netcr re-read {dst_name} and found every link, address and route of the image, now on lowerB"
    );
    drop(src);
    drop(host);
    if let Some(d) = keep_dir {
        println!("image kept in {}", d.display());
    }
    println!("cleaning up the demo namespaces");
    Ok(())
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, DemoError> {
        let path = std::env::temp_dir().join(format!("netcr-demo-{}", std::process::id()));
        match std::fs::create_dir_all(&path) {
            Ok(()) => Ok(TempDir(path)),
            Err(source) => Err(DemoError::TempDir { path, source }),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
