//! Unit tests of the restore without root: placement and request building are pure, the
//! links phase runs against a fake kernel, and the rollback order comes from the journal.
//! This module holds the test kinds and the scene; the tests are in its submodules.

mod journal_file;
mod links_phase;
mod nexthops_phase;
mod nftables_phase;
mod requests;
mod rollback;

use std::collections::{HashMap, HashSet};

use netcr_image::{v1, Image, NetnsImage};
use netcr_netlink::netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netcr_netlink::{Netns, Request};
use netcr_testkit::FakeKernel;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use rstest::rstest;

use super::journal::{Entry, Journal};
use super::plan::Outside;
use super::request::{self, Creation, Placement, Taken, Via};
use super::session::{Key, Session, Target};
use super::undo::{self, Step};
use super::{links, CreateFrom, RestoreOptions};
use crate::driver::{DriverEntry, DriverError, DumpCx, LinkDriver, LowerRole, RestoreCx};
use crate::error::CoreError;
use crate::external::ExternalMapping;

/// A kind that sits on a lower device, like macvlan.
struct UpperKind;
/// A kind made in pairs by one request, like veth.
struct PairKind;

inventory::submit! { DriverEntry { driver: &UpperKind } }
inventory::submit! { DriverEntry { driver: &PairKind } }

impl LinkDriver for UpperKind {
    fn kind(&self) -> &'static str {
        "t-upper"
    }
    fn dump(&self, _: &LinkMessage, _: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(Vec::new())
    }
    fn restore(&self, _: &v1::Link, _: &mut RestoreCx<'_>) -> Result<Vec<LinkInfo>, DriverError> {
        Ok(vec![LinkInfo::Kind(InfoKind::Other("t-upper".into()))])
    }
    fn describe(&self, _: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
        Ok(Vec::new())
    }
}

impl LinkDriver for PairKind {
    fn kind(&self) -> &'static str {
        "t-pair"
    }
    fn lower_role(&self) -> LowerRole {
        LowerRole::Peer
    }
    fn dump(&self, _: &LinkMessage, _: &DumpCx<'_>) -> Result<Vec<u8>, DriverError> {
        Ok(Vec::new())
    }
    fn restore(&self, _: &v1::Link, cx: &mut RestoreCx<'_>) -> Result<Vec<LinkInfo>, DriverError> {
        let peer = cx.peer.take().ok_or_else(|| DriverError::new("no peer"))?;
        Ok(vec![
            LinkInfo::Kind(InfoKind::Other("t-pair".into())),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ])
    }
    fn describe(&self, _: &[u8]) -> Result<Vec<(String, String)>, DriverError> {
        Ok(Vec::new())
    }
}

fn local(netns: u32, name: &str) -> Option<v1::LinkRef> {
    Some(v1::LinkRef {
        target: Some(v1::link_ref::Target::Local(v1::LocalRef {
            netns,
            name: name.into(),
        })),
    })
}

fn external(hint: &str) -> Option<v1::LinkRef> {
    Some(v1::LinkRef {
        target: Some(v1::link_ref::Target::External(v1::ExternalRef {
            name_hint: hint.into(),
            ..Default::default()
        })),
    })
}

fn link(name: &str, kind: &str, ifindex: u32, lower: Option<v1::LinkRef>) -> v1::Link {
    v1::Link {
        name: name.into(),
        kind: kind.into(),
        ifindex,
        mtu: 1500,
        lower,
        ..Default::default()
    }
}

fn loopback() -> v1::Link {
    v1::Link {
        name: "lo".into(),
        ifindex: 1,
        link_type: 772,
        mtu: 65536,
        ..Default::default()
    }
}

/// One namespace: lo, a pair p0/p1, an upper u0 on p0 and an upper x0 on a host device.
fn image() -> Image {
    let ns = NetnsImage {
        netns: v1::Netns {
            id: 0,
            label: "src".into(),
            ..Default::default()
        },
        links: vec![
            loopback(),
            link("x0", "t-upper", 2, external("eth9")),
            link("p0", "t-pair", 3, local(0, "p1")),
            link("p1", "t-pair", 4, local(0, "p0")),
            link("u0", "t-upper", 5, local(0, "p0")),
        ],
        ..Default::default()
    };
    Image {
        inventory: Default::default(),
        namespaces: vec![ns],
    }
}

fn this_netns() -> Netns {
    Netns::open_path(std::path::Path::new("/proc/thread-self/ns/net")).unwrap()
}

/// A session restoring `image` into one existing namespace, labelled "t", that holds lo;
/// x0's lower device is the caller's index 7.
fn session<'a>(
    image: &'a Image,
    opts: &'a RestoreOptions,
    caller: &'a Netns,
    kernel: &'a mut FakeKernel,
) -> Session<'a> {
    let mut s = Session::new(image, opts, caller, kernel);
    let mut lo = LinkMessage::default();
    lo.header.index = 1;
    lo.attributes.push(LinkAttribute::IfName("lo".into()));
    let outside = HashMap::from([(
        "x0".to_string(),
        Outside {
            mapping: "t-upper[x0]:eth9".parse::<ExternalMapping>().unwrap(),
            index: Some(7),
        },
    )]);
    let mut target = Target::new(0, "t", Some(this_netns()), None);
    target.links_before = vec![lo];
    target.outside = outside;
    s.targets.push(target);
    s.journal = Journal::new(0x8000_1234);
    s
}

/// A deletion journaled for an object added (its message does not matter here).
pub(super) fn delete(what: &str) -> Request {
    Request::change(RouteNetlinkMessage::DelRule(Default::default()), what)
}
