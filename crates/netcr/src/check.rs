//! `netcr check`: what this kernel supports for netcr, tried on throwaway namespaces, as
//! `criu check` does.

use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use netcr_netlink::{Netns, Rtnl, RtnlExt, Transport};

use crate::app::{self, AppError};

/// Why `netcr check` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Not privileged enough to try anything.
    #[error(transparent)]
    App(#[from] AppError),
    /// The throwaway namespaces or their sockets could not be made.
    #[error(transparent)]
    Netlink(#[from] netcr_netlink::Error),
    /// Some probes failed (each printed with its cause).
    #[error("{0} checks failed")]
    Failed(usize),
}

/// Why one probe failed, printed on its line.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// The kernel refused.
    #[error(transparent)]
    Netlink(#[from] netcr_netlink::Error),
    /// A link was created but is not there.
    #[error("{0} not found after creation")]
    NotFound(String),
    /// A failure of a step more than one probe relies on (the lower device, the nsid): each
    /// of them reports its text, as the error itself is consumed once.
    #[error("{0}")]
    Shared(String),
    /// Steps this probe builds on failed.
    #[error("needs {0}")]
    Needs(&'static str),
}

fn named(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m
}

fn macvlan(name: &str, lower: u32) -> LinkMessage {
    let mut m = named(name);
    m.attributes.push(LinkAttribute::Link(lower));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::MacVlan),
        LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
            MacVlanMode::Bridge,
        )])),
    ]));
    m
}

fn index_of(rtnl: &mut Rtnl, name: &str) -> Result<u32, ProbeError> {
    rtnl.dump_links()?
        .into_iter()
        .find(|l| l.attributes.contains(&LinkAttribute::IfName(name.into())))
        .map(|l| l.header.index)
        .ok_or_else(|| ProbeError::NotFound(name.to_string()))
}

/// Runs every probe and prints one line each; fails when any probe fails. Without the
/// privileges every probe needs, fails at once saying so.
pub fn check() -> Result<(), CheckError> {
    app::require_privileges()?;
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("kernel {release}");
    println!("drivers: {}", netcr_core::registered_kinds().join(", "));
    let lower_ns = Netns::new_anonymous("check-lower")?;
    let target_ns = Netns::new_anonymous("check-target")?;
    let mut lower = Rtnl::open_in(&lower_ns)?;
    let mut target = Rtnl::open_in(&target_ns)?;
    let mut failed = 0;
    let mut report = |what: &str, result: Result<(), ProbeError>| match result {
        Ok(()) => println!("  {what:<58} ok"),
        Err(e) => {
            failed += 1;
            println!("  {what:<58} FAILED: {e}")
        }
    };

    let mut veth = named("c0");
    veth.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(
            netcr_netlink::netlink_packet_route::link::InfoVeth::Peer(named("c1")),
        )),
    ]));
    report(
        "veth: create a pair",
        lower
            .new_link(veth, "creating veth c0")
            .map_err(ProbeError::from),
    );
    let lower_index = index_of(&mut lower, "c0");
    report(
        "macvlan: create one on a veth",
        match &lower_index {
            Ok(i) => lower
                .new_link(macvlan("m0", *i), "creating macvlan m0")
                .map_err(ProbeError::from),
            Err(e) => Err(ProbeError::Shared(e.to_string())),
        },
    );
    report(
        "macvlan across namespaces: IFLA_LINK + IFLA_NET_NS_FD",
        match &lower_index {
            Ok(i) => {
                let mut m = macvlan("m1", *i);
                m.attributes
                    .push(LinkAttribute::NetNsFd(target_ns.raw_fd()));
                lower
                    .new_link(m, "creating macvlan m1 from the lower's namespace")
                    .map_err(ProbeError::from)
                    .and_then(|()| index_of(&mut target, "m1").map(|_| ()))
            }
            Err(e) => Err(ProbeError::Shared(e.to_string())),
        },
    );
    let nsid = target.ensure_nsid(&lower_ns, None);
    report(
        "nsid: assign one (RTM_NEWNSID)",
        nsid.as_ref()
            .map(|_| ())
            .map_err(|e| ProbeError::Shared(e.to_string())),
    );
    report(
        "macvlan across namespaces: IFLA_LINK + IFLA_LINK_NETNSID",
        match (&lower_index, &nsid) {
            (Ok(i), Ok(id)) => {
                let mut m = macvlan("m2", *i);
                m.attributes.push(LinkAttribute::LinkNetNsId(*id));
                target
                    .new_link(m, "creating macvlan m2 from the target namespace")
                    .map_err(ProbeError::from)
            }
            _ => Err(ProbeError::Needs("the lower device and an nsid")),
        },
    );
    let _ = target.netns_label();
    if failed > 0 {
        return Err(CheckError::Failed(failed));
    }
    println!("looks good");
    Ok(())
}
