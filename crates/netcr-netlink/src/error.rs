//! Errors of the netlink layer, with the kernel's extended-ACK text decoded.

use std::path::PathBuf;

use netlink_packet_core::{NLM_F_ACK_TLVS, NLM_F_CAPPED};

/// `NLMSGERR_ATTR_MSG`: the kernel's human-readable error string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLMSGERR_ATTR_OFFS`: offset of the offending attribute in the request.
const NLMSGERR_ATTR_OFFS: u16 = 2;

/// Everything that can go wrong talking to the kernel or moving between namespaces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a request (a NACK), with its ext-ack text when it sent one.
    #[error("{context} in netns \"{netns}\": {}{}", errno_text(*errno), ext_ack_suffix(ext_ack))]
    Kernel {
        /// What was being done, e.g. `creating macvlan "mv0"`.
        context: String,
        /// Label of the namespace whose socket sent the request.
        netns: String,
        /// Positive errno value.
        errno: i32,
        /// The kernel's extended-ACK message ("Attribute failed policy validation").
        ext_ack: Option<String>,
    },
    /// Opening or configuring a netlink socket failed.
    #[error("opening a netlink socket in netns \"{netns}\": {source}")]
    Socket {
        /// Namespace label.
        netns: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A namespace operation (open, setns, create, delete) failed.
    #[error("netns \"{netns}\": {op}: {source}")]
    Netns {
        /// Namespace label or path.
        netns: String,
        /// What was attempted, e.g. `setns`.
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A namespace file does not exist.
    #[error("network namespace \"{netns}\" not found ({})", path.display())]
    NetnsNotFound {
        /// Name or label the user gave.
        netns: String,
        /// Path that was tried.
        path: PathBuf,
    },
    /// The kernel sent a message netlink-packet-route could not decode. Nothing is dropped
    /// silently: a checkpoint missing one link would be worse than no checkpoint.
    #[error("{context} in netns \"{netns}\": undecodable message from the kernel: {detail}")]
    Decode {
        /// What was being done.
        context: String,
        /// Namespace label.
        netns: String,
        /// The decoder's explanation.
        detail: String,
    },
    /// A dump kept being interrupted by concurrent changes (NLM_F_DUMP_INTR).
    #[error("{context} in netns \"{netns}\": dump interrupted by concurrent changes {attempts} times in a row")]
    DumpInterrupted {
        /// What was being dumped.
        context: String,
        /// Namespace label.
        netns: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The connection ended or answered out of protocol.
    #[error("{context} in netns \"{netns}\": {detail}")]
    Protocol {
        /// What was being done.
        context: String,
        /// Namespace label.
        netns: String,
        /// What went wrong.
        detail: String,
    },
}

impl Error {
    /// The errno of a kernel NACK, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True when the kernel said the object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// True when this kernel lacks the feature asked for: the protocol, the address family
    /// or the message type (EPROTONOSUPPORT, EAFNOSUPPORT, EOPNOTSUPP). The family check
    /// reads that as "the namespace cannot hold any".
    pub fn is_unsupported(&self) -> bool {
        let unsupported = |errno: i32| {
            matches!(
                errno,
                libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::EOPNOTSUPP
            )
        };
        match self {
            Error::Kernel { errno, .. } => unsupported(*errno),
            Error::Socket { source, .. } => source.raw_os_error().is_some_and(unsupported),
            _ => false,
        }
    }

    /// True when the kernel said the object does not exist (ENODEV, ENOENT, ESRCH).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH)
        )
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn errno_text(errno: i32) -> &'static str {
    nix::errno::Errno::from_raw(errno).desc()
}

fn ext_ack_suffix(ext_ack: &Option<String>) -> String {
    match ext_ack {
        Some(text) if !text.is_empty() => format!(" ({text})"),
        _ => String::new(),
    }
}

/// What an NLMSG_ERROR (or NLMSG_DONE) carried besides the errno.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExtAck {
    /// `NLMSGERR_ATTR_MSG`.
    pub message: Option<String>,
    /// `NLMSGERR_ATTR_OFFS`: byte offset of the bad attribute in the request.
    pub offset: Option<u32>,
}

/// Decodes the TLVs that follow the echoed request in an NLMSG_ERROR payload.
///
/// `payload` is what netlink-packet-core keeps as `ErrorMessage::header`: the echoed
/// request (its header only when `NLM_F_CAPPED` is set) followed by the TLVs, present
/// when the outer header carries `NLM_F_ACK_TLVS`. Malformed input yields what could be read.
pub fn decode_error_ext_ack(outer_flags: u16, payload: &[u8]) -> ExtAck {
    if outer_flags & NLM_F_ACK_TLVS == 0 {
        return ExtAck::default();
    }
    let echoed = if outer_flags & NLM_F_CAPPED != 0 {
        16
    } else {
        match payload.get(..4) {
            Some(len) => align4(u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize),
            None => return ExtAck::default(),
        }
    };
    decode_tlvs(payload.get(echoed..).unwrap_or(&[]))
}

/// Decodes the TLVs of an NLMSG_DONE that ended a failed dump.
pub fn decode_done_ext_ack(outer_flags: u16, tlvs: &[u8]) -> ExtAck {
    if outer_flags & NLM_F_ACK_TLVS == 0 {
        return ExtAck::default();
    }
    decode_tlvs(tlvs)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn decode_tlvs(mut buf: &[u8]) -> ExtAck {
    let mut ack = ExtAck::default();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        let value = &buf[4..len];
        match kind {
            NLMSGERR_ATTR_MSG => {
                let text = value.split(|b| *b == 0).next().unwrap_or(&[]);
                ack.message = Some(String::from_utf8_lossy(text).into_owned());
            }
            NLMSGERR_ATTR_OFFS if value.len() >= 4 => {
                ack.offset = Some(u32::from_ne_bytes([value[0], value[1], value[2], value[3]]));
            }
            _ => {}
        }
        buf = buf.get(align4(len)..).unwrap_or(&[]);
    }
    ack
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A whole NLMSG_ERROR as kernel 6.18 sent it (flags 0x300 = CAPPED|ACK_TLVS) for a
    /// macvlan create carrying IFLA_MACVLAN_BC_QUEUE_LEN_USED: errno -22, the echoed 16-byte
    /// request header, NLMSGERR_ATTR_MSG and NLMSGERR_ATTR_OFFS. Captured with ext-ack and
    /// cap-ack enabled on the socket.
    const CAPTURED_POLICY_ERROR: &[u8] = &[
        84, 0, 0, 0, 2, 0, 0, 3, 1, 0, 0, 0, 237, 230, 172, 240, 234, 255, 255, 255, 84, 0, 0, 0,
        16, 0, 5, 6, 1, 0, 0, 0, 0, 0, 0, 0, 39, 0, 1, 0, 65, 116, 116, 114, 105, 98, 117, 116,
        101, 32, 102, 97, 105, 108, 101, 100, 32, 112, 111, 108, 105, 99, 121, 32, 118, 97, 108,
        105, 100, 97, 116, 105, 111, 110, 0, 0, 8, 0, 2, 0, 76, 0, 0, 0,
    ];

    fn captured_error() -> (u16, Vec<u8>) {
        use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
        use netlink_packet_route::RouteNetlinkMessage;
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(CAPTURED_POLICY_ERROR)
            .expect("captured message parses");
        match msg.payload {
            NetlinkPayload::Error(e) => {
                assert_eq!(e.raw_code(), -libc::EINVAL);
                (msg.header.flags, e.header)
            }
            other => panic!("expected an error message, got {other:?}"),
        }
    }

    #[rstest]
    fn decodes_captured_policy_error() {
        let (flags, payload) = captured_error();
        let ack = decode_error_ext_ack(flags, &payload);
        assert_eq!(
            ack.message.as_deref(),
            Some("Attribute failed policy validation")
        );
        assert_eq!(ack.offset, Some(76));
    }

    #[rstest]
    #[case::no_tlv_flag(NLM_F_CAPPED, &CAPTURED_POLICY_ERROR[20..])]
    #[case::empty(NLM_F_CAPPED | NLM_F_ACK_TLVS, &[])]
    #[case::truncated_tlv(NLM_F_CAPPED | NLM_F_ACK_TLVS, &CAPTURED_POLICY_ERROR[20..44])]
    #[case::uncapped_garbage_length(NLM_F_ACK_TLVS, &[0xff, 0xff, 0xff, 0xff, 1, 2])]
    fn tolerates_missing_or_malformed_tlvs(#[case] flags: u16, #[case] payload: &[u8]) {
        let ack = decode_error_ext_ack(flags, payload);
        assert_eq!(ack.message, None);
    }

    #[rstest]
    fn uncapped_error_skips_whole_echoed_request() {
        // Echoed request of 20 bytes (header + 4 bytes body), then one MSG TLV.
        let mut payload = vec![20, 0, 0, 0, 16, 0, 5, 6, 1, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9];
        payload.extend_from_slice(&[8, 0, 1, 0, b'b', b'a', b'd', 0]);
        let ack = decode_error_ext_ack(NLM_F_ACK_TLVS, &payload);
        assert_eq!(ack.message.as_deref(), Some("bad"));
    }

    #[rstest]
    fn kernel_error_names_operation_namespace_and_kernel_text() {
        let err = Error::Kernel {
            context: "creating macvlan \"mv0\"".into(),
            netns: "web".into(),
            errno: libc::EINVAL,
            ext_ack: Some("Attribute failed policy validation".into()),
        };
        assert_eq!(
            err.to_string(),
            "creating macvlan \"mv0\" in netns \"web\": Invalid argument (Attribute failed policy validation)"
        );
    }
}
