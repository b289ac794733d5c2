//! `netcr demo`: the main job on throwaway namespaces. It builds a namespace with macvlans in
//! several modes, a veth pair, addresses and routes; dumps it; restores it into a new
//! namespace on a different lower device (as after a migration); and cleans up.

use std::path::PathBuf;

use clap::Args;
use netcr_core::{DumpOptions, RestoreOptions, RestoreTarget};
use netcr_netlink::netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMacAddressMode, MacVlanMode,
};
use netcr_netlink::netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::{single, Netns, Request, Rtnl, RtnlExt};

use crate::cli::Failure;

/// Options of `netcr demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the image here instead of a temporary directory.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    dir: Option<PathBuf>,
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

fn index_of(rtnl: &mut Rtnl, name: &str) -> Result<u32, Failure> {
    rtnl.dump_links()?
        .into_iter()
        .find(|l| l.attributes.contains(&LinkAttribute::IfName(name.into())))
        .map(|l| l.header.index)
        .ok_or_else(|| Failure(format!("{name} not found")))
}

fn up(rtnl: &mut Rtnl, name: &str) -> Result<(), Failure> {
    let mut m = LinkMessage::default();
    m.header.index = index_of(rtnl, name)?;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    Ok(rtnl.set_link(m, &format!("setting {name} up"))?)
}

fn build_source(host: &mut Rtnl, src_ns: &Netns, src: &mut Rtnl) -> Result<(), Failure> {
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
    for (ip, prefix) in [("10.200.0.2", 24u8), ("fd00:200::2", 64)] {
        let ip: std::net::IpAddr = ip.parse().map_err(|e| Failure(format!("{e}")))?;
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
            "10.201.0.0".parse().unwrap(),
        )));
    r.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(
            "10.200.0.1".parse().unwrap(),
        )));
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

/// Runs the demo.
pub fn demo(args: DemoArgs) -> Result<(), Failure> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure(
            "the demo creates namespaces and links: run it as root".into(),
        ));
    }
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
    let dir = match &args.dir {
        Some(d) => d.clone(),
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
    println!(
        "{}",
        crate::cli::dump_to(&src_ns, &dir, &DumpOptions::default())?
    );
    println!("$ netcr show -D {}", dir.display());
    crate::show::show(&dir, false)?;

    println!(
        "$ netcr restore -D {} --netns {dst_name} --external 'macvlan[*]:lowerB'",
        dir.display()
    );
    let options = RestoreOptions {
        externals: vec!["macvlan[*]:lowerB"
            .parse()
            .map_err(|e| Failure(format!("{e}")))?],
        ..Default::default()
    };
    for line in crate::cli::restore_from(&dir, RestoreTarget::Named(dst_name.clone()), &options)? {
        println!("{line}");
    }
    println!(
        "verified: netcr re-read {dst_name} and found every link, address and route of the image, now on lowerB"
    );
    drop(src);
    drop(host);
    if let Some(d) = &args.dir {
        println!("image kept in {}", d.display());
    }
    println!("cleaning up the demo namespaces");
    Ok(())
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, Failure> {
        let path = std::env::temp_dir().join(format!("netcr-demo-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| Failure(format!("creating {}: {e}", path.display())))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
