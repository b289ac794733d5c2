//! The undo journal: every change a restore made, in the order it made them, across all of
//! its namespaces. The rollback walks it backwards ([`super::undo`]).
//!
//! When the restore keeps its journal on disk ([`super::RestoreOptions::run_dir`]), each
//! change is also written there *before* it is made (an intent) and again once made, so that
//! `netcr recover` can undo a restore that was killed at any instant: undoing an intent that
//! was never carried out finds nothing, which counts as done.

use netcr_image::journal::{v1 as jv1, JournalWriter};
use netcr_netlink::netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkSerializable,
};
use netcr_netlink::{RawMessage, Request};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{CoreError, Result};

/// One change (or, for an existing namespace, one picture of it taken before any change),
/// with what its undo needs. Namespaces are indexes into the session's targets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    /// The restore created the named namespace (its nsfs identity once known); undone by
    /// deleting it.
    NetnsCreated {
        ns: usize,
        name: String,
        identity: Option<(u64, u64)>,
    },
    /// An existing namespace's devices before any change: their per-device sysctls are put
    /// back, since namespace-wide writes such as `ip_forward` rewrite them.
    DevicesBefore { ns: usize, links: Vec<LinkMessage> },
    /// The addresses on an existing namespace's lo (index `lo`) before any change: bringing
    /// lo up adds 127.0.0.1/8, which taking it down again does not remove.
    LoAddressesBefore {
        ns: usize,
        lo: u32,
        addresses: Vec<AddressMessage>,
    },
    /// Namespace-wide sysctls written: (name, previous value), in the order written.
    NetnsSysctls {
        ns: usize,
        changed: Vec<(String, String)>,
    },
    /// A link changed in place (lo of an existing namespace), as it was before.
    LinkChanged { ns: usize, before: LinkMessage },
    /// Links created in the restore's private link group, living in namespace `ns`.
    LinksCreated { ns: usize, names: Vec<String> },
    /// Links a killed restore was about to create (a journal read back): those of them in
    /// the private group are its own.
    LinksIntended { ns: usize, names: Vec<String> },
    /// A device a driver made outside netlink (tun/tap); it joins the group only with its
    /// first change, so it is also removed by name.
    DeviceMade { ns: usize, name: String },
    /// A link created in the caller's namespace under a temporary name, to be moved in.
    TemporaryLink { name: String },
    /// The final settings are about to move the links of `ns` out of the private group.
    LinksRegrouped { ns: usize },
    /// A nexthop object added to an existing namespace, by id; undone by deleting it.
    NexthopAdded { ns: usize, id: u32 },
    /// An nf_tables table (family, name) added to an existing namespace with all it holds;
    /// undone by deleting it.
    NftTableAdded { ns: usize, family: u8, name: String },
    /// An xfrm state or policy added to an existing namespace, or its default policies
    /// changed: the NETLINK_XFRM request that undoes it (DELSA, DELPOLICY, or SETDEFAULT
    /// with the values read before).
    XfrmAdded {
        ns: usize,
        undo: Request<RawMessage>,
    },
    /// A top-level qdisc (root, ingress or clsact: `parent`) added to device `ifindex`
    /// (`dev`) of an existing namespace; undone by deleting it, with all under it.
    TcQdiscAdded {
        ns: usize,
        dev: String,
        ifindex: u32,
        parent: u32,
        handle: u32,
    },
    /// An object that would outlive the restore's links (a rule, an address on an existing
    /// lo, a route on lo or on no device): the request that deletes it. (For a default rule
    /// the restore deleted, the request that adds it back.)
    ObjectAdded { ns: usize, delete: Request },
}

/// The journal of one restore.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// The private link group every link the restore creates is made in: one RTM_DELLINK
    /// by group removes them all (one RCU grace period, not one per link).
    pub group: u32,
    entries: Vec<Entry>,
    /// The journal on disk, when the restore keeps one.
    pub file: Option<JournalWriter>,
}

impl Journal {
    /// An empty journal for a restore using link group `group`.
    pub fn new(group: u32) -> Journal {
        Journal {
            group,
            ..Default::default()
        }
    }

    /// A journal read back from disk (for recovery): every record, intents included.
    pub fn from_records(group: u32, entries: Vec<Entry>) -> Journal {
        Journal {
            group,
            entries,
            file: None,
        }
    }

    /// Writes `entry` to the journal on disk before the change it describes is made.
    pub fn intend(&mut self, entry: &Entry) -> Result<()> {
        self.write(entry, false)
    }

    /// Records a change that was made.
    pub fn push(&mut self, entry: Entry) -> Result<()> {
        let written = self.write(&entry, true);
        self.entries.push(entry);
        written
    }

    fn write(&mut self, entry: &Entry, done: bool) -> Result<()> {
        match &mut self.file {
            Some(file) => Ok(file.append(&to_record(entry, done))?),
            None => Ok(()),
        }
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The links created in namespace `ns`, oldest first, each once.
    pub fn links_in(&self, ns: usize) -> Vec<String> {
        self.names(ns, false)
    }

    /// The links created or about to be created in namespace `ns`, each once.
    pub fn links_maybe_in(&self, ns: usize) -> Vec<String> {
        self.names(ns, true)
    }

    fn names(&self, ns: usize, intended: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for entry in &self.entries {
            let names = match entry {
                Entry::LinksCreated { ns: n, names } => Some((n, names)),
                Entry::LinksIntended { ns: n, names } if intended => Some((n, names)),
                _ => None,
            };
            if let Some((n, names)) = names {
                if *n == ns {
                    for name in names {
                        if !out.contains(name) {
                            out.push(name.clone());
                        }
                    }
                }
            }
        }
        out
    }
}

fn message(msg: &RouteNetlinkMessage) -> jv1::Message {
    let mut body = vec![0; msg.buffer_len()];
    msg.serialize(&mut body);
    jv1::Message {
        kind: u32::from(msg.message_type()),
        body,
    }
}

fn link_message(link: &LinkMessage) -> jv1::Message {
    message(&RouteNetlinkMessage::NewLink(link.clone()))
}

fn parse(m: &jv1::Message) -> Result<RouteNetlinkMessage> {
    let mut header = NetlinkHeader::default();
    header.message_type = u16::try_from(m.kind)
        .map_err(|_| CoreError::Refused(format!("journal: message type {}", m.kind)))?;
    RouteNetlinkMessage::deserialize(&header, &m.body)
        .map_err(|e| CoreError::Refused(format!("journal: message type {}: {e}", m.kind)))
}

fn parse_link(m: &jv1::Message) -> Result<LinkMessage> {
    match parse(m)? {
        RouteNetlinkMessage::NewLink(l) => Ok(l),
        _ => Err(CoreError::Refused(
            "journal: a link record holds another message".into(),
        )),
    }
}

fn parse_address(m: &jv1::Message) -> Result<AddressMessage> {
    match parse(m)? {
        RouteNetlinkMessage::NewAddress(a) => Ok(a),
        _ => Err(CoreError::Refused(
            "journal: an address record holds another message".into(),
        )),
    }
}

fn namespace_of(identity: &Option<(u64, u64)>) -> Option<jv1::Namespace> {
    identity.map(|(dev, ino)| jv1::Namespace {
        path: String::new(),
        dev,
        ino,
    })
}

/// The on-disk record of an entry; `done` says whether the change was made.
pub(crate) fn to_record(entry: &Entry, done: bool) -> jv1::Entry {
    use jv1::entry::Change;
    let ns = |n: &usize| *n as u32;
    let change = match entry {
        Entry::NetnsCreated {
            ns: n,
            name,
            identity,
        } => Change::NetnsCreated(jv1::NetnsCreated {
            ns: ns(n),
            name: name.clone(),
            identity: namespace_of(identity),
        }),
        Entry::DevicesBefore { ns: n, links } => Change::DevicesBefore(jv1::DevicesBefore {
            ns: ns(n),
            links: links.iter().map(link_message).collect(),
        }),
        Entry::LoAddressesBefore {
            ns: n,
            lo,
            addresses,
        } => Change::LoAddressesBefore(jv1::LoAddressesBefore {
            ns: ns(n),
            lo: *lo,
            addresses: addresses
                .iter()
                .map(|a| message(&RouteNetlinkMessage::NewAddress(a.clone())))
                .collect(),
        }),
        Entry::NetnsSysctls { ns: n, changed } => Change::NetnsSysctls(jv1::NetnsSysctls {
            ns: ns(n),
            changed: changed
                .iter()
                .map(|(name, previous)| jv1::SysctlValue {
                    name: name.clone(),
                    previous: previous.clone(),
                })
                .collect(),
        }),
        Entry::LinkChanged { ns: n, before } => Change::LinkChanged(jv1::LinkChanged {
            ns: ns(n),
            before: Some(link_message(before)),
        }),
        Entry::LinksCreated { ns: n, names } | Entry::LinksIntended { ns: n, names } => {
            Change::LinksCreated(jv1::LinksCreated {
                ns: ns(n),
                names: names.clone(),
            })
        }
        Entry::DeviceMade { ns: n, name } => Change::DeviceMade(jv1::DeviceMade {
            ns: ns(n),
            name: name.clone(),
        }),
        Entry::TemporaryLink { name } => {
            Change::TemporaryLink(jv1::TemporaryLink { name: name.clone() })
        }
        Entry::LinksRegrouped { ns: n } => {
            Change::LinksRegrouped(jv1::LinksRegrouped { ns: ns(n) })
        }
        Entry::NexthopAdded { ns: n, id } => {
            Change::NexthopAdded(jv1::NexthopAdded { ns: ns(n), id: *id })
        }
        Entry::NftTableAdded {
            ns: n,
            family,
            name,
        } => Change::NftTableAdded(jv1::NftTableAdded {
            ns: ns(n),
            family: u32::from(*family),
            name: name.clone(),
        }),
        Entry::XfrmAdded { ns: n, undo } => Change::XfrmAdded(jv1::XfrmAdded {
            ns: ns(n),
            kind: u32::from(undo.message.kind),
            body: undo.message.body.clone(),
            what: undo.context.clone(),
        }),
        Entry::TcQdiscAdded {
            ns: n,
            dev,
            ifindex,
            parent,
            handle,
        } => Change::TcQdiscAdded(jv1::TcQdiscAdded {
            ns: ns(n),
            dev: dev.clone(),
            ifindex: *ifindex,
            parent: *parent,
            handle: *handle,
        }),
        Entry::ObjectAdded { ns: n, delete } => Change::ObjectAdded(jv1::ObjectAdded {
            ns: ns(n),
            delete: Some(message(&delete.message)),
            context: delete.context.clone(),
        }),
    };
    jv1::Entry {
        change: Some(change),
        done,
    }
}

/// An entry back from its on-disk record; `None` for a record this version does not know
/// (a newer netcr's), which recovery reports. An intent to create links reads back as
/// [`Entry::LinksIntended`].
pub(crate) fn from_record(record: &jv1::Entry) -> Result<Option<Entry>> {
    use jv1::entry::Change;
    let ns = |n: u32| n as usize;
    let missing = || CoreError::Refused("journal: a record lacks its message".into());
    Ok(Some(match &record.change {
        None => return Ok(None),
        Some(Change::NetnsCreated(c)) => Entry::NetnsCreated {
            ns: ns(c.ns),
            name: c.name.clone(),
            identity: c.identity.as_ref().map(|i| (i.dev, i.ino)),
        },
        Some(Change::DevicesBefore(c)) => Entry::DevicesBefore {
            ns: ns(c.ns),
            links: c.links.iter().map(parse_link).collect::<Result<_>>()?,
        },
        Some(Change::LoAddressesBefore(c)) => Entry::LoAddressesBefore {
            ns: ns(c.ns),
            lo: c.lo,
            addresses: c
                .addresses
                .iter()
                .map(parse_address)
                .collect::<Result<_>>()?,
        },
        Some(Change::NetnsSysctls(c)) => Entry::NetnsSysctls {
            ns: ns(c.ns),
            changed: c
                .changed
                .iter()
                .map(|v| (v.name.clone(), v.previous.clone()))
                .collect(),
        },
        Some(Change::LinkChanged(c)) => Entry::LinkChanged {
            ns: ns(c.ns),
            before: parse_link(c.before.as_ref().ok_or_else(missing)?)?,
        },
        Some(Change::LinksCreated(c)) if record.done => Entry::LinksCreated {
            ns: ns(c.ns),
            names: c.names.clone(),
        },
        Some(Change::LinksCreated(c)) => Entry::LinksIntended {
            ns: ns(c.ns),
            names: c.names.clone(),
        },
        Some(Change::DeviceMade(c)) => Entry::DeviceMade {
            ns: ns(c.ns),
            name: c.name.clone(),
        },
        Some(Change::TemporaryLink(c)) => Entry::TemporaryLink {
            name: c.name.clone(),
        },
        Some(Change::LinksRegrouped(c)) => Entry::LinksRegrouped { ns: ns(c.ns) },
        Some(Change::NexthopAdded(c)) => Entry::NexthopAdded {
            ns: ns(c.ns),
            id: c.id,
        },
        Some(Change::NftTableAdded(c)) => Entry::NftTableAdded {
            ns: ns(c.ns),
            family: u8::try_from(c.family).map_err(|_| {
                CoreError::Refused(format!("journal: nf_tables family {}", c.family))
            })?,
            name: c.name.clone(),
        },
        Some(Change::XfrmAdded(c)) => Entry::XfrmAdded {
            ns: ns(c.ns),
            undo: Request::change(
                RawMessage {
                    kind: match u16::try_from(c.kind) {
                        Ok(
                            k @ (crate::xfrm::DELSA
                            | crate::xfrm::DELPOLICY
                            | crate::xfrm::SETDEFAULT),
                        ) => k,
                        _ => {
                            return Err(CoreError::Refused(format!(
                                "journal: xfrm undo of message type {}",
                                c.kind
                            )))
                        }
                    },
                    body: c.body.clone(),
                },
                c.what.clone(),
            ),
        },
        Some(Change::TcQdiscAdded(c)) => Entry::TcQdiscAdded {
            ns: ns(c.ns),
            dev: c.dev.clone(),
            ifindex: c.ifindex,
            parent: c.parent,
            handle: c.handle,
        },
        Some(Change::ObjectAdded(c)) => Entry::ObjectAdded {
            ns: ns(c.ns),
            delete: Request::change(
                parse(c.delete.as_ref().ok_or_else(missing)?)?,
                c.context.clone(),
            ),
        },
    }))
}
