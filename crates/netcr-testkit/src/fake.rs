//! A fake kernel for unit tests of the core without root (youki's fake netlink client, grown
//! to a small model): a [`Connector`] whose sockets record every request, in order, with the
//! namespace they were sent in, and keep a table of links per namespace so that creations,
//! group deletions and nsid requests behave like the kernel's.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::RawFd;
use std::rc::Rc;

use netcr_netlink::netlink_packet_core::Parseable;
use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netcr_netlink::netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netcr_netlink::netlink_packet_route::RouteNetlinkMessage;
use netcr_netlink::nexthop::{
    NexthopAttribute, NexthopMessage, RTM_DELNEXTHOP, RTM_GETNEXTHOP, RTM_NEWNEXTHOP,
};
use netcr_netlink::nftables::{self as nft, NftMessage};
use netcr_netlink::{
    Connector, Error, Netns, Protocol, RawMessage, RawTransport, ReceivedMessage, Reply, Request,
    Result, Transport,
};

/// What the fake kernel holds and saw.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Every request, in order: (namespace label of the socket, request).
    pub sent: Vec<(String, Request)>,
    /// Every raw request (nexthops), in order: (namespace label of the socket, request).
    pub sent_raw: Vec<(String, Request<RawMessage>)>,
    /// Links per namespace label, in creation order.
    pub links: BTreeMap<String, Vec<LinkMessage>>,
    /// Nexthop ids per namespace label.
    pub nexthops: BTreeMap<String, Vec<u32>>,
    /// Every nf_tables transaction, in order: (namespace label of the socket, requests).
    pub sent_nft: Vec<(String, Vec<Request<RawMessage>>)>,
    /// nf_tables tables per namespace label: (family, name).
    pub nft_tables: BTreeMap<String, Vec<(u8, String)>>,
    /// An nf_tables transaction is applied, but its answer is lost (the outcome a caller
    /// cannot know).
    pub nft_lose_answer: bool,
    /// Request number (from 0, counting every request, raw ones and those of transactions
    /// too) that fails with `EPERM`; in a transaction, nothing of it is applied.
    pub fail_at: Option<usize>,
    /// nsids: (namespace, peer) to id.
    nsids: HashMap<(String, String), i32>,
    /// Namespace labels by the fd `connect` saw them under (IFLA_NET_NS_FD, NETNSA_FD).
    fds: HashMap<RawFd, String>,
}

impl FakeState {
    /// Requests recorded so far, of every kind.
    fn requests(&self) -> usize {
        self.sent.len()
            + self.sent_raw.len()
            + self.sent_nft.iter().map(|(_, r)| r.len()).sum::<usize>()
    }
}

/// The fake kernel; clones share one state.
#[derive(Debug, Clone, Default)]
pub struct FakeKernel(pub Rc<RefCell<FakeState>>);

impl FakeKernel {
    /// A kernel whose namespaces `labels` hold only lo (index 1).
    pub fn with_namespaces(labels: &[&str]) -> FakeKernel {
        let fake = FakeKernel::default();
        for label in labels {
            fake.add_link(label, 1, "lo", None);
        }
        fake
    }

    /// Adds a link to namespace `label`.
    pub fn add_link(&self, label: &str, index: u32, name: &str, group: Option<u32>) {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(g) = group {
            msg.attributes.push(LinkAttribute::Group(g));
        }
        self.0
            .borrow_mut()
            .links
            .entry(label.to_string())
            .or_default()
            .push(msg);
    }

    /// The names of the links in namespace `label`, in creation order.
    pub fn names(&self, label: &str) -> Vec<String> {
        self.0
            .borrow()
            .links
            .get(label)
            .map(|l| {
                l.iter()
                    .filter_map(|m| name_of(m).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The requests sent so far: (namespace label, context).
    pub fn contexts(&self) -> Vec<(String, String)> {
        self.0
            .borrow()
            .sent
            .iter()
            .map(|(l, r)| (l.clone(), r.context.clone()))
            .collect()
    }
}

fn name_of(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn group_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Group(g) => Some(*g),
        _ => None,
    })
}

impl Connector for FakeKernel {
    fn connect(&mut self, netns: &Netns, label: &str) -> Result<Box<dyn Transport>> {
        let mut state = self.0.borrow_mut();
        state.fds.insert(netns.raw_fd(), label.to_string());
        state.links.entry(label.to_string()).or_default();
        Ok(Box::new(FakeSocket {
            label: label.to_string(),
            state: self.0.clone(),
        }))
    }

    fn connect_raw(
        &mut self,
        _: &Netns,
        protocol: Protocol,
        label: &str,
    ) -> Result<Box<dyn RawTransport>> {
        if protocol != Protocol::Netfilter {
            return Err(Error::Socket {
                netns: label.to_string(),
                source: std::io::Error::from_raw_os_error(libc::EPROTONOSUPPORT),
            });
        }
        Ok(Box::new(FakeNetfilter {
            label: label.to_string(),
            state: self.0.clone(),
        }))
    }
}

/// A NETLINK_NETFILTER socket of the fake kernel: it keeps nf_tables tables by family and
/// name (NEWTABLE, DELTABLE in transactions), dumps them, and records every transaction.
struct FakeNetfilter {
    label: String,
    state: Rc<RefCell<FakeState>>,
}

impl RawTransport for FakeNetfilter {
    fn netns_label(&self) -> &str {
        &self.label
    }

    fn dump(&mut self, kind: u16, _: &[u8], _: &str) -> Result<Vec<ReceivedMessage>> {
        if kind != nft::message_type(nft::msg::GETTABLE) {
            return Ok(Vec::new());
        }
        let state = self.state.borrow();
        let tables = state
            .nft_tables
            .get(&self.label)
            .cloned()
            .unwrap_or_default();
        Ok(tables
            .into_iter()
            .map(|(family, name)| ReceivedMessage {
                kind: nft::message_type(nft::msg::NEWTABLE),
                flags: 0,
                payload: NftMessage::new(
                    nft::msg::NEWTABLE,
                    family,
                    vec![nft::Attr::string(nft::table::NAME, &name)],
                )
                .body(),
            })
            .collect())
    }

    fn request(&mut self, _: u16, _: &[u8], _: &str) -> Result<Vec<ReceivedMessage>> {
        Ok(Vec::new())
    }

    fn transaction(
        &mut self,
        _: u8,
        requests: Vec<Request<RawMessage>>,
        context: &str,
    ) -> Result<()> {
        let mut state = self.state.borrow_mut();
        let first = state.requests();
        state.sent_nft.push((self.label.clone(), requests.clone()));
        let error = |request: &Request<RawMessage>, errno| Error::Kernel {
            context: request.context.clone(),
            netns: self.label.clone(),
            errno,
            ext_ack: None,
        };
        if let Some(k) = state
            .fail_at
            .filter(|k| (first..first + requests.len()).contains(k))
        {
            return Err(error(&requests[k - first], libc::EPERM));
        }
        let mut tables = state
            .nft_tables
            .get(&self.label)
            .cloned()
            .unwrap_or_default();
        for request in &requests {
            let kind = request.message.kind;
            let Ok(msg) = NftMessage::parse(kind, &request.message.body) else {
                return Err(error(request, libc::EINVAL));
            };
            let Some(name) = msg.str(nft::table::NAME).map(str::to_string) else {
                continue;
            };
            let key = (msg.family, name);
            if msg.kind == nft::msg::NEWTABLE {
                if tables.contains(&key) {
                    return Err(error(request, libc::EEXIST));
                }
                tables.push(key);
            } else if msg.kind == nft::msg::DELTABLE {
                if !tables.contains(&key) {
                    return Err(error(request, libc::ENOENT));
                }
                tables.retain(|t| *t != key);
            }
        }
        state.nft_tables.insert(self.label.clone(), tables);
        if state.nft_lose_answer {
            return Err(Error::Protocol {
                context: context.to_string(),
                netns: self.label.clone(),
                detail: "receiving: No buffer space available".into(),
            });
        }
        Ok(())
    }

    fn change(&mut self, request: Request<RawMessage>) -> Result<()> {
        // The fake kernel has no xfrm: nothing else is sent one request at a time.
        Err(Error::Kernel {
            context: request.context,
            netns: self.label.clone(),
            errno: libc::EOPNOTSUPP,
            ext_ack: None,
        })
    }
}

/// One socket of the fake kernel.
struct FakeSocket {
    label: String,
    state: Rc<RefCell<FakeState>>,
}

impl FakeSocket {
    fn error<M>(&self, request: &Request<M>, errno: i32) -> Error {
        Error::Kernel {
            context: request.context.clone(),
            netns: self.label.clone(),
            errno,
            ext_ack: None,
        }
    }

    /// Records and answers each request; the one numbered `fail_at` (counting every request,
    /// raw ones too) fails with EPERM.
    fn each<M: Clone>(
        &self,
        requests: Vec<Request<M>>,
        record: impl Fn(&mut FakeState, (String, Request<M>)),
        answer: impl Fn(&Self, &mut FakeState, &Request<M>) -> Reply<M>,
    ) -> Vec<Reply<M>> {
        let mut out = Vec::with_capacity(requests.len());
        for request in requests {
            let mut state = self.state.borrow_mut();
            let number = state.requests();
            record(&mut state, (self.label.clone(), request.clone()));
            if state.fail_at == Some(number) {
                out.push(Err(self.error(&request, libc::EPERM)));
                continue;
            }
            out.push(answer(self, &mut state, &request));
        }
        out
    }

    /// Nexthop creations and deletions, by id: EEXIST and ENOENT as the kernel answers.
    fn answer_raw(
        &self,
        state: &mut FakeState,
        request: &Request<RawMessage>,
    ) -> Reply<RawMessage> {
        let Ok(msg) = NexthopMessage::parse(request.message.body.as_slice()) else {
            return Err(self.error(request, libc::EINVAL));
        };
        let ids = state.nexthops.entry(self.label.clone()).or_default();
        let id = msg.id();
        match request.message.kind {
            RTM_NEWNEXTHOP if ids.contains(&id) => Err(self.error(request, libc::EEXIST)),
            RTM_NEWNEXTHOP => {
                ids.push(id);
                Ok(Vec::new())
            }
            RTM_DELNEXTHOP if ids.contains(&id) => {
                ids.retain(|i| *i != id);
                Ok(Vec::new())
            }
            RTM_DELNEXTHOP => Err(self.error(request, libc::ENOENT)),
            _ => Ok(Vec::new()),
        }
    }

    fn answer(&self, state: &mut FakeState, request: &Request) -> Reply {
        match &request.message {
            RouteNetlinkMessage::NewLink(msg) => {
                let ns = netns_of(state, msg).unwrap_or_else(|| self.label.clone());
                create(state, &ns, msg).map_err(|e| self.error(request, e))?;
                if let Some(peer) = veth_peer(msg) {
                    let peer_ns = netns_of(state, peer).unwrap_or_else(|| ns.clone());
                    create(state, &peer_ns, peer).map_err(|e| self.error(request, e))?;
                }
                Ok(Vec::new())
            }
            RouteNetlinkMessage::DelLink(msg) => {
                let links = state.links.entry(self.label.clone()).or_default();
                let before = links.len();
                match (group_of(msg), name_of(msg)) {
                    (Some(g), _) => links.retain(|l| group_of(l) != Some(g)),
                    (None, Some(n)) => links.retain(|l| name_of(l) != Some(n)),
                    _ => links.retain(|l| l.header.index != msg.header.index),
                }
                if links.len() == before {
                    return Err(self.error(request, libc::ENODEV));
                }
                Ok(Vec::new())
            }
            RouteNetlinkMessage::SetLink(msg) => {
                let links = state.links.entry(self.label.clone()).or_default();
                let Some(link) = links.iter_mut().find(|l| {
                    l.header.index == msg.header.index
                        || (msg.header.index == 0 && name_of(l) == name_of(msg))
                }) else {
                    return Err(self.error(request, libc::ENODEV));
                };
                if let Some(g) = group_of(msg) {
                    link.attributes
                        .retain(|a| !matches!(a, LinkAttribute::Group(_)));
                    link.attributes.push(LinkAttribute::Group(g));
                }
                Ok(Vec::new())
            }
            RouteNetlinkMessage::GetNsId(msg) => {
                let peer = peer_of(state, msg);
                let id = state
                    .nsids
                    .get(&(self.label.clone(), peer))
                    .copied()
                    .unwrap_or(-1);
                let mut reply = NsidMessage::default();
                reply.attributes.push(NsidAttribute::Id(id));
                Ok(vec![RouteNetlinkMessage::NewNsId(reply)])
            }
            RouteNetlinkMessage::NewNsId(msg) => {
                let peer = peer_of(state, msg);
                let next = state.nsids.len() as i32;
                state
                    .nsids
                    .entry((self.label.clone(), peer))
                    .or_insert(next);
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// The namespace an IFLA_NET_NS_FD in `msg` names.
fn netns_of(state: &FakeState, msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::NetNsFd(fd) => state.fds.get(fd).cloned(),
        _ => None,
    })
}

fn peer_of(state: &FakeState, msg: &NsidMessage) -> String {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            NsidAttribute::Fd(fd) => state.fds.get(&(*fd as RawFd)).cloned(),
            _ => None,
        })
        .unwrap_or_default()
}

fn veth_peer(msg: &LinkMessage) -> Option<&LinkMessage> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p),
            _ => None,
        }),
        _ => None,
    })
}

/// Adds the link of a creation to namespace `ns`: EEXIST for a name, EBUSY for an index
/// that is taken there.
fn create(state: &mut FakeState, ns: &str, msg: &LinkMessage) -> std::result::Result<(), i32> {
    let links = state.links.entry(ns.to_string()).or_default();
    let name = name_of(msg).unwrap_or_default();
    if links.iter().any(|l| name_of(l) == Some(name)) {
        return Err(libc::EEXIST);
    }
    let index = match msg.header.index {
        0 => (1..)
            .find(|i| links.iter().all(|l| l.header.index != *i))
            .unwrap_or(0),
        i if links.iter().any(|l| l.header.index == i) => return Err(libc::EBUSY),
        i => i,
    };
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.attributes
        .push(LinkAttribute::IfName(name.to_string()));
    if let Some(g) = group_of(msg) {
        link.attributes.push(LinkAttribute::Group(g));
    }
    links.push(link);
    Ok(())
}

impl Transport for FakeSocket {
    fn netns_label(&self) -> &str {
        &self.label
    }

    fn batch(&mut self, requests: Vec<Request>) -> Vec<Reply> {
        self.each(requests, |state, r| state.sent.push(r), FakeSocket::answer)
    }

    fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        _context: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let state = self.state.borrow();
        Ok(match message {
            RouteNetlinkMessage::GetLink(_) => state
                .links
                .get(&self.label)
                .map(|l| {
                    l.iter()
                        .cloned()
                        .map(RouteNetlinkMessage::NewLink)
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    fn batch_raw(&mut self, requests: Vec<Request<RawMessage>>) -> Vec<Reply<RawMessage>> {
        self.each(
            requests,
            |state, r| state.sent_raw.push(r),
            FakeSocket::answer_raw,
        )
    }

    fn dump_raw(&mut self, message: RawMessage, _context: &str) -> Result<Vec<RawMessage>> {
        let state = self.state.borrow();
        if message.kind != RTM_GETNEXTHOP {
            return Ok(Vec::new());
        }
        Ok(state
            .nexthops
            .get(&self.label)
            .map(|ids| {
                ids.iter()
                    .map(|id| {
                        let mut msg = NexthopMessage::default();
                        msg.attributes.push(NexthopAttribute::Id(*id));
                        msg.attributes.push(NexthopAttribute::Blackhole);
                        msg.to_raw(RTM_NEWNEXTHOP)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
