//! What every phase of a restore shares: the image, the targets, the sockets (all taken from
//! one [`Connector`]), the journal, and the request count.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use netcr_image::{v1, Image, NetnsImage};
use netcr_netlink::{
    Connector, Netns, Protocol, RawMessage, RawTransport, ReceivedMessage, Reply, Request,
    Transport,
};
use netlink_packet_route::link::LinkMessage;

use super::journal::Journal;
use super::lock::TargetLock;
use super::plan::Outside;
use super::{RestoreOptions, RestoreReport};
use crate::driver::DriverError;
use crate::error::{CoreError, Result};

/// Which namespace a socket lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// The namespace netcr runs in, where external devices are.
    Caller,
    /// A target, by its index in [`Session::targets`] (the image's order).
    Target(usize),
}

/// One namespace being restored.
#[derive(Debug)]
pub(crate) struct Target {
    /// The image's id of the namespace it rebuilds.
    pub id: u32,
    /// Its label in messages.
    pub label: String,
    /// The namespace; `None` until [`super::prepare::open_targets`] creates it.
    pub netns: Option<Netns>,
    /// The name to create it under, when it does not exist yet.
    pub create: Option<String>,
    /// Its name under /run/netns, when it was given by name (existing or not).
    pub named: Option<String>,
    /// An existing namespace's links before any change.
    pub links_before: Vec<LinkMessage>,
    /// How each link whose lower device or peer lies outside the image is re-attached.
    pub outside: HashMap<String, Outside>,
    /// Namespace sysctls the kernel would not take (left out of verification).
    pub sysctls_left_out: HashSet<String>,
    /// Its links once every link is created.
    pub links_now: Vec<LinkMessage>,
    /// Name to index of `links_now`.
    pub index: HashMap<String, u32>,
    /// Devices of the image that were there already and are adopted, not created.
    pub adopted: HashSet<String>,
    /// Address changes to send once links are up (see `objects::renew_addresses`).
    pub renewals: Vec<Request>,
    /// What was done, for the caller.
    pub report: RestoreReport,
}

impl Target {
    /// A target rebuilding the image's namespace `id`: the namespace `netns` (`None`: to be
    /// created as `create`), nothing learnt about it yet.
    pub fn new(id: u32, label: &str, netns: Option<Netns>, create: Option<String>) -> Target {
        Target {
            id,
            label: label.to_string(),
            netns,
            create,
            named: None,
            links_before: Vec::new(),
            outside: HashMap::new(),
            sysctls_left_out: HashSet::new(),
            links_now: Vec::new(),
            index: HashMap::new(),
            adopted: HashSet::new(),
            renewals: Vec::new(),
            report: RestoreReport {
                netns: label.to_string(),
                ..Default::default()
            },
        }
    }

    /// Whether the namespace existed before the restore.
    pub fn existing(&self) -> bool {
        self.create.is_none()
    }
}

/// The state of one restore.
pub(crate) struct Session<'a> {
    pub image: &'a Image,
    pub opts: &'a RestoreOptions,
    pub caller: &'a Netns,
    connector: &'a mut dyn Connector,
    pub targets: Vec<Target>,
    sockets: HashMap<Key, Box<dyn Transport>>,
    /// NETLINK_NETFILTER (nf_tables) and NETLINK_XFRM (IPsec) sockets, by target.
    raw: HashMap<(usize, Protocol), Box<dyn RawTransport>>,
    pub journal: Journal,
    requests: Rc<Cell<usize>>,
    /// One restore per target at a time: held until the session ends.
    pub locks: Vec<TargetLock>,
    /// Recovery of a killed restore: touch only what the journal proves is netcr's.
    pub strict: bool,
}

/// A transport that counts the requests sent through it.
struct Counted {
    inner: Box<dyn Transport>,
    count: Rc<Cell<usize>>,
}

impl Transport for Counted {
    fn netns_label(&self) -> &str {
        self.inner.netns_label()
    }

    fn batch(&mut self, requests: Vec<Request>) -> Vec<Reply> {
        log_requests(self.inner.netns_label(), self.count.get(), &requests);
        self.count.set(self.count.get() + requests.len());
        self.inner.batch(requests)
    }

    fn dump(
        &mut self,
        message: netlink_packet_route::RouteNetlinkMessage,
        context: &str,
    ) -> netcr_netlink::Result<Vec<netlink_packet_route::RouteNetlinkMessage>> {
        self.inner.dump(message, context)
    }

    fn batch_raw(&mut self, requests: Vec<Request<RawMessage>>) -> Vec<Reply<RawMessage>> {
        log_requests(self.inner.netns_label(), self.count.get(), &requests);
        self.count.set(self.count.get() + requests.len());
        self.inner.batch_raw(requests)
    }

    fn dump_raw(
        &mut self,
        message: RawMessage,
        context: &str,
    ) -> netcr_netlink::Result<Vec<RawMessage>> {
        self.inner.dump_raw(message, context)
    }
}

/// Each request at debug level (`netcr -vv`), numbered from `first` as fault injection
/// numbers them: `netns "web": request 12: creating macvlan "mv0"`.
fn log_requests<M>(label: &str, first: usize, requests: &[Request<M>]) {
    if log::log_enabled!(log::Level::Debug) {
        for (i, r) in requests.iter().enumerate() {
            log::debug!("netns \"{label}\": request {}: {}", first + i, r.context);
        }
    }
}

/// A netfilter or xfrm socket that counts the requests of its transactions and changes.
struct CountedRaw {
    inner: Box<dyn RawTransport>,
    count: Rc<Cell<usize>>,
}

impl RawTransport for CountedRaw {
    fn netns_label(&self) -> &str {
        self.inner.netns_label()
    }

    fn dump(
        &mut self,
        kind: u16,
        body: &[u8],
        context: &str,
    ) -> netcr_netlink::Result<Vec<ReceivedMessage>> {
        self.inner.dump(kind, body, context)
    }

    fn request(
        &mut self,
        kind: u16,
        body: &[u8],
        context: &str,
    ) -> netcr_netlink::Result<Vec<ReceivedMessage>> {
        self.inner.request(kind, body, context)
    }

    fn transaction(
        &mut self,
        subsystem: u8,
        requests: Vec<Request<RawMessage>>,
        context: &str,
    ) -> netcr_netlink::Result<()> {
        self.count.set(self.count.get() + requests.len());
        self.inner.transaction(subsystem, requests, context)
    }

    fn change(&mut self, request: Request<RawMessage>) -> netcr_netlink::Result<()> {
        self.count.set(self.count.get() + 1);
        self.inner.change(request)
    }
}

impl<'a> Session<'a> {
    /// A session with no targets yet.
    pub fn new(
        image: &'a Image,
        opts: &'a RestoreOptions,
        caller: &'a Netns,
        connector: &'a mut dyn Connector,
    ) -> Session<'a> {
        Session {
            image,
            opts,
            caller,
            connector,
            targets: Vec::new(),
            sockets: HashMap::new(),
            raw: HashMap::new(),
            journal: Journal::default(),
            requests: Rc::new(Cell::new(0)),
            locks: Vec::new(),
            strict: false,
        }
    }

    /// The image of target `ns`.
    pub fn image_ns(&self, ns: usize) -> &'a NetnsImage {
        &self.image.namespaces[ns]
    }

    /// The links target `ns` is rebuilt with.
    pub fn links(&self, ns: usize) -> &'a [v1::Link] {
        &self.image.namespaces[ns].links
    }

    /// The target rebuilding the image's namespace `id`.
    pub fn target_of(&self, id: u32) -> Option<usize> {
        self.targets.iter().position(|t| t.id == id)
    }

    /// The namespace behind `key`.
    pub fn netns(&self, key: Key) -> Result<&Netns> {
        match key {
            Key::Caller => Ok(self.caller),
            Key::Target(ns) => self.targets[ns].netns.as_ref().ok_or_else(|| {
                CoreError::Refused(format!(
                    "netns \"{}\" does not exist yet",
                    self.targets[ns].label
                ))
            }),
        }
    }

    fn label(&self, key: Key) -> String {
        match key {
            Key::Caller => "caller".to_string(),
            Key::Target(ns) => self.targets[ns].label.clone(),
        }
    }

    /// The socket in `key`'s namespace, opened on first use.
    pub fn socket(&mut self, key: Key) -> Result<&mut dyn Transport> {
        if !self.sockets.contains_key(&key) {
            let label = self.label(key);
            let netns = match key {
                Key::Caller => self.caller,
                Key::Target(ns) => self.targets[ns].netns.as_ref().ok_or_else(|| {
                    CoreError::Refused(format!("netns \"{label}\" does not exist yet"))
                })?,
            };
            let inner = self.connector.connect(netns, &label)?;
            let counted = Counted {
                inner,
                count: self.requests.clone(),
            };
            self.sockets.insert(key, Box::new(counted));
        }
        Ok(self
            .sockets
            .get_mut(&key)
            .map(|s| &mut **s)
            .expect("inserted above"))
    }

    /// Closes the sockets in `key`'s namespace (a socket keeps its namespace alive).
    pub fn close(&mut self, key: Key) {
        self.sockets.remove(&key);
        if let Key::Target(ns) = key {
            self.raw.retain(|(n, _), _| *n != ns);
        }
    }

    /// The NETLINK_NETFILTER socket in target `ns`, opened on first use.
    pub fn netfilter(&mut self, ns: usize) -> Result<&mut dyn RawTransport> {
        self.raw_socket(ns, Protocol::Netfilter)
    }

    /// The NETLINK_XFRM socket in target `ns`, opened on first use.
    pub fn xfrm(&mut self, ns: usize) -> Result<&mut dyn RawTransport> {
        self.raw_socket(ns, Protocol::Xfrm)
    }

    fn raw_socket(&mut self, ns: usize, protocol: Protocol) -> Result<&mut dyn RawTransport> {
        if !self.raw.contains_key(&(ns, protocol)) {
            let label = self.label(Key::Target(ns));
            let netns = self.targets[ns].netns.as_ref().ok_or_else(|| {
                CoreError::Refused(format!("netns \"{label}\" does not exist yet"))
            })?;
            let inner = self.connector.connect_raw(netns, protocol, &label)?;
            let counted = CountedRaw {
                inner,
                count: self.requests.clone(),
            };
            self.raw.insert((ns, protocol), Box::new(counted));
        }
        Ok(self
            .raw
            .get_mut(&(ns, protocol))
            .map(|s| &mut **s)
            .expect("inserted above"))
    }

    /// Sends one xfrm change to target `ns`, after the cancellation check.
    pub fn xfrm_change(&mut self, ns: usize, request: Request<RawMessage>) -> Result<()> {
        self.check_cancel()?;
        Ok(self.xfrm(ns)?.change(request)?)
    }

    /// Sends `requests` to target `ns` as one nf_tables transaction (applied whole or not at
    /// all), after the cancellation check.
    pub fn transaction(
        &mut self,
        ns: usize,
        requests: Vec<Request<RawMessage>>,
        context: &str,
    ) -> Result<()> {
        self.check_cancel()?;
        if requests.is_empty() {
            return Ok(());
        }
        let subsystem = netcr_netlink::nftables::NFNL_SUBSYS_NFTABLES;
        Ok(self
            .netfilter(ns)?
            .transaction(subsystem, requests, context)?)
    }

    /// Fails with [`CoreError::Interrupted`] once a signal asked the restore to stop.
    pub fn check_cancel(&self) -> Result<()> {
        match &self.opts.cancel {
            Some(c) if c.load(Ordering::SeqCst) => Err(CoreError::Interrupted(String::new())),
            _ => Ok(()),
        }
    }

    /// Sends a batch of changes, one reply per request, after the cancellation check.
    pub fn send(&mut self, key: Key, requests: Vec<Request>) -> Result<Vec<Reply>> {
        self.check_cancel()?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.socket(key)?.batch(requests))
    }

    /// Sends a batch of raw requests (nexthops), one reply per request, after the
    /// cancellation check.
    pub fn send_raw(
        &mut self,
        key: Key,
        requests: Vec<Request<RawMessage>>,
    ) -> Result<Vec<Reply<RawMessage>>> {
        self.check_cancel()?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.socket(key)?.batch_raw(requests))
    }

    /// Requests sent so far.
    pub fn requests(&self) -> usize {
        self.requests.get()
    }

    /// Says how far the restore got, where [`RestoreOptions::progress`] asks.
    pub fn progress(&self, step: &str, done: usize, total: usize) {
        if let Some(p) = &self.opts.progress {
            (p.0)(step, done, total);
        }
    }

    /// Runs `phase` for target `ns` and adds the requests it sent to that target's report.
    pub fn counted(
        &mut self,
        ns: usize,
        phase: impl FnOnce(&mut Session<'a>, usize) -> Result<()>,
    ) -> Result<()> {
        let before = self.requests();
        let result = phase(self, ns);
        let sent = self.requests() - before;
        self.targets[ns].report.requests += sent;
        result
    }

    /// The last step: the connector learns the restore is about to succeed, and a signal
    /// that arrived until now still rolls it back.
    pub fn commit_point(&mut self) -> Result<()> {
        self.connector.before_commit();
        self.check_cancel()
    }

    /// A driver's error, with the namespace, kind and device.
    pub fn driver_error(&self, ns: usize, link: &v1::Link, e: DriverError) -> CoreError {
        CoreError::Driver {
            netns: self.targets[ns].label.clone(),
            kind: link.kind.clone(),
            device: link.name.clone(),
            message: e.0,
        }
    }

    /// The reports of a successful restore, in the image's order. Its journal goes: the
    /// restore is committed.
    pub fn into_reports(mut self) -> Vec<RestoreReport> {
        if let Some(file) = self.journal.file.take() {
            let path = file.path().display().to_string();
            if let Err(e) = file.remove() {
                log::warn!("the restore is complete, but its journal {path} stays: {e}");
            }
        }
        std::mem::take(&mut self.targets)
            .into_iter()
            .map(|t| t.report)
            .collect()
    }
}

/// The first failure of a batch, with a hint where the errno has a known cause.
pub(crate) fn check(replies: Vec<Reply>) -> Result<()> {
    match replies.into_iter().find_map(|r| r.err()) {
        Some(e) => Err(annotate(e)),
        None => Ok(()),
    }
}

/// A kernel error as the core reports it: EADDRINUSE on a creation usually means the
/// original device is still on the lower device.
pub(crate) fn annotate(e: netcr_netlink::Error) -> CoreError {
    if e.errno() == Some(libc::EADDRINUSE) {
        return CoreError::Refused(format!(
            "{e}: its MAC address is already in use on that lower device; is the original device still there?"
        ));
    }
    CoreError::Netlink(e)
}
