//! A small netlink socket for the dumps the typed rtnetlink socket does not speak: objects
//! the dump only has to find and name (traffic control, nexthops, address labels, MPLS,
//! neighbour tables over NETLINK_ROUTE; xfrm states and policies over NETLINK_XFRM;
//! nf_tables tables and netfilter hooks over NETLINK_NETFILTER). It hands back each message's
//! type, flags and body; [`attributes`] splits a body into attributes. Framing is strict: a
//! message or attribute that does not fit is an error, never skipped.

use std::io;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST};
use netlink_sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE, NETLINK_XFRM};
use netlink_sys::Socket;

use crate::error::{decode_done_ext_ack, decode_error_ext_ack, Error, Result};
use crate::netns::Netns;
use crate::transport::DUMP_ATTEMPTS;

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
pub fn attributes(mut body: &[u8]) -> std::result::Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 4 {
            if body.iter().all(|b| *b == 0) {
                break;
            }
            return Err(format!("{} stray bytes after the attributes", body.len()));
        }
        let len = u16::from_ne_bytes([body[0], body[1]]) as usize;
        let kind = u16::from_ne_bytes([body[2], body[3]]) & 0x3fff;
        if len < 4 || len > body.len() {
            return Err(format!(
                "attribute {kind} of {len} bytes in {} bytes",
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
