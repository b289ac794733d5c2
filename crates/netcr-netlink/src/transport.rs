//! The request primitive every layer above uses, and its one real implementation over
//! netlink-proto.

use std::cell::RefCell;
use std::fmt::Debug;
use std::io;
use std::pin::Pin;

use bytes::BytesMut;
use futures::future::{select, Either};
use futures::StreamExt;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_proto::sys::{protocols::NETLINK_ROUTE, AsyncSocket, SmolSocket, SocketAddr};
use netlink_proto::{Connection, ConnectionHandle, NetlinkMessageCodec};
use nix::sys::socket::{setsockopt, sockopt};

use crate::error::{decode_done_ext_ack, decode_error_ext_ack, Error, Result};
use crate::netns::Netns;
use crate::raw::{Protocol, RawSocket, RawTransport};

/// One request: a message, its flags beyond `NLM_F_REQUEST | NLM_F_ACK`, and what it does
/// (for error messages). `M` is a [`RouteNetlinkMessage`], or a [`RawMessage`] for the
/// message types netlink-packet-route does not model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<M = RouteNetlinkMessage> {
    /// The message to send.
    pub message: M,
    /// Extra `NLM_F_*` flags (`NLM_F_CREATE | NLM_F_EXCL`, ...).
    pub flags: u16,
    /// What the request does, e.g. `creating macvlan "mv0"`.
    pub context: String,
}

impl<M> Request<M> {
    /// A creation that must never modify an existing object: `NLM_F_CREATE | NLM_F_EXCL`.
    pub fn create(message: M, context: impl Into<String>) -> Request<M> {
        Request {
            message,
            flags: netlink_packet_core::NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL,
            context: context.into(),
        }
    }

    /// A change or deletion of an existing object.
    pub fn change(message: M, context: impl Into<String>) -> Request<M> {
        Request {
            message,
            flags: 0,
            context: context.into(),
        }
    }
}

/// The kernel's answer to one request of a batch: the messages it returned (most requests
/// return none, only an ACK).
pub type Reply<M = RouteNetlinkMessage> = Result<Vec<M>>;

/// An rtnetlink message of a type netlink-packet-route 0.34 does not model (nexthop
/// objects: [`crate::nexthop`]), as its type and its body (everything after the netlink
/// header). Only the types in [`RAW_MESSAGE_TYPES`] travel this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The netlink message type (`RTM_NEWNEXTHOP`, ...).
    pub kind: u16,
    /// The message body, as the kernel encodes it.
    pub body: Vec<u8>,
}

/// The message types sent and received as [`RawMessage`]s: nexthop objects
/// (RTM_{NEW,DEL,GET}NEXTHOP), and traffic control (qdiscs, classes, filters, chains and actions),
/// whose options netcr keeps byte for byte ([`crate::tc`]). Every other type is a
/// [`RouteNetlinkMessage`].
pub const RAW_MESSAGE_TYPES: [u16; 18] = [
    crate::nexthop::RTM_NEWNEXTHOP,
    crate::nexthop::RTM_DELNEXTHOP,
    crate::nexthop::RTM_GETNEXTHOP,
    crate::tc::RTM_NEWQDISC,
    crate::tc::RTM_DELQDISC,
    crate::tc::RTM_GETQDISC,
    crate::tc::RTM_NEWTCLASS,
    crate::tc::RTM_DELTCLASS,
    crate::tc::RTM_GETTCLASS,
    crate::tc::RTM_NEWTFILTER,
    crate::tc::RTM_DELTFILTER,
    crate::tc::RTM_GETTFILTER,
    crate::tc::RTM_NEWCHAIN,
    crate::tc::RTM_DELCHAIN,
    crate::tc::RTM_GETCHAIN,
    crate::tc::RTM_NEWACTION,
    crate::tc::RTM_DELACTION,
    crate::tc::RTM_GETACTION,
];

/// What the core needs from a netlink socket. Object-safe, so the core can be unit-tested
/// against a recording fake.
pub trait Transport {
    /// Label of the namespace the socket lives in, for messages.
    fn netns_label(&self) -> &str;

    /// Sends `requests` in order, many in flight at once, and returns one reply per request,
    /// in the same order. The kernel processes them in order; a failed one does not stop
    /// the next.
    fn batch(&mut self, requests: Vec<Request>) -> Vec<Reply>;

    /// Runs a dump request (`NLM_F_DUMP` is added) and returns every message, retrying a
    /// bounded number of times when concurrent changes interrupt it.
    fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        context: &str,
    ) -> Result<Vec<RouteNetlinkMessage>>;

    /// [`batch`](Transport::batch) for raw messages (types in [`RAW_MESSAGE_TYPES`]). Every
    /// transport forwards these too: a wrapper that did not would hide requests from the
    /// fault injection and the request count.
    fn batch_raw(&mut self, requests: Vec<Request<RawMessage>>) -> Vec<Reply<RawMessage>>;

    /// [`dump`](Transport::dump) for a raw message (a type in [`RAW_MESSAGE_TYPES`]).
    fn dump_raw(&mut self, message: RawMessage, context: &str) -> Result<Vec<RawMessage>>;
}

/// Opens the sockets a dump or restore uses. The core takes every socket from one of these:
/// tests hand it fakes, the binary wraps the real one (test-only fault injection).
pub trait Connector {
    /// A socket inside `netns`; `label` names the namespace in messages.
    fn connect(&mut self, netns: &Netns, label: &str) -> Result<Box<dyn Transport>>;

    /// A socket of `protocol` inside `netns`, for dumps that only find and name objects; the
    /// kernel's by default.
    fn connect_raw(
        &mut self,
        netns: &Netns,
        protocol: Protocol,
        label: &str,
    ) -> Result<Box<dyn RawTransport>> {
        Ok(Box::new(RawSocket::open_in(netns, protocol, label)?))
    }

    /// Called once when the work is done and verified, just before it is reported as a
    /// success: the last moment at which it is still rolled back (by a cancellation).
    fn before_commit(&mut self) {}
}

/// The real kernel: [`Rtnl`] sockets opened inside each namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

impl Connector for Kernel {
    fn connect(&mut self, netns: &Netns, label: &str) -> Result<Box<dyn Transport>> {
        let mut rtnl = Rtnl::open_in(netns)?;
        rtnl.set_label(label);
        Ok(Box::new(rtnl))
    }
}

/// Counters that let tests and benchmarks see how requests went out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests sent (dumps count once per attempt).
    pub requests: u64,
    /// Datagrams sent.
    pub datagrams: u64,
    /// The most requests that were outstanding at once (sent, not yet answered).
    pub max_in_flight: u64,
    /// Dumps retried after NLM_F_DUMP_INTR.
    pub dump_retries: u64,
}

/// How many times an interrupted dump is tried before giving up. Each retry waits a little
/// longer (up to 20 ms), so a namespace that changes without pause still gets a window.
pub const DUMP_ATTEMPTS: u32 = 32;
/// Receive buffer asked for (SO_RCVBUFFORCE, root) so a batch's ACKs never overflow it.
const RCVBUF_BYTES: usize = 8 << 20;
/// Send buffer asked for: a batch goes out as one datagram and must fit.
const SNDBUF_BYTES: usize = 4 << 20;
/// Upper bound of requests per datagram.
const MAX_BATCH_REQUESTS: usize = 1024;
/// Room each queued ACK takes in the receive buffer (skb overhead included), conservatively.
const ACK_TRUESIZE: usize = 2048;

type Conn = Connection<Wire, SmolSocket, StrictCodec>;

/// What travels over an [`Rtnl`] socket: a message netlink-packet-route models, or a raw
/// one of [`RAW_MESSAGE_TYPES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wire {
    /// A message netlink-packet-route parses and emits.
    Route(RouteNetlinkMessage),
    /// A message of a type it does not know, body verbatim.
    Raw(RawMessage),
}

impl NetlinkSerializable for Wire {
    fn message_type(&self) -> u16 {
        match self {
            Wire::Route(m) => m.message_type(),
            Wire::Raw(m) => m.kind,
        }
    }

    fn buffer_len(&self) -> usize {
        match self {
            Wire::Route(m) => NetlinkSerializable::buffer_len(m),
            Wire::Raw(m) => m.body.len(),
        }
    }

    fn serialize(&self, buffer: &mut [u8]) {
        match self {
            Wire::Route(m) => m.serialize(buffer),
            Wire::Raw(m) => buffer.copy_from_slice(&m.body),
        }
    }
}

impl NetlinkDeserializable for Wire {
    type Error = netlink_packet_core::DecodeError;

    fn deserialize(
        header: &NetlinkHeader,
        payload: &[u8],
    ) -> std::result::Result<Self, Self::Error> {
        if RAW_MESSAGE_TYPES.contains(&header.message_type) {
            return Ok(Wire::Raw(RawMessage {
                kind: header.message_type,
                body: payload.to_vec(),
            }));
        }
        RouteNetlinkMessage::deserialize(header, payload).map(Wire::Route)
    }
}

/// The message types a request can carry: each goes on the wire as a [`Wire`] and its
/// replies come back as its own type.
trait OnWire: Sized {
    /// Bytes of the body.
    fn wire_len(&self) -> usize;
    fn into_wire(self) -> Wire;
    fn from_wire(wire: Wire) -> Option<Self>;
}

impl OnWire for RouteNetlinkMessage {
    fn wire_len(&self) -> usize {
        NetlinkSerializable::buffer_len(self)
    }
    fn into_wire(self) -> Wire {
        Wire::Route(self)
    }
    fn from_wire(wire: Wire) -> Option<Self> {
        match wire {
            Wire::Route(m) => Some(m),
            Wire::Raw(_) => None,
        }
    }
}

impl OnWire for RawMessage {
    fn wire_len(&self) -> usize {
        self.body.len()
    }
    fn into_wire(self) -> Wire {
        Wire::Raw(self)
    }
    fn from_wire(wire: Wire) -> Option<Self> {
        match wire {
            Wire::Raw(m) => Some(m),
            Wire::Route(_) => None,
        }
    }
}

/// A synchronous rtnetlink socket bound to one namespace.
pub struct Rtnl {
    conn: Pin<Box<Conn>>,
    handle: ConnectionHandle<Wire>,
    label: String,
    /// Mirrors netlink-proto's sequence counter: it numbers every message it sends 1, 2, ...
    last_seq: u32,
    max_batch_requests: usize,
    max_batch_bytes: usize,
    stats: Stats,
    closed: bool,
}

impl Debug for Rtnl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnl")
            .field("netns", &self.label)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Rtnl {
    /// Opens a socket in the calling thread's namespace.
    pub fn open() -> Result<Rtnl> {
        Self::open_labeled("current".to_string())
    }

    /// Opens a socket inside `netns`. The calling thread enters the namespace only while the
    /// socket is created; the socket stays bound to that namespace afterwards.
    pub fn open_in(netns: &Netns) -> Result<Rtnl> {
        let _inside = netns.enter()?;
        Self::open_labeled(netns.label().to_string())
    }

    fn open_labeled(label: String) -> Result<Rtnl> {
        let socket_err = |source: io::Error| Error::Socket {
            netns: label.clone(),
            source,
        };
        let (mut conn, handle, unsolicited) =
            netlink_proto::new_connection_with_codec::<Wire, SmolSocket, StrictCodec>(
                NETLINK_ROUTE,
            )
            .map_err(socket_err)?;
        // Nothing is subscribed to multicast groups: nothing unsolicited is expected.
        drop(unsolicited);
        conn.set_forward_ack(true);
        conn.set_forward_done(true);
        let socket = conn.socket_mut().socket_mut();
        socket
            .set_netlink_get_strict_chk(true)
            .map_err(socket_err)?;
        socket.set_ext_ack(true).map_err(socket_err)?;
        socket.set_cap_ack(true).map_err(socket_err)?;
        // Forcing buffer sizes needs CAP_NET_ADMIN; without it keep what we may have.
        if setsockopt(&*socket, sockopt::RcvBufForce, &RCVBUF_BYTES).is_err() {
            let _ = setsockopt(&*socket, sockopt::RcvBuf, &RCVBUF_BYTES);
        }
        if setsockopt(&*socket, sockopt::SndBufForce, &SNDBUF_BYTES).is_err() {
            let _ = setsockopt(&*socket, sockopt::SndBuf, &SNDBUF_BYTES);
        }
        let rcvbuf = nix::sys::socket::getsockopt(&*socket, sockopt::RcvBuf).unwrap_or(212_992);
        let sndbuf = nix::sys::socket::getsockopt(&*socket, sockopt::SndBuf).unwrap_or(212_992);
        Ok(Rtnl {
            conn: Box::pin(conn),
            handle,
            label,
            last_seq: 0,
            max_batch_requests: (rcvbuf / ACK_TRUESIZE).clamp(16, MAX_BATCH_REQUESTS),
            max_batch_bytes: sndbuf.saturating_sub(4096).max(16 * 1024),
            stats: Stats::default(),
            closed: false,
        })
    }

    /// Renames the namespace label used in messages.
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
    }

    /// Counters since the socket was opened.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn protocol_err(&self, context: &str, detail: impl Into<String>) -> Error {
        Error::Protocol {
            context: context.to_string(),
            netns: self.label.clone(),
            detail: detail.into(),
        }
    }

    /// Sends `messages` as one datagram and collects every reply, driving the connection on
    /// this thread until all are answered.
    fn exchange(
        &mut self,
        messages: Vec<NetlinkMessage<Wire>>,
        context: &str,
    ) -> Result<Vec<NetlinkMessage<Wire>>> {
        if self.closed {
            return Err(self.protocol_err(context, "the netlink connection is closed"));
        }
        let count = messages.len() as u64;
        let stream = self
            .handle
            .request_batch(messages, SocketAddr::new(0, 0))
            .map_err(|e| self.protocol_err(context, e.to_string()))?;
        self.stats.requests += count;
        self.stats.datagrams += 1;
        // Every message of the datagram is in flight before the first reply is read.
        self.stats.max_in_flight = self.stats.max_in_flight.max(count);
        let collect = stream.collect::<Vec<_>>();
        DECODE_ERROR.with(|e| e.borrow_mut().take());
        let replies = match futures::executor::block_on(select(self.conn.as_mut(), collect)) {
            Either::Right((replies, _)) => replies,
            Either::Left(((), _)) => {
                self.closed = true;
                return Err(match DECODE_ERROR.with(|e| e.borrow_mut().take()) {
                    Some(detail) => Error::Decode {
                        context: context.to_string(),
                        netns: self.label.clone(),
                        detail,
                    },
                    None => self.protocol_err(context, "the netlink connection closed"),
                });
            }
        };
        Ok(replies)
    }

    fn envelope(&mut self, message: Wire, flags: u16) -> NetlinkMessage<Wire> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        msg.finalize();
        self.last_seq = self.last_seq.wrapping_add(1);
        msg
    }

    fn kernel_error(&self, context: &str, errno: i32, ext_ack: Option<String>) -> Error {
        Error::Kernel {
            context: context.to_string(),
            netns: self.label.clone(),
            errno,
            ext_ack,
        }
    }

    fn send_chunk<M: OnWire>(&mut self, chunk: Vec<Request<M>>, out: &mut Vec<Reply<M>>) {
        let first_seq = self.last_seq.wrapping_add(1);
        let contexts: Vec<String> = chunk.iter().map(|r| r.context.clone()).collect();
        let messages: Vec<_> = chunk
            .into_iter()
            .map(|r| self.envelope(r.message.into_wire(), NLM_F_ACK | r.flags))
            .collect();
        let n = messages.len();
        let joined = if n == 1 {
            contexts[0].clone()
        } else {
            format!("{} requests", n)
        };
        let replies = match self.exchange(messages, &joined) {
            Ok(replies) => replies,
            Err(e) => {
                let text = e.to_string();
                out.extend(
                    contexts
                        .iter()
                        .map(|c| Err(self.protocol_err(c, text.clone()))),
                );
                return;
            }
        };
        let mut results: Vec<Option<Reply<M>>> = (0..n).map(|_| None).collect();
        let mut data: Vec<Vec<M>> = (0..n).map(|_| Vec::new()).collect();
        for reply in replies {
            let index = reply.header.sequence_number.wrapping_sub(first_seq) as usize;
            if index >= n {
                continue;
            }
            match reply.payload {
                NetlinkPayload::Error(e) => {
                    results[index] = Some(match e.code {
                        None => Ok(std::mem::take(&mut data[index])),
                        Some(code) => {
                            let ack = decode_error_ext_ack(reply.header.flags, &e.header);
                            Err(self.kernel_error(&contexts[index], -code.get(), ack.message))
                        }
                    })
                }
                NetlinkPayload::InnerMessage(m) => match M::from_wire(m) {
                    Some(m) => data[index].push(m),
                    None => {
                        results[index] = Some(Err(self.protocol_err(
                            &contexts[index],
                            "the kernel answered with a message of another family",
                        )))
                    }
                },
                _ => {}
            }
        }
        for (i, result) in results.into_iter().enumerate() {
            out.push(result.unwrap_or_else(|| {
                Err(self.protocol_err(&contexts[i], "the kernel sent no acknowledgement"))
            }));
        }
    }

    fn dump_once<M: OnWire>(&mut self, message: M, context: &str) -> Result<(Vec<M>, bool)> {
        let msg = self.envelope(message.into_wire(), NLM_F_DUMP);
        let replies = self.exchange(vec![msg], context)?;
        let mut out = Vec::with_capacity(replies.len());
        let mut interrupted = false;
        let mut done = false;
        for reply in replies {
            if reply.header.flags & NLM_F_DUMP_INTR != 0 {
                interrupted = true;
            }
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => match M::from_wire(m) {
                    Some(m) => out.push(m),
                    None => {
                        return Err(self.protocol_err(
                            context,
                            "the dump answered with a message of another family",
                        ))
                    }
                },
                NetlinkPayload::Done(d) => {
                    if d.code != 0 {
                        let ack = decode_done_ext_ack(reply.header.flags, &d.extended_ack);
                        return Err(self.kernel_error(context, -d.code, ack.message));
                    }
                    done = true;
                }
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        let ack = decode_error_ext_ack(reply.header.flags, &e.header);
                        return Err(self.kernel_error(context, -code.get(), ack.message));
                    }
                    done = true;
                }
                NetlinkPayload::Overrun(_) => {
                    return Err(self.protocol_err(context, "receive buffer overrun"))
                }
                _ => {}
            }
        }
        if !done {
            return Err(self.protocol_err(context, "dump ended without NLMSG_DONE"));
        }
        Ok((out, interrupted))
    }
}

impl Rtnl {
    /// Sends requests in chunks that fit the socket's buffers.
    fn batch_of<M: OnWire>(&mut self, requests: Vec<Request<M>>) -> Vec<Reply<M>> {
        let mut out = Vec::with_capacity(requests.len());
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0;
        for request in requests {
            let len = request.message.wire_len() + 16;
            if !chunk.is_empty()
                && (chunk.len() >= self.max_batch_requests
                    || chunk_bytes + len > self.max_batch_bytes)
            {
                self.send_chunk(std::mem::take(&mut chunk), &mut out);
                chunk_bytes = 0;
            }
            chunk_bytes += len;
            chunk.push(request);
        }
        if !chunk.is_empty() {
            self.send_chunk(chunk, &mut out);
        }
        out
    }

    /// Runs a dump, retrying while concurrent changes interrupt it.
    fn dump_of<M: OnWire + Clone>(&mut self, message: M, context: &str) -> Result<Vec<M>> {
        for attempt in 1..=DUMP_ATTEMPTS {
            let (messages, interrupted) = self.dump_once(message.clone(), context)?;
            if !interrupted {
                return Ok(messages);
            }
            log::debug!("{context}: dump interrupted (attempt {attempt}), retrying");
            self.stats.dump_retries += 1;
            std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt.min(20))));
        }
        Err(Error::DumpInterrupted {
            context: context.to_string(),
            netns: self.label.clone(),
            attempts: DUMP_ATTEMPTS,
        })
    }
}

impl Transport for Rtnl {
    fn netns_label(&self) -> &str {
        &self.label
    }

    fn batch(&mut self, requests: Vec<Request>) -> Vec<Reply> {
        self.batch_of(requests)
    }

    fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        context: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.dump_of(message, context)
    }

    fn batch_raw(&mut self, requests: Vec<Request<RawMessage>>) -> Vec<Reply<RawMessage>> {
        self.batch_of(requests)
    }

    fn dump_raw(&mut self, message: RawMessage, context: &str) -> Result<Vec<RawMessage>> {
        self.dump_of(message, context)
    }
}

thread_local! {
    /// Why the codec gave up, for the request that was waiting (the connection is driven on
    /// the requesting thread, so the thread-local reaches it).
    static DECODE_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A codec that fails instead of dropping a message it cannot decode (netlink-proto's default
/// logs and drops it, which for a checkpoint means a silently missing object).
pub struct StrictCodec;

impl NetlinkMessageCodec for StrictCodec {
    fn decode<T>(src: &mut BytesMut) -> io::Result<Option<NetlinkMessage<T>>>
    where
        T: NetlinkDeserializable + Debug,
    {
        if src.is_empty() {
            return Ok(None);
        }
        let fail = |detail: String| {
            DECODE_ERROR.with(|e| *e.borrow_mut() = Some(detail.clone()));
            io::Error::new(io::ErrorKind::InvalidData, detail)
        };
        let len = match NetlinkBuffer::new_checked(src.as_ref()) {
            Ok(buf) => buf.length() as usize,
            Err(e) => return Err(fail(format!("malformed netlink header: {e}"))),
        };
        let aligned = ((len + 3) & !3).min(src.len());
        let bytes = src.split_to(aligned);
        match NetlinkMessage::<T>::deserialize(&bytes[..len]) {
            Ok(message) => Ok(Some(message)),
            Err(e) => {
                let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
                Err(fail(format!("message type {kind}, {len} bytes: {e}")))
            }
        }
    }

    fn encode<T>(msg: NetlinkMessage<T>, buf: &mut BytesMut) -> io::Result<()>
    where
        T: NetlinkSerializable + Debug,
    {
        let old = buf.len();
        let len = msg.buffer_len();
        buf.resize(old + len, 0);
        msg.serialize(&mut buf[old..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn decode(bytes: &[u8]) -> io::Result<Option<NetlinkMessage<Wire>>> {
        let mut buf = BytesMut::from(bytes);
        StrictCodec::decode::<Wire>(&mut buf)
    }

    #[rstest]
    // An RTM_NEWLINK whose ifinfomsg is cut short: netlink-proto's codec would drop it.
    #[case::short_link_message(&[20, 0, 0, 0, 16, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]
    // A header claiming more bytes than arrived.
    #[case::length_past_datagram(&[200, 0, 0, 0, 16, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0])]
    // Fewer bytes than a header.
    #[case::truncated_header(&[8, 0, 0, 0, 3, 0])]
    fn undecodable_messages_are_errors_not_dropped(#[case] bytes: &[u8]) {
        let err = decode(bytes).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let recorded = DECODE_ERROR.with(|e| e.borrow_mut().take());
        assert!(recorded.is_some(), "the reason reaches the waiting request");
    }

    #[rstest]
    fn a_done_message_decodes() {
        // NLMSG_DONE with code 0, as ends every dump.
        let bytes = [20, 0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let msg = decode(&bytes).unwrap().unwrap();
        assert!(matches!(msg.payload, NetlinkPayload::Done(_)));
        assert!(decode(&[]).unwrap().is_none());
    }
}
