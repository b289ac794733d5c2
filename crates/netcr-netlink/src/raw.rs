//! A small netlink socket for the dumps the typed rtnetlink socket does not speak: objects
//! the dump only has to find and name (traffic control, nexthops, address labels, MPLS,
//! neighbour tables over NETLINK_ROUTE; xfrm states and policies over NETLINK_XFRM;
//! nf_tables and netfilter hooks over NETLINK_NETFILTER). It hands back each message's
//! type, flags and body; [`attributes`] splits a body into attributes. Framing is strict: a
//! message or attribute that does not fit is an error, never skipped. It also sends
//! nfnetlink transactions ([`RawTransport::transaction`]): a batch the kernel applies whole
//! or not at all (nf_tables restores).

use std::io;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST};
use netlink_sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE, NETLINK_XFRM};
use netlink_sys::Socket;

use crate::error::{decode_done_ext_ack, decode_error_ext_ack, Error, Result};
use crate::netns::Netns;
use crate::nftables::{NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END};
use crate::transport::{RawMessage, Request, DUMP_ATTEMPTS};

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
/// Size of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;

/// The netlink protocols a [`RawSocket`] can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// NETLINK_ROUTE (rtnetlink).
    Route,
    /// NETLINK_XFRM (IPsec states and policies).
    Xfrm,
    /// NETLINK_NETFILTER (nfnetlink: nf_tables, hooks).
    Netfilter,
}

impl Protocol {
    fn number(self) -> isize {
        match self {
            Protocol::Route => NETLINK_ROUTE,
            Protocol::Xfrm => NETLINK_XFRM,
            Protocol::Netfilter => NETLINK_NETFILTER,
        }
    }
}

/// One message the kernel sent: its type, its header flags and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// Everything after the 16-byte header.
    pub payload: Vec<u8>,
}

/// What the family check needs from a netlink socket of any protocol; object-safe, so it can
/// be faked.
pub trait RawTransport {
    /// Label of the namespace the socket lives in, for messages.
    fn netns_label(&self) -> &str;

    /// Runs a dump (`NLM_F_DUMP`) of message type `kind` with request body `body`, and returns
    /// every message before `NLMSG_DONE`, retrying when concurrent changes interrupt it.
    fn dump(&mut self, kind: u16, body: &[u8], context: &str) -> Result<Vec<ReceivedMessage>>;

    /// Sends one request (`NLM_F_ACK`) and returns the messages of its answer.
    fn request(&mut self, kind: u16, body: &[u8], context: &str) -> Result<Vec<ReceivedMessage>>;

    /// Sends `requests` as one nfnetlink transaction of `subsystem`
    /// (`NFNL_MSG_BATCH_BEGIN`, the requests, `NFNL_MSG_BATCH_END`, in one datagram): the
    /// kernel applies all of them or none. `Ok` once every request is acknowledged; a
    /// refusal is [`Error::Kernel`] naming the first request the kernel refused (its
    /// context) with the kernel's ext-ack text, and then nothing was applied. Any other
    /// error leaves it unknown whether the transaction was applied. Every transport
    /// forwards these: a wrapper that did not would hide them from the fault injection and
    /// the request count.
    fn transaction(
        &mut self,
        subsystem: u8,
        requests: Vec<Request<RawMessage>>,
        context: &str,
    ) -> Result<()>;

    /// Sends one change (`NLM_F_ACK` and the request's flags) and waits for its
    /// acknowledgement: a refusal is [`Error::Kernel`] with the request's context and the
    /// kernel's ext-ack text. Every transport forwards these (xfrm restores), for the same
    /// reason as transactions: the fault injection and the request count see each one.
    fn change(&mut self, request: Request<RawMessage>) -> Result<()>;
}

/// A synchronous netlink socket of any protocol, bound to one namespace.
#[derive(Debug)]
pub struct RawSocket {
    socket: Socket,
    label: String,
    seq: u32,
}

impl RawSocket {
    /// Opens a socket of `protocol` inside `netns`. The calling thread enters the namespace
    /// only while the socket is created.
    pub fn open_in(netns: &Netns, protocol: Protocol, label: &str) -> Result<RawSocket> {
        let _inside = netns.enter()?;
        let socket_err = |source: io::Error| Error::Socket {
            netns: label.to_string(),
            source,
        };
        let mut socket = Socket::new(protocol.number()).map_err(socket_err)?;
        socket.bind_auto().map_err(socket_err)?;
        socket.set_ext_ack(true).map_err(socket_err)?;
        socket.set_cap_ack(true).map_err(socket_err)?;
        Ok(RawSocket {
            socket,
            label: label.to_string(),
            seq: 0,
        })
    }

    /// Makes room for a transaction of `bytes` bytes whose `acks` acknowledgements all queue
    /// up before the first is read (the kernel answers while the datagram is sent). Forcing
    /// the sizes needs CAP_NET_ADMIN; without it the defaults stay, and a transaction that
    /// does not fit fails as such.
    fn make_room(&self, bytes: usize, acks: usize) {
        use nix::sys::socket::{getsockopt, setsockopt, sockopt};
        let send = bytes + 64 * 1024;
        if getsockopt(&self.socket, sockopt::SndBuf).unwrap_or(0) < send {
            let _ = setsockopt(&self.socket, sockopt::SndBufForce, &send);
        }
        let receive = acks.saturating_mul(ACK_ROOM) + 256 * 1024;
        if getsockopt(&self.socket, sockopt::RcvBuf).unwrap_or(0) < receive {
            let _ = setsockopt(&self.socket, sockopt::RcvBufForce, &receive);
        }
    }

    fn protocol_err(&self, context: &str, detail: impl Into<String>) -> Error {
        Error::Protocol {
            context: context.to_string(),
            netns: self.label.clone(),
            detail: detail.into(),
        }
    }

    fn send(&mut self, kind: u16, flags: u16, body: &[u8], context: &str) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let message = encode(kind, NLM_F_REQUEST | flags, self.seq, body);
        self.socket
            .send(&message, 0)
            .map_err(|e| self.protocol_err(context, format!("sending: {e}")))?;
        Ok(self.seq)
    }

    /// Reads until the answer to request `seq` is complete: `NLMSG_DONE` for a dump, the ACK
    /// for a request. Returns its messages and whether the dump was interrupted.
    fn receive(&mut self, seq: u32, context: &str) -> Result<(Vec<ReceivedMessage>, bool)> {
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| self.protocol_err(context, format!("receiving: {e}")))?;
            let messages = split(&datagram).map_err(|detail| Error::Decode {
                context: context.to_string(),
                netns: self.label.clone(),
                detail,
            })?;
            for (header, payload) in messages {
                if header.seq != seq {
                    return Err(self.protocol_err(
                        context,
                        format!("a reply to request {} while waiting for {seq}", header.seq),
                    ));
                }
                if header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match header.kind {
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => {
                        return Err(self.protocol_err(context, "receive buffer overrun"))
                    }
                    NLMSG_ERROR | NLMSG_DONE => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .ok_or_else(|| Error::Decode {
                                context: context.to_string(),
                                netns: self.label.clone(),
                                detail: format!("a {}-byte error or done message", payload.len()),
                            })?;
                        if code < 0 {
                            let rest = &payload[4..];
                            let ack = if header.kind == NLMSG_ERROR {
                                decode_error_ext_ack(header.flags, rest)
                            } else {
                                decode_done_ext_ack(header.flags, rest)
                            };
                            return Err(Error::Kernel {
                                context: context.to_string(),
                                netns: self.label.clone(),
                                errno: -code,
                                ext_ack: ack.message,
                            });
                        }
                        return Ok((out, interrupted));
                    }
                    kind => out.push(ReceivedMessage {
                        kind,
                        flags: header.flags,
                        payload: payload.to_vec(),
                    }),
                }
            }
        }
    }
}

impl RawTransport for RawSocket {
    fn netns_label(&self) -> &str {
        &self.label
    }

    fn dump(&mut self, kind: u16, body: &[u8], context: &str) -> Result<Vec<ReceivedMessage>> {
        for attempt in 1..=DUMP_ATTEMPTS {
            let seq = self.send(kind, NLM_F_DUMP, body, context)?;
            let (messages, interrupted) = self.receive(seq, context)?;
            if !interrupted {
                return Ok(messages);
            }
            log::debug!("{context}: dump interrupted (attempt {attempt}), retrying");
            std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt.min(20))));
        }
        Err(Error::DumpInterrupted {
            context: context.to_string(),
            netns: self.label.clone(),
            attempts: DUMP_ATTEMPTS,
        })
    }

    fn request(&mut self, kind: u16, body: &[u8], context: &str) -> Result<Vec<ReceivedMessage>> {
        let seq = self.send(kind, NLM_F_ACK, body, context)?;
        Ok(self.receive(seq, context)?.0)
    }

    fn change(&mut self, request: Request<RawMessage>) -> Result<()> {
        let Request {
            message,
            flags,
            context,
        } = request;
        let seq = self.send(message.kind, NLM_F_ACK | flags, &message.body, &context)?;
        self.receive(seq, &context).map(|_| ())
    }

    fn transaction(
        &mut self,
        subsystem: u8,
        requests: Vec<Request<RawMessage>>,
        context: &str,
    ) -> Result<()> {
        if requests.is_empty() {
            return Ok(());
        }
        let (datagram, begin) = self.batch_datagram(subsystem, &requests);
        self.make_room(datagram.len(), requests.len());
        // Nothing left over from an earlier exchange may be taken for this one's answer.
        self.drain(|_, _| Ok(()))
            .map_err(|detail| self.protocol_err(context, detail))?;
        self.socket.send(&datagram, 0).map_err(|e| {
            self.protocol_err(
                context,
                format!(
                    "sending the transaction ({} bytes): {e}; nothing was applied",
                    datagram.len()
                ),
            )
        })?;
        let mut acks = Acks {
            begin,
            replies: vec![None; requests.len()],
            refused: None,
        };
        let drained = self.drain(|header, payload| acks.take(header, payload));
        // The first refusal names the request: the kernel then applied nothing.
        for (reply, request) in acks.replies.iter().zip(&requests) {
            if let Some(Err((errno, ext_ack))) = reply {
                return Err(Error::Kernel {
                    context: request.context.clone(),
                    netns: self.label.clone(),
                    errno: *errno,
                    ext_ack: ext_ack.clone(),
                });
            }
        }
        if let Some((errno, ext_ack)) = acks.refused.take() {
            return Err(Error::Kernel {
                context: format!("{context} (the whole transaction)"),
                netns: self.label.clone(),
                errno,
                ext_ack,
            });
        }
        if let Err(detail) = drained {
            return Err(self.protocol_err(
                context,
                format!("{detail}; whether the kernel applied the transaction is unknown"),
            ));
        }
        if !acks.complete() {
            let missing = acks.replies.iter().filter(|r| r.is_none()).count();
            return Err(self.protocol_err(
                context,
                format!("{missing} of {} requests were not acknowledged; whether the kernel applied the transaction is unknown", requests.len()),
            ));
        }
        Ok(())
    }
}

impl RawSocket {
    /// The datagram of a transaction and the sequence number of its batch-begin message;
    /// request i gets begin + 1 + i, each with `NLM_F_ACK`.
    fn batch_datagram(
        &mut self,
        subsystem: u8,
        requests: &[Request<RawMessage>],
    ) -> (Vec<u8>, u32) {
        // struct nfgenmsg: AF_UNSPEC, NFNETLINK_V0, res_id = the subsystem (big-endian).
        let batch_body = [0u8, 0, 0, subsystem];
        self.seq = self.seq.wrapping_add(1);
        let begin = self.seq;
        let mut out = encode(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin, &batch_body);
        for r in requests {
            self.seq = self.seq.wrapping_add(1);
            out.extend(encode(
                r.message.kind,
                NLM_F_REQUEST | NLM_F_ACK | r.flags,
                self.seq,
                &r.message.body,
            ));
        }
        self.seq = self.seq.wrapping_add(1);
        out.extend(encode(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            self.seq,
            &batch_body,
        ));
        (out, begin)
    }
}

/// Room one queued acknowledgement takes in a receive buffer (its skb), conservatively.
const ACK_ROOM: usize = 1024;

/// A refusal: errno and the kernel's ext-ack text.
type Refusal = (i32, Option<String>);

/// Where the acknowledgements of a transaction stand.
struct Acks {
    /// The batch-begin's sequence number: an error against it is the kernel refusing the
    /// whole transaction (its commit failed, or it could not be read).
    begin: u32,
    /// One slot per request, in order: `None` until acknowledged.
    replies: Vec<Option<std::result::Result<(), Refusal>>>,
    /// An error against the batch itself.
    refused: Option<Refusal>,
}

impl Acks {
    /// Takes in one message of the answer.
    fn take(&mut self, header: Header, payload: &[u8]) -> std::result::Result<(), String> {
        if header.kind != NLMSG_ERROR {
            // Nothing else is asked for (no echo): ignore what is not an acknowledgement.
            return Ok(());
        }
        let code = payload
            .get(..4)
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("a {}-byte error message", payload.len()))?;
        let outcome = if code < 0 {
            Err((
                -code,
                decode_error_ext_ack(header.flags, &payload[4..]).message,
            ))
        } else {
            Ok(())
        };
        if header.seq == self.begin {
            if let Err(refusal) = outcome {
                self.refused = Some(refusal);
            }
            return Ok(());
        }
        let slot = header.seq.wrapping_sub(self.begin).wrapping_sub(1) as usize;
        match self.replies.get_mut(slot) {
            Some(reply) => {
                *reply = Some(outcome);
                Ok(())
            }
            None => Err(format!("an acknowledgement of request {}", header.seq)),
        }
    }

    fn complete(&self) -> bool {
        self.refused.is_some() || self.replies.iter().all(Option::is_some)
    }
}

impl RawSocket {
    /// Reads every message queued on the socket without waiting. The kernel has processed
    /// a whole nfnetlink batch by the time the `send` that carried it returns, so all of its
    /// answer is queued by then.
    fn drain(
        &mut self,
        mut take: impl FnMut(Header, &[u8]) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        self.socket
            .set_non_blocking(true)
            .map_err(|e| format!("receiving: {e}"))?;
        let result = loop {
            let datagram = match self.socket.recv_from_full() {
                Ok((datagram, _)) => datagram,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(format!("receiving: {e}")),
            };
            let messages = match split(&datagram) {
                Ok(messages) => messages,
                Err(e) => break Err(e),
            };
            if let Some(e) = messages
                .into_iter()
                .map(|(header, payload)| take(header, payload))
                .find_map(|r| r.err())
            {
                break Err(e);
            }
        };
        let restored = self.socket.set_non_blocking(false);
        result.and(restored.map_err(|e| format!("receiving: {e}")))
    }
}

/// The fixed part of a netlink message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    kind: u16,
    flags: u16,
    seq: u32,
}

/// One request: header and body, the length filled in.
fn encode(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    let mut out = Vec::with_capacity(align4(len));
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(body);
    out.resize(align4(len), 0);
    out
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a datagram into its messages. A header that does not fit, or a length that runs
/// past the datagram, is an error.
fn split(mut datagram: &[u8]) -> std::result::Result<Vec<(Header, &[u8])>, String> {
    let mut out = Vec::new();
    while !datagram.is_empty() {
        if datagram.len() < HEADER_LEN {
            return Err(format!(
                "{} bytes left after the last message, less than a header",
                datagram.len()
            ));
        }
        let len = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]) as usize;
        if len < HEADER_LEN || len > datagram.len() {
            return Err(format!(
                "a message of {len} bytes in {} bytes",
                datagram.len()
            ));
        }
        let header = Header {
            kind: u16::from_ne_bytes([datagram[4], datagram[5]]),
            flags: u16::from_ne_bytes([datagram[6], datagram[7]]),
            seq: u32::from_ne_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
        };
        out.push((header, &datagram[HEADER_LEN..len]));
        datagram = datagram.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The attributes of a message body (after its fixed header): `(type without the nested and
/// byte-order flags, value)`. An attribute whose length runs past the body, or trailing bytes
/// that are not padding, are an error.
pub fn attributes(body: &[u8]) -> std::result::Result<Vec<(u16, &[u8])>, String> {
    Ok(attributes_flagged(body)?
        .into_iter()
        .map(|(kind, value)| (kind & 0x3fff, value))
        .collect())
}

/// [`attributes`] with each type as it was sent, its nested and byte-order flags included.
pub fn attributes_flagged(mut body: &[u8]) -> std::result::Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 4 {
            if body.iter().all(|b| *b == 0) {
                break;
            }
            return Err(format!("{} stray bytes after the attributes", body.len()));
        }
        let len = u16::from_ne_bytes([body[0], body[1]]) as usize;
        let kind = u16::from_ne_bytes([body[2], body[3]]);
        if len < 4 || len > body.len() {
            return Err(format!(
                "attribute {} of {len} bytes in {} bytes",
                kind & 0x3fff,
                body.len()
            ));
        }
        out.push((kind, &body[4..len]));
        body = body.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// One attribute, nested or not, for building request bodies.
pub fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity(align4(len));
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(len), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    fn requests_are_framed_and_padded() {
        let m = encode(38, NLM_F_REQUEST | NLM_F_DUMP, 7, &[1, 2, 3, 4, 5]);
        assert_eq!(m.len(), 24);
        assert_eq!(&m[..4], &21u32.to_ne_bytes());
        assert_eq!(&m[4..6], &38u16.to_ne_bytes());
        assert_eq!(&m[8..12], &7u32.to_ne_bytes());
        assert_eq!(&m[16..21], &[1, 2, 3, 4, 5]);
    }

    #[rstest]
    fn a_datagram_splits_into_its_messages() {
        let mut d = encode(36, 2, 1, &[9; 6]);
        d.extend(encode(NLMSG_DONE, 2, 1, &0i32.to_ne_bytes()));
        let parts = split(&d).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0.kind, 36);
        assert_eq!(parts[0].1, &[9; 6]);
        assert_eq!(parts[1].0.kind, NLMSG_DONE);
    }

    #[rstest]
    #[case::length_past_datagram(&[64, 0, 0, 0, 36, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0])]
    #[case::length_below_header(&[8, 0, 0, 0, 36, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0])]
    #[case::short_tail(&[16, 0, 0, 0, 36, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2])]
    fn malformed_datagrams_are_errors(#[case] bytes: &[u8]) {
        assert!(split(bytes).is_err());
    }

    #[rstest]
    fn attributes_split_strictly() {
        let mut body = attribute(1, b"tbf\0");
        body.extend(attribute(0x8000 | 2, &[1, 2, 3]));
        let attrs = attributes(&body).unwrap();
        assert_eq!(attrs, vec![(1, &b"tbf\0"[..]), (2, &[1, 2, 3][..])]);
        assert!(attributes(&[8, 0, 1, 0, 1]).is_err());
        assert!(attributes(&[2, 0, 1, 0]).is_err());
        assert!(attributes(&[1, 2]).is_err());
        assert!(attributes(&[]).unwrap().is_empty());
    }
}
