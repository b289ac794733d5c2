//! Test-only fault injection, installed by the binary around the kernel's sockets: the core
//! knows nothing of it. Every request of one operation is numbered from 0 across all its
//! sockets and namespaces.
//!
//! - `NETCR_TEST_FAIL_AT_REQUEST=K`: request K fails (its batch is cut there: the requests
//!   before it are sent, it and those after it are not) as if the kernel had refused it.
//! - `NETCR_TEST_PAUSE_AT_REQUEST=K`: before request K (K = the number of requests: after
//!   the last one, just before the restore reports success) print
//!   `netcr: test pause before request K` on stderr and wait, up to 60 s, for the
//!   cancellation flag (SIGINT/SIGTERM), so a test can deliver a signal at a known step.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use netcr_netlink::netlink_packet_route::RouteNetlinkMessage;
use netcr_netlink::{
    Connector, Kernel, Netns, Protocol, RawMessage, RawTransport, ReceivedMessage, Reply, Request,
    Transport,
};

/// The variable naming the request to fail.
pub const ENV_FAIL_AT: &str = "NETCR_TEST_FAIL_AT_REQUEST";
/// The variable naming the request to pause before.
pub const ENV_PAUSE_AT: &str = "NETCR_TEST_PAUSE_AT_REQUEST";

/// What to inject, shared by every socket of one operation.
#[derive(Debug)]
struct Plan {
    fail_at: Option<usize>,
    pause_at: Option<usize>,
    cancel: Option<Arc<AtomicBool>>,
    /// Requests numbered so far.
    sent: Cell<usize>,
    paused: Cell<bool>,
}

impl Plan {
    /// Pauses once, when the pause point is `at` (and waits for the cancellation flag).
    fn pause_at(&self, at: usize) {
        if self.pause_at != Some(at) || self.paused.replace(true) {
            return;
        }
        eprintln!("netcr: test pause before request {at}");
        for _ in 0..6000 {
            if self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::SeqCst))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// A [`Connector`] whose sockets fail or pause at the requests the environment names.
#[derive(Debug)]
pub struct FaultInjection {
    plan: Rc<Plan>,
}

impl FaultInjection {
    /// The injection the environment asks for; `None` when it asks for none (the kernel's
    /// sockets are used as they are). `cancel` is the flag the pause waits for.
    pub fn from_env(cancel: Option<Arc<AtomicBool>>) -> Option<FaultInjection> {
        let number = |var: &str| std::env::var(var).ok().and_then(|v| v.parse().ok());
        let (fail_at, pause_at) = (number(ENV_FAIL_AT), number(ENV_PAUSE_AT));
        if fail_at.is_none() && pause_at.is_none() {
            return None;
        }
        Some(FaultInjection::new(fail_at, pause_at, cancel))
    }

    /// Fails request `fail_at` and pauses before request `pause_at` (waiting for `cancel`),
    /// for a program or test that drives the library itself.
    pub fn new(
        fail_at: Option<usize>,
        pause_at: Option<usize>,
        cancel: Option<Arc<AtomicBool>>,
    ) -> FaultInjection {
        FaultInjection {
            plan: Rc::new(Plan {
                fail_at,
                pause_at,
                cancel,
                sent: Cell::new(0),
                paused: Cell::new(false),
            }),
        }
    }
}

impl Connector for FaultInjection {
    fn connect(&mut self, netns: &Netns, label: &str) -> netcr_netlink::Result<Box<dyn Transport>> {
        Ok(Box::new(Faulty {
            inner: Kernel.connect(netns, label)?,
            plan: self.plan.clone(),
        }))
    }

    fn connect_raw(
        &mut self,
        netns: &Netns,
        protocol: Protocol,
        label: &str,
    ) -> netcr_netlink::Result<Box<dyn RawTransport>> {
        Ok(Box::new(FaultyRaw {
            inner: Kernel.connect_raw(netns, protocol, label)?,
            plan: self.plan.clone(),
        }))
    }

    fn before_commit(&mut self) {
        self.plan.pause_at(self.plan.sent.get());
    }
}

/// A kernel socket of another protocol (nf_tables, xfrm) that numbers the requests of its
/// transactions and its single changes in the shared plan. A failure injected at one of them fails the whole
/// transaction before anything is sent, as a refusal by the kernel would: it applies all of
/// a transaction or none.
struct FaultyRaw {
    inner: Box<dyn RawTransport>,
    plan: Rc<Plan>,
}

impl RawTransport for FaultyRaw {
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
        let first = self.plan.sent.get();
        let n = requests.len();
        if let Some(k) = self
            .plan
            .pause_at
            .filter(|k| (first..first + n).contains(k))
        {
            self.plan.pause_at(k);
        }
        self.plan.sent.set(first + n);
        match self
            .plan
            .fail_at
            .filter(|k| (first..first + n).contains(k))
        {
            Some(k) => Err(netcr_netlink::Error::Protocol {
                context: requests[k - first].context.clone(),
                netns: self.inner.netns_label().to_string(),
                detail: format!(
                    "injected failure (NETCR_TEST_FAIL_AT_REQUEST) in {context}: nothing of it was sent"
                ),
            }),
            None => self.inner.transaction(subsystem, requests, context),
        }
    }

    fn change(&mut self, request: Request<RawMessage>) -> netcr_netlink::Result<()> {
        let k = self.plan.sent.get();
        self.plan.pause_at(k);
        self.plan.sent.set(k + 1);
        if self.plan.fail_at == Some(k) {
            return Err(netcr_netlink::Error::Protocol {
                context: request.context,
                netns: self.inner.netns_label().to_string(),
                detail: "injected failure (NETCR_TEST_FAIL_AT_REQUEST)".into(),
            });
        }
        self.inner.change(request)
    }
}

/// A kernel socket that numbers its requests in the shared plan.
struct Faulty {
    inner: Box<dyn Transport>,
    plan: Rc<Plan>,
}

impl Faulty {
    /// Numbers `requests` in the plan, pauses where it says, and sends them with `send`,
    /// cut at the request that is to fail.
    fn numbered<M>(
        &mut self,
        mut requests: Vec<Request<M>>,
        send: impl FnOnce(&mut dyn Transport, Vec<Request<M>>) -> Vec<Reply<M>>,
    ) -> Vec<Reply<M>> {
        let first = self.plan.sent.get();
        let n = requests.len();
        if let Some(k) = self
            .plan
            .pause_at
            .filter(|k| (first..first + n).contains(k))
        {
            self.plan.pause_at(k);
        }
        self.plan.sent.set(first + n);
        let Some(cut) = self
            .plan
            .fail_at
            .filter(|k| (first..first + n).contains(k))
            .map(|k| k - first)
        else {
            return send(&mut *self.inner, requests);
        };
        let unsent = requests.split_off(cut);
        let mut replies = if requests.is_empty() {
            Vec::new()
        } else {
            send(&mut *self.inner, requests)
        };
        let label = self.inner.netns_label().to_string();
        for (i, request) in unsent.into_iter().enumerate() {
            replies.push(Err(netcr_netlink::Error::Protocol {
                context: request.context,
                netns: label.clone(),
                detail: if i == 0 {
                    "injected failure (NETCR_TEST_FAIL_AT_REQUEST)".into()
                } else {
                    "not sent: an injected failure stopped its batch".into()
                },
            }));
        }
        replies
    }
}

impl Transport for Faulty {
    fn netns_label(&self) -> &str {
        self.inner.netns_label()
    }

    fn batch(&mut self, requests: Vec<Request>) -> Vec<Reply> {
        self.numbered(requests, |t, r| t.batch(r))
    }

    fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        context: &str,
    ) -> netcr_netlink::Result<Vec<RouteNetlinkMessage>> {
        self.inner.dump(message, context)
    }

    fn batch_raw(&mut self, requests: Vec<Request<RawMessage>>) -> Vec<Reply<RawMessage>> {
        self.numbered(requests, |t, r| t.batch_raw(r))
    }

    fn dump_raw(
        &mut self,
        message: RawMessage,
        context: &str,
    ) -> netcr_netlink::Result<Vec<RawMessage>> {
        self.inner.dump_raw(message, context)
    }
}
