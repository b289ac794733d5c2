//! nf_tables over NETLINK_NETFILTER (`include/uapi/linux/netfilter/nf_tables.h`), at the
//! level netcr needs: a message is its `NFT_MSG_*` type, its `nfgen_family` and its
//! attributes, each kept as the kernel encoded it ([`Attr`]: type and value bytes), so that
//! an object netcr does not understand (an expression it has never heard of, iptables-nft's
//! `xt` matches and targets) travels back to the kernel byte for byte. Nested attributes are
//! parsed on demand and strictly: a length that runs past its parent, or stray bytes, is an
//! error, never skipped. The kernel does not always set `NLA_F_NESTED`, so which attributes
//! nest is the caller's knowledge (the attribute numbers below).
//!
//! [`dump_ruleset`] reads every object of every family consistently (the same ruleset
//! generation before and after); restores go through
//! [`RawTransport::transaction`](crate::RawTransport::transaction), one nfnetlink batch
//! that the kernel applies whole or not at all.

use crate::error::{Error, Result};
use crate::raw::RawTransport;
use crate::transport::{RawMessage, DUMP_ATTEMPTS};

/// `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type.
pub const NFNL_SUBSYS_NFTABLES: u8 = 10;
/// `NFNL_MSG_BATCH_BEGIN`: opens a transaction.
pub const NFNL_MSG_BATCH_BEGIN: u16 = 16;
/// `NFNL_MSG_BATCH_END`: commits it.
pub const NFNL_MSG_BATCH_END: u16 = 17;
/// `NFNETLINK_V0`: the only nfgenmsg version.
const NFNETLINK_V0: u8 = 0;
/// Bytes of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;
/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 0x8000;
/// The flag bits of an attribute type (nested, network byte order).
const NLA_FLAGS: u16 = 0xc000;

/// `NFT_MSG_*`: the message types (the low byte).
pub mod msg {
    /// Creates a table; a table dump answers with these.
    pub const NEWTABLE: u8 = 0;
    /// Gets or dumps tables.
    pub const GETTABLE: u8 = 1;
    /// Deletes a table and everything in it.
    pub const DELTABLE: u8 = 2;
    /// Creates a chain.
    pub const NEWCHAIN: u8 = 3;
    /// Dumps chains.
    pub const GETCHAIN: u8 = 4;
    /// Creates a rule.
    pub const NEWRULE: u8 = 6;
    /// Dumps rules.
    pub const GETRULE: u8 = 7;
    /// Creates a set or map.
    pub const NEWSET: u8 = 9;
    /// Dumps sets.
    pub const GETSET: u8 = 10;
    /// Adds elements to a set.
    pub const NEWSETELEM: u8 = 12;
    /// Dumps a set's elements.
    pub const GETSETELEM: u8 = 13;
    /// The ruleset generation (answer to GETGEN).
    pub const NEWGEN: u8 = 15;
    /// Gets the ruleset generation.
    pub const GETGEN: u8 = 16;
    /// Creates a stateful object.
    pub const NEWOBJ: u8 = 18;
    /// Dumps stateful objects (never GETOBJ_RESET, which would zero their counters).
    pub const GETOBJ: u8 = 19;
    /// Creates a flowtable.
    pub const NEWFLOWTABLE: u8 = 22;
    /// Dumps flowtables.
    pub const GETFLOWTABLE: u8 = 23;
}

/// `NFTA_TABLE_*`.
pub mod table {
    /// Name (string).
    pub const NAME: u16 = 1;
    /// `NFT_TABLE_F_*` (be32).
    pub const FLAGS: u16 = 2;
    /// How many chains it holds (the kernel's count).
    pub const USE: u16 = 3;
    /// Handle (be64).
    pub const HANDLE: u16 = 4;
    /// User data (nft's comments).
    pub const USERDATA: u16 = 6;
    /// The netlink port id of the owning socket.
    pub const OWNER: u16 = 7;
    /// `NFT_TABLE_F_DORMANT`.
    pub const F_DORMANT: u32 = 1;
    /// `NFT_TABLE_F_OWNER`: removed with its owner's socket.
    pub const F_OWNER: u32 = 2;
    /// `NFT_TABLE_F_PERSIST`: an owned table that outlives its owner.
    pub const F_PERSIST: u32 = 4;
}

/// `NFTA_CHAIN_*`.
pub mod chain {
    /// Table name.
    pub const TABLE: u16 = 1;
    /// Handle (be64).
    pub const HANDLE: u16 = 2;
    /// Name.
    pub const NAME: u16 = 3;
    /// A base chain's hook (nested `NFTA_HOOK_*`).
    pub const HOOK: u16 = 4;
    /// A base chain's policy (be32 verdict).
    pub const POLICY: u16 = 5;
    /// How many references it has.
    pub const USE: u16 = 6;
    /// A base chain's type ("filter", "nat", "route").
    pub const TYPE: u16 = 7;
    /// A base chain's counters (nested `NFTA_COUNTER_*`).
    pub const COUNTERS: u16 = 8;
    /// `NFT_CHAIN_*` flags (be32).
    pub const FLAGS: u16 = 10;
    /// User data.
    pub const USERDATA: u16 = 12;
    /// `NFT_CHAIN_BASE`.
    pub const F_BASE: u32 = 1;
    /// `NFT_CHAIN_BINDING`: an anonymous chain bound to the one rule that jumps to it.
    pub const F_BINDING: u32 = 4;
}

/// `NFTA_HOOK_*` (a base chain's hook).
pub mod hook {
    /// The hook number (be32).
    pub const HOOKNUM: u16 = 1;
    /// The priority (be32, signed).
    pub const PRIORITY: u16 = 2;
    /// One device (netdev family).
    pub const DEV: u16 = 3;
    /// Several devices (nested `NFTA_DEVICE_NAME`).
    pub const DEVS: u16 = 4;
}

/// `NFTA_RULE_*`.
pub mod rule {
    /// Table name.
    pub const TABLE: u16 = 1;
    /// Chain name.
    pub const CHAIN: u16 = 2;
    /// Handle (be64).
    pub const HANDLE: u16 = 3;
    /// The expressions (a list of `NFTA_LIST_ELEM`, each an expression).
    pub const EXPRESSIONS: u16 = 4;
    /// x_tables compatibility (iptables-nft's protocol and flags).
    pub const COMPAT: u16 = 5;
    /// The handle of the rule it follows (dumped; a request's insertion point).
    pub const POSITION: u16 = 6;
    /// User data (comments).
    pub const USERDATA: u16 = 7;
}

/// `NFTA_SET_*`.
pub mod set {
    /// Table name.
    pub const TABLE: u16 = 1;
    /// Name.
    pub const NAME: u16 = 2;
    /// `NFT_SET_*` flags (be32).
    pub const FLAGS: u16 = 3;
    /// Key type (nft's datatype).
    pub const KEY_TYPE: u16 = 4;
    /// Key length in bytes (be32).
    pub const KEY_LEN: u16 = 5;
    /// Data type of a map.
    pub const DATA_TYPE: u16 = 6;
    /// Data length (be32).
    pub const DATA_LEN: u16 = 7;
    /// Description (size, concatenated field lengths).
    pub const DESC: u16 = 9;
    /// Default element timeout (be64, ms).
    pub const TIMEOUT: u16 = 11;
    /// The object type of an object map (be32).
    pub const OBJ_TYPE: u16 = 15;
    /// Handle (be64).
    pub const HANDLE: u16 = 16;
    /// One stateful expression template.
    pub const EXPR: u16 = 17;
    /// Stateful expression templates (list).
    pub const EXPRESSIONS: u16 = 18;
    /// The kernel's backend (reported only).
    pub const TYPE: u16 = 19;
    /// How many elements it holds (reported only).
    pub const COUNT: u16 = 20;
    /// `NFT_SET_ANONYMOUS`.
    pub const F_ANONYMOUS: u32 = 1;
    /// `NFT_SET_CONSTANT`.
    pub const F_CONSTANT: u32 = 2;
    /// `NFT_SET_INTERVAL`.
    pub const F_INTERVAL: u32 = 4;
    /// `NFT_SET_MAP`.
    pub const F_MAP: u32 = 8;
    /// `NFT_SET_TIMEOUT`.
    pub const F_TIMEOUT: u32 = 0x10;
    /// `NFT_SET_EVAL` (dynamic).
    pub const F_EVAL: u32 = 0x20;
    /// `NFT_SET_OBJECT` (an object map).
    pub const F_OBJECT: u32 = 0x40;
    /// `NFT_SET_CONCAT`.
    pub const F_CONCAT: u32 = 0x80;
}

/// `NFTA_SET_ELEM_LIST_*` (a NEWSETELEM message) and `NFTA_SET_ELEM_*` (one element).
pub mod elem {
    /// Table name.
    pub const LIST_TABLE: u16 = 1;
    /// Set name.
    pub const LIST_SET: u16 = 2;
    /// The elements (a list of `NFTA_LIST_ELEM`).
    pub const LIST_ELEMENTS: u16 = 3;
    /// An element's key (nested `NFTA_DATA_*`).
    pub const KEY: u16 = 1;
    /// A map element's data (nested `NFTA_DATA_*`).
    pub const DATA: u16 = 2;
    /// `NFT_SET_ELEM_*` flags.
    pub const FLAGS: u16 = 3;
    /// Its timeout (be64, ms).
    pub const TIMEOUT: u16 = 4;
    /// Time left before it expires (be64, ms).
    pub const EXPIRATION: u16 = 5;
    /// User data.
    pub const USERDATA: u16 = 6;
    /// One stateful expression.
    pub const EXPR: u16 = 7;
    /// The object an object map's element names.
    pub const OBJREF: u16 = 9;
    /// The end of an interval (concatenated ranges).
    pub const KEY_END: u16 = 10;
    /// Stateful expressions (list).
    pub const EXPRESSIONS: u16 = 11;
}

/// `NFTA_OBJ_*` (stateful objects).
pub mod obj {
    /// Table name.
    pub const TABLE: u16 = 1;
    /// Name.
    pub const NAME: u16 = 2;
    /// `NFT_OBJECT_*` type (be32).
    pub const TYPE: u16 = 3;
    /// The object's settings (and state: a counter's values, a quota's consumption).
    pub const DATA: u16 = 4;
    /// How many references it has.
    pub const USE: u16 = 5;
    /// Handle (be64).
    pub const HANDLE: u16 = 6;
    /// `NFT_OBJECT_COUNTER`.
    pub const COUNTER: u32 = 1;
    /// `NFT_OBJECT_QUOTA`.
    pub const QUOTA: u32 = 2;
}

/// `NFTA_FLOWTABLE_*`.
pub mod flowtable {
    /// Table name.
    pub const TABLE: u16 = 1;
    /// Name.
    pub const NAME: u16 = 2;
    /// Its hook (nested `NFTA_FLOWTABLE_HOOK_*`).
    pub const HOOK: u16 = 3;
    /// How many references it has.
    pub const USE: u16 = 4;
    /// Handle (be64).
    pub const HANDLE: u16 = 5;
    /// `NFTA_FLOWTABLE_HOOK_DEVS` inside the hook: its devices.
    pub const HOOK_DEVS: u16 = 3;
}

/// `NFTA_LIST_ELEM`, `NFTA_EXPR_*`, `NFTA_DATA_*`, `NFTA_VERDICT_*`, `NFTA_DEVICE_NAME`.
pub mod common {
    /// One element of a list attribute.
    pub const LIST_ELEM: u16 = 1;
    /// An expression's name ("meta", "cmp", ...).
    pub const EXPR_NAME: u16 = 1;
    /// An expression's data (its own attributes).
    pub const EXPR_DATA: u16 = 2;
    /// A value (register bytes).
    pub const DATA_VALUE: u16 = 1;
    /// A verdict (nested `NFTA_VERDICT_*`).
    pub const DATA_VERDICT: u16 = 2;
    /// A verdict's code (be32, signed).
    pub const VERDICT_CODE: u16 = 1;
    /// The chain a jump or goto goes to.
    pub const VERDICT_CHAIN: u16 = 2;
    /// A device's name in a device list.
    pub const DEVICE_NAME: u16 = 1;
    /// `NFTA_GEN_ID`.
    pub const GEN_ID: u16 = 1;
    /// `NFT_JUMP`.
    pub const JUMP: i32 = -3;
    /// `NFT_GOTO`.
    pub const GOTO: i32 = -4;
}

/// The message type of `NFT_MSG_*` `kind`: the nf_tables subsystem in the high byte.
pub fn message_type(kind: u8) -> u16 {
    (u16::from(NFNL_SUBSYS_NFTABLES) << 8) | u16::from(kind)
}

/// The family names nft uses for `nfgen_family` (NFPROTO_*).
pub fn family_name(family: u8) -> &'static str {
    match family {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "unknown",
    }
}

/// One netlink attribute as it travels: its type (flags included) and its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attr {
    /// The type, with `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` as the sender set them.
    pub kind: u16,
    /// The value, without padding.
    pub value: Vec<u8>,
}

impl Attr {
    /// An attribute of type `kind` holding `value`.
    pub fn new(kind: u16, value: impl Into<Vec<u8>>) -> Attr {
        Attr {
            kind,
            value: value.into(),
        }
    }

    /// A NUL-terminated string attribute.
    pub fn string(kind: u16, value: &str) -> Attr {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        Attr::new(kind, bytes)
    }

    /// A big-endian u32 attribute.
    pub fn be32(kind: u16, value: u32) -> Attr {
        Attr::new(kind, value.to_be_bytes())
    }

    /// A nested attribute (`NLA_F_NESTED` set) holding `children`.
    pub fn nested(kind: u16, children: &[Attr]) -> Attr {
        Attr::new(kind | NLA_F_NESTED, emit(children))
    }

    /// The type without its flags.
    pub fn id(&self) -> u16 {
        self.kind & !NLA_FLAGS
    }

    /// The value as a string (up to its NUL; UTF-8).
    pub fn as_str(&self) -> std::result::Result<&str, String> {
        let end = self
            .value
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.value.len());
        std::str::from_utf8(&self.value[..end])
            .map_err(|_| format!("attribute {}: not UTF-8 text", self.id()))
    }

    /// The value as a big-endian u32.
    pub fn as_be32(&self) -> std::result::Result<u32, String> {
        let bytes: [u8; 4] =
            self.value.as_slice().try_into().map_err(|_| {
                format!("attribute {}: {} bytes, not 4", self.id(), self.value.len())
            })?;
        Ok(u32::from_be_bytes(bytes))
    }

    /// The value as a big-endian u64.
    pub fn as_be64(&self) -> std::result::Result<u64, String> {
        let bytes: [u8; 8] =
            self.value.as_slice().try_into().map_err(|_| {
                format!("attribute {}: {} bytes, not 8", self.id(), self.value.len())
            })?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// The value parsed as attributes (strictly: see [`parse`]).
    pub fn children(&self) -> std::result::Result<Vec<Attr>, String> {
        parse(&self.value).map_err(|e| format!("in attribute {}: {e}", self.id()))
    }
}

/// The first attribute with id `id` (flags aside).
pub fn find(attrs: &[Attr], id: u16) -> Option<&Attr> {
    attrs.iter().find(|a| a.id() == id)
}

/// The string attribute `id`, or `None` when absent or not text.
pub fn find_str(attrs: &[Attr], id: u16) -> Option<&str> {
    find(attrs, id).and_then(|a| a.as_str().ok())
}

/// The big-endian u32 attribute `id`, or `None` when absent or not 4 bytes.
pub fn find_be32(attrs: &[Attr], id: u16) -> Option<u32> {
    find(attrs, id).and_then(|a| a.as_be32().ok())
}

/// Splits `bytes` into attributes. Strict: an attribute shorter than its header, one whose
/// length runs past the bytes, or trailing bytes that are not padding, are errors.
pub fn parse(bytes: &[u8]) -> std::result::Result<Vec<Attr>, String> {
    Ok(crate::raw::attributes_flagged(bytes)?
        .into_iter()
        .map(|(kind, value)| Attr::new(kind, value))
        .collect())
}

/// Encodes attributes, each padded to 4 bytes.
pub fn emit(attrs: &[Attr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(attrs.iter().map(|a| align4(4 + a.value.len())).sum());
    for a in attrs {
        emit_into(&mut out, a.kind, &a.value);
    }
    out
}

/// Appends one attribute, padded to 4 bytes, to `out`.
pub fn emit_into(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + align4(len) - len, 0);
}

/// The name (`NFTA_EXPR_NAME`) of an encoded expression, read in place; `None` when it has
/// none or is malformed (a strict parse then says why).
pub fn expression_name(expr: &[u8]) -> Option<&str> {
    let attrs = crate::raw::attributes_flagged(expr).ok()?;
    let (_, value) = attrs
        .iter()
        .find(|(kind, _)| kind & !NLA_FLAGS == common::EXPR_NAME)?;
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    std::str::from_utf8(&value[..end]).ok()
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One nf_tables message: its `NFT_MSG_*` type, `nfgen_family` and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftMessage {
    /// `NFT_MSG_*` (the low byte of the message type).
    pub kind: u8,
    /// `nfgen_family` (NFPROTO_*).
    pub family: u8,
    /// The attributes, in the order they came.
    pub attrs: Vec<Attr>,
}

impl NftMessage {
    /// A message of `kind` for `family` with `attrs`.
    pub fn new(kind: u8, family: u8, attrs: Vec<Attr>) -> NftMessage {
        NftMessage {
            kind,
            family,
            attrs,
        }
    }

    /// Parses a message body (`struct nfgenmsg` and attributes) of netlink type
    /// `message_type`, which must be an nf_tables one.
    pub fn parse(message_type: u16, body: &[u8]) -> std::result::Result<NftMessage, String> {
        if (message_type >> 8) as u8 != NFNL_SUBSYS_NFTABLES {
            return Err(format!(
                "message type {message_type:#x} is not an nf_tables message"
            ));
        }
        if body.len() < NFGENMSG_LEN {
            return Err(format!(
                "a {}-byte body, shorter than struct nfgenmsg",
                body.len()
            ));
        }
        if body[1] != NFNETLINK_V0 {
            return Err(format!("nfgenmsg version {}", body[1]));
        }
        Ok(NftMessage {
            kind: message_type as u8,
            family: body[0],
            attrs: parse(&body[NFGENMSG_LEN..])?,
        })
    }

    /// The message body: `struct nfgenmsg` (res_id 0) and the attributes.
    pub fn body(&self) -> Vec<u8> {
        let mut out = vec![self.family, NFNETLINK_V0, 0, 0];
        out.extend(emit(&self.attrs));
        out
    }

    /// The message as a raw request of its nf_tables type.
    pub fn to_raw(&self) -> RawMessage {
        RawMessage {
            kind: message_type(self.kind),
            body: self.body(),
        }
    }

    /// The attribute `id`.
    pub fn attr(&self, id: u16) -> Option<&Attr> {
        find(&self.attrs, id)
    }

    /// The string attribute `id`.
    pub fn str(&self, id: u16) -> Option<&str> {
        find_str(&self.attrs, id)
    }
}

/// Every nf_tables object of a namespace, as the kernel dumped them: tables, chains, sets,
/// each set's elements, stateful objects, flowtables, rules (each kind in the kernel's
/// order). `None` when this kernel has no nf_tables (it then holds none).
///
/// The dumps are consistent: the ruleset generation is the same before and after them, or
/// they are all read again (a bounded number of times).
pub fn dump_ruleset(socket: &mut dyn RawTransport) -> Result<Option<Vec<NftMessage>>> {
    for attempt in 1..=DUMP_ATTEMPTS {
        let Some(before) = generation(socket)? else {
            return Ok(None);
        };
        let objects = dump_once(socket)?;
        if generation(socket)? == Some(before) {
            return Ok(Some(objects));
        }
        log::debug!("nf_tables changed during the dump (attempt {attempt}), reading it again");
        std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt.min(20))));
    }
    Err(Error::DumpInterrupted {
        context: "dumping nf_tables".into(),
        netns: socket.netns_label().to_string(),
        attempts: DUMP_ATTEMPTS,
    })
}

/// The tables of every family (a dump of NFT_MSG_GETTABLE only), or `None` when this
/// kernel has no nf_tables.
pub fn dump_tables(socket: &mut dyn RawTransport) -> Result<Option<Vec<NftMessage>>> {
    let all = [0u8, NFNETLINK_V0, 0, 0];
    let context = "dumping nf_tables tables";
    match dump_kind(socket, msg::GETTABLE, &all, msg::NEWTABLE, context) {
        Ok(tables) => Ok(Some(tables)),
        Err(e) if e.is_unsupported() || e.errno() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The ruleset generation (NFT_MSG_GETGEN), or `None` when this kernel lacks nf_tables
/// (nfnetlink answers a subsystem it lacks with EINVAL or EOPNOTSUPP).
pub fn generation(socket: &mut dyn RawTransport) -> Result<Option<u32>> {
    let context = "reading the nf_tables generation";
    let answer = match socket.request(message_type(msg::GETGEN), &[0, 0, 0, 0], context) {
        Ok(answer) => answer,
        Err(e) if e.is_unsupported() || e.errno() == Some(libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    };
    for m in answer {
        let parsed = decoded(socket, context, m.kind, &m.payload)?;
        if parsed.kind == msg::NEWGEN {
            let id = find(&parsed.attrs, common::GEN_ID)
                .ok_or_else(|| decode_error(socket, context, "NEWGEN without NFTA_GEN_ID"))?
                .as_be32()
                .map_err(|e| decode_error(socket, context, &e))?;
            return Ok(Some(id));
        }
    }
    Err(decode_error(socket, context, "no NEWGEN in the answer"))
}

fn decode_error(socket: &dyn RawTransport, context: &str, detail: &str) -> Error {
    Error::Decode {
        context: context.to_string(),
        netns: socket.netns_label().to_string(),
        detail: detail.to_string(),
    }
}

fn decoded(
    socket: &dyn RawTransport,
    context: &str,
    kind: u16,
    payload: &[u8],
) -> Result<NftMessage> {
    NftMessage::parse(kind, payload).map_err(|e| decode_error(socket, context, &e))
}

/// Dumps `kind` (a GET message) with request `body`, expecting answers of type `reply`.
fn dump_kind(
    socket: &mut dyn RawTransport,
    kind: u8,
    body: &[u8],
    reply: u8,
    context: &str,
) -> Result<Vec<NftMessage>> {
    let answer = socket.dump(message_type(kind), body, context)?;
    let mut out = Vec::with_capacity(answer.len());
    for m in answer {
        let parsed = decoded(socket, context, m.kind, &m.payload)?;
        if parsed.kind != reply {
            return Err(decode_error(
                socket,
                context,
                &format!("a message of type {} in the answer", parsed.kind),
            ));
        }
        out.push(parsed);
    }
    Ok(out)
}

fn dump_once(socket: &mut dyn RawTransport) -> Result<Vec<NftMessage>> {
    // NFPROTO_UNSPEC: every family.
    let all = [0u8, NFNETLINK_V0, 0, 0];
    let mut out = dump_kind(
        socket,
        msg::GETTABLE,
        &all,
        msg::NEWTABLE,
        "dumping nf_tables tables",
    )?;
    let chains = dump_kind(
        socket,
        msg::GETCHAIN,
        &all,
        msg::NEWCHAIN,
        "dumping nf_tables chains",
    )?;
    // Rules chain by chain, in the chains' order (the kernel's own order for a dump of all):
    // a dump resumes each of its messages by walking the rules from the start of what it
    // covers, so one dump of every rule costs the kernel the square of their number, while
    // a chain's costs the square of the chain's.
    let mut rules = Vec::new();
    for c in &chains {
        let (Some(table), Some(name)) = (c.str(chain::TABLE), c.str(chain::NAME)) else {
            return Err(decode_error(
                socket,
                "dumping nf_tables chains",
                "a chain without its table or name",
            ));
        };
        let request = NftMessage::new(
            msg::GETRULE,
            c.family,
            vec![
                Attr::string(rule::TABLE, table),
                Attr::string(rule::CHAIN, name),
            ],
        );
        let context = format!(
            "dumping the rules of chain {} {table} {name}",
            family_name(c.family)
        );
        rules.extend(dump_kind(
            socket,
            msg::GETRULE,
            &request.body(),
            msg::NEWRULE,
            &context,
        )?);
    }
    out.extend(chains);
    let sets = dump_kind(
        socket,
        msg::GETSET,
        &all,
        msg::NEWSET,
        "dumping nf_tables sets",
    )?;
    let mut elements = Vec::new();
    for s in &sets {
        let (Some(table), Some(name)) = (s.str(set::TABLE), s.str(set::NAME)) else {
            return Err(decode_error(
                socket,
                "dumping nf_tables sets",
                "a set without its table or name",
            ));
        };
        let request = NftMessage::new(
            msg::GETSETELEM,
            s.family,
            vec![
                Attr::string(elem::LIST_TABLE, table),
                Attr::string(elem::LIST_SET, name),
            ],
        );
        let context = format!(
            "dumping the elements of set {} {table} {name}",
            family_name(s.family)
        );
        elements.extend(dump_kind(
            socket,
            msg::GETSETELEM,
            &request.body(),
            msg::NEWSETELEM,
            &context,
        )?);
    }
    out.extend(sets);
    out.extend(elements);
    out.extend(dump_kind(
        socket,
        msg::GETOBJ,
        &all,
        msg::NEWOBJ,
        "dumping nf_tables objects",
    )?);
    out.extend(dump_kind(
        socket,
        msg::GETFLOWTABLE,
        &all,
        msg::NEWFLOWTABLE,
        "dumping nf_tables flowtables",
    )?);
    out.extend(rules);
    Ok(out)
}

/// The request that deletes table `name` of `family` with everything in it.
pub fn delete_table(family: u8, name: &str) -> NftMessage {
    NftMessage::new(msg::DELTABLE, family, vec![Attr::string(table::NAME, name)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A table as kernel 6.18 dumped it (`nft add table inet filt` and one chain):
    /// nfgenmsg (inet, v0, res_id = the generation), NAME "filt", USE 1, HANDLE 7, FLAGS 0.
    const TABLE: &[u8] = &[
        1, 0, 0, 2, //
        9, 0, 1, 0, b'f', b'i', b'l', b't', 0, 0, 0, 0, //
        8, 0, 3, 0, 0, 0, 0, 1, //
        12, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 7, //
        8, 0, 2, 0, 0, 0, 0, 0,
    ];

    #[rstest]
    fn a_dumped_table_parses_and_emits_byte_for_byte() {
        let m = NftMessage::parse(message_type(msg::NEWTABLE), TABLE).unwrap();
        assert_eq!((m.kind, m.family), (msg::NEWTABLE, 1));
        assert_eq!(m.str(table::NAME), Some("filt"));
        assert_eq!(m.attr(table::HANDLE).unwrap().as_be64(), Ok(7));
        assert_eq!(find_be32(&m.attrs, table::USE), Some(1));
        // The attributes come back exactly; only res_id (the generation) is not sent.
        assert_eq!(&m.body()[4..], &TABLE[4..]);
        assert_eq!(&m.body()[..4], &[1, 0, 0, 0]);
    }

    #[rstest]
    #[case::not_nftables(0x0300, TABLE)]
    #[case::short_nfgenmsg(0x0a00, &TABLE[..3])]
    #[case::version(0x0a00, &[1, 1, 0, 0])]
    #[case::attribute_past_end(0x0a00, &TABLE[..10])]
    #[case::stray_bytes(0x0a00, &[1, 0, 0, 0, 1, 2, 3, 4, 5])]
    fn malformed_messages_are_errors(#[case] kind: u16, #[case] body: &[u8]) {
        assert!(NftMessage::parse(kind, body).is_err());
    }

    #[rstest]
    fn nested_attributes_keep_their_flags_and_parse_on_demand() {
        let hook = Attr::nested(
            chain::HOOK,
            &[Attr::be32(hook::HOOKNUM, 1), Attr::be32(hook::PRIORITY, 0)],
        );
        assert_eq!(hook.id(), chain::HOOK);
        assert_eq!(hook.kind, chain::HOOK | NLA_F_NESTED);
        let kids = hook.children().unwrap();
        assert_eq!(find_be32(&kids, hook::HOOKNUM), Some(1));
        let bytes = emit(std::slice::from_ref(&hook));
        assert_eq!(parse(&bytes).unwrap(), vec![hook]);
        // A string keeps its NUL; padding is added, and ignored when read back.
        let s = Attr::string(1, "ab");
        assert_eq!(
            emit(std::slice::from_ref(&s)),
            vec![7, 0, 1, 0, b'a', b'b', 0, 0]
        );
        assert_eq!(s.as_str(), Ok("ab"));
        assert!(Attr::new(1, [1, 2]).as_be32().is_err());
    }

    #[rstest]
    fn deleting_a_table_names_it() {
        let raw = delete_table(2, "nat").to_raw();
        assert_eq!(raw.kind, 0x0a02);
        assert_eq!(raw.body, vec![2, 0, 0, 0, 8, 0, 1, 0, b'n', b'a', b't', 0]);
    }
}
