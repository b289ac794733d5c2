//! IPsec (xfrm), a state family of its own: the namespace's states (SAs), policies (not
//! sockets' own) and default policies, kept as the kernel dumps them over NETLINK_XFRM (the
//! fixed struct and its attributes) minus what the kernel owns (current lifetime, statistics,
//! last use). How an image's xfrm records are checked (they are untrusted: message types,
//! struct sizes, attribute framing, algorithm key lengths), how the restore turns them back
//! into requests and undoes them, how they are described without their keys, and how the
//! restored ones are compared with the image.
//!
//! States hold key material (`XFRMA_ALG_*`). Nothing here that describes an object ever
//! includes a key: descriptions name states by protocol, SPI, addresses, mode and algorithm
//! names.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use netcr_image::{v1, NetnsImage};
use netcr_netlink::raw::{attribute, attributes_flagged};
use netcr_netlink::{RawMessage, RawTransport, ReceivedMessage, Request};

use crate::state::{IndexOf, NameOf};

/// `XFRM_MSG_NEWSA`: a state (the dump's answers and the restore's creations).
pub const NEWSA: u16 = 16;
/// `XFRM_MSG_DELSA`.
pub const DELSA: u16 = 17;
/// `XFRM_MSG_GETSA`.
pub const GETSA: u16 = 18;
/// `XFRM_MSG_NEWPOLICY`.
pub const NEWPOLICY: u16 = 19;
/// `XFRM_MSG_DELPOLICY`.
pub const DELPOLICY: u16 = 20;
/// `XFRM_MSG_GETPOLICY`.
pub const GETPOLICY: u16 = 21;
/// `XFRM_MSG_SETDEFAULT` (5.16+).
pub const SETDEFAULT: u16 = 39;
/// `XFRM_MSG_GETDEFAULT` (5.16+).
pub const GETDEFAULT: u16 = 40;

/// `sizeof(struct xfrm_usersa_info)`.
pub const SA_INFO_LEN: usize = 224;
/// `sizeof(struct xfrm_userpolicy_info)`.
pub const POLICY_INFO_LEN: usize = 168;
/// `struct xfrm_userpolicy_default`: in, fwd, out.
pub const DEFAULT_LEN: usize = 3;
const SA_ID_LEN: usize = 24;
const POLICY_ID_LEN: usize = 64;

// struct xfrm_selector, at the start of both structs.
const SEL_FAMILY: usize = 40;
const SEL_IFINDEX: usize = 48;
// struct xfrm_usersa_info.
const SA_DADDR: usize = 56;
const SA_SPI: usize = 72;
const SA_PROTO: usize = 76;
const SA_SADDR: usize = 80;
const SA_CURLFT: std::ops::Range<usize> = 160..204; // curlft and stats
const SA_REQID: usize = 208;
const SA_FAMILY: usize = 212;
const SA_MODE: usize = 214;
// struct xfrm_userpolicy_info.
const POL_CURLFT: std::ops::Range<usize> = 120..152;
const POL_PRIORITY: usize = 152;
const POL_INDEX: usize = 156;
const POL_DIR: usize = 160;
const POL_ACTION: usize = 161;

// enum xfrm_attr_type_t.
const ALG_AUTH: u16 = 1;
const ALG_CRYPT: u16 = 2;
const ALG_COMP: u16 = 3;
const TMPL: u16 = 5;
const SEC_CTX: u16 = 8;
const LTIME_VAL: u16 = 9;
const REPLAY_VAL: u16 = 10;
const LASTUSED: u16 = 15;
const POLICY_TYPE: u16 = 16;
const ALG_AEAD: u16 = 18;
const ALG_AUTH_TRUNC: u16 = 20;
const MARK: u16 = 21;
const REPLAY_ESN_VAL: u16 = 23;
const PAD: u16 = 27;
const OFFLOAD_DEV: u16 = 28;
const IF_ID: u16 = 31;
/// The highest attribute type this netcr knows of (XFRMA_SA_PCPU).
const ATTR_MAX: u16 = 35;
/// `sizeof(struct xfrm_user_tmpl)`.
const TMPL_LEN: usize = 64;

/// What an xfrm record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A state (SA).
    State,
    /// A policy.
    Policy,
    /// The default policies.
    Default,
}

impl Kind {
    /// The record kind of message type `msg`, if it is one of the three.
    pub fn of(msg: u32) -> Option<Kind> {
        match u16::try_from(msg).ok()? {
            NEWSA => Some(Kind::State),
            NEWPOLICY => Some(Kind::Policy),
            SETDEFAULT => Some(Kind::Default),
            _ => None,
        }
    }

    fn head_len(self) -> usize {
        match self {
            Kind::State => SA_INFO_LEN,
            Kind::Policy => POLICY_INFO_LEN,
            Kind::Default => DEFAULT_LEN,
        }
    }

    fn msg(self) -> u16 {
        match self {
            Kind::State => NEWSA,
            Kind::Policy => NEWPOLICY,
            Kind::Default => SETDEFAULT,
        }
    }
}

/// An xfrm message split into its fixed struct and its attributes (types as sent, flags
/// included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// What it is.
    pub kind: Kind,
    /// The fixed struct.
    pub head: Vec<u8>,
    /// The attributes: (type with its flags, value).
    pub attrs: Vec<(u16, Vec<u8>)>,
}

impl Object {
    /// Splits a body of `kind` strictly: a short struct or malformed attributes are errors.
    pub fn parse(kind: Kind, body: &[u8]) -> Result<Object, String> {
        let len = kind.head_len();
        let head = body.get(..len).ok_or_else(|| {
            format!(
                "an xfrm {} of {} bytes, less than its {len}-byte struct",
                kind.noun(),
                body.len()
            )
        })?;
        let rest = &body[len.next_multiple_of(4).min(body.len())..];
        let attrs = attributes_flagged(rest)
            .map_err(|e| format!("an xfrm {}: {e}", kind.noun()))?
            .into_iter()
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        Ok(Object {
            kind,
            head: head.to_vec(),
            attrs,
        })
    }

    /// A stored record, parsed back.
    pub fn decode(rec: &v1::XfrmObject) -> Result<Object, String> {
        let kind = Kind::of(rec.kind)
            .ok_or_else(|| format!("an xfrm record of message type {}", rec.kind))?;
        Object::parse(kind, &rec.message)
    }

    /// The body again.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        out.resize(out.len().next_multiple_of(4), 0);
        for (t, v) in &self.attrs {
            out.extend(attribute(*t, v));
        }
        out
    }

    /// The value of the first attribute of type `t`.
    pub fn attr(&self, t: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(k, _)| k & 0x3fff == t)
            .map(|(_, v)| v.as_slice())
    }

    fn drop_attrs(&mut self, drop: &[u16]) {
        self.attrs.retain(|(t, _)| !drop.contains(&(t & 0x3fff)));
    }

    /// The selector's device index (0: none).
    pub fn sel_ifindex(&self) -> u32 {
        if self.kind == Kind::Default {
            return 0;
        }
        u32_at(&self.head, SEL_IFINDEX)
    }

    fn set_sel_ifindex(&mut self, index: u32) {
        self.head[SEL_IFINDEX..SEL_IFINDEX + 4].copy_from_slice(&index.to_ne_bytes());
    }

    /// Policy direction: 0 in, 1 out, 2 fwd; 3 and up are sockets' own.
    fn dir(&self) -> u8 {
        self.head[POL_DIR]
    }

    /// What the kernel owns, zeroed or dropped: current lifetime, statistics, last use.
    fn strip_kernel_owned(&mut self) {
        match self.kind {
            Kind::State => self.head[SA_CURLFT].fill(0),
            Kind::Policy => self.head[POL_CURLFT].fill(0),
            Kind::Default => {}
        }
        self.drop_attrs(&[LTIME_VAL, LASTUSED, PAD]);
    }

    /// What identifies it in the namespace: a state by family, destination, SPI, protocol
    /// and mark; a policy by direction, selector (its device by name: `dev`), type, mark,
    /// if_id and security context.
    pub fn key(&self, dev: &str) -> Vec<u8> {
        let mut key = vec![self.kind.msg() as u8];
        match self.kind {
            Kind::State => {
                key.extend(&self.head[SA_FAMILY..SA_FAMILY + 2]);
                key.extend(&self.head[SA_DADDR..SA_PROTO + 1]);
                key.extend(self.attr(MARK).unwrap_or_default());
            }
            Kind::Policy => {
                key.push(self.dir());
                let mut sel = self.head[..56].to_vec();
                sel[SEL_IFINDEX..SEL_IFINDEX + 4].fill(0);
                key.extend(sel);
                key.extend(dev.as_bytes());
                key.push(0);
                for t in [POLICY_TYPE, MARK, IF_ID, SEC_CTX] {
                    key.extend(self.attr(t).unwrap_or_default());
                    key.push(0xff);
                }
            }
            Kind::Default => {}
        }
        key
    }

    /// The policy's index (0 for other objects).
    pub fn index(&self) -> u32 {
        match self.kind {
            Kind::Policy => u32_at(&self.head, POL_INDEX),
            _ => 0,
        }
    }
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::State => "state",
            Kind::Policy => "policy",
            Kind::Default => "default policy",
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

/// An address of `family` (AF_INET, AF_INET6) from the first bytes of `b`.
fn ip(family: u16, b: &[u8]) -> String {
    match (i32::from(family), b.len()) {
        (libc::AF_INET, n) if n >= 4 => Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        (libc::AF_INET6, n) if n >= 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[..16]);
            Ipv6Addr::from(a).to_string()
        }
        _ => format!("(family {family})"),
    }
}

fn proto_name(p: u8) -> String {
    match p {
        50 => "esp".into(),
        51 => "ah".into(),
        108 => "comp".into(),
        43 => "route2".into(),
        60 => "hao".into(),
        255 => "any".into(),
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        4 => "ipip".into(),
        41 => "ipv6".into(),
        n => format!("proto {n}"),
    }
}

fn mode_name(m: u8) -> String {
    match m {
        0 => "transport".into(),
        1 => "tunnel".into(),
        2 => "ro".into(),
        3 => "in_trigger".into(),
        4 => "beet".into(),
        n => format!("mode {n}"),
    }
}

/// The value of an algorithm attribute: `struct xfrm_algo` (name, key length in bits, key),
/// or with `extra` (the truncation or ICV length in bits) `xfrm_algo_auth` /
/// `xfrm_algo_aead`. For building records (tests, crafted images).
pub fn algorithm(name: &str, key: &[u8], extra: Option<u32>) -> Vec<u8> {
    let mut v = vec![0u8; 64];
    let n = name.len().min(63);
    v[..n].copy_from_slice(&name.as_bytes()[..n]);
    v.extend(((key.len() * 8) as u32).to_ne_bytes());
    if let Some(e) = extra {
        v.extend(e.to_ne_bytes());
    }
    v.extend(key);
    v
}

/// An algorithm's name (`struct xfrm_algo*`: a NUL-terminated name in 64 bytes), never its
/// key.
fn alg_name(v: &[u8]) -> String {
    let name = &v[..v.len().min(64)];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

fn mark_text(v: &[u8]) -> Option<String> {
    (v.len() >= 8).then(|| format!("0x{:x}/0x{:x}", u32_at(v, 0), u32_at(v, 4)))
}

/// What the dump found, as image records.
#[derive(Debug, Default)]
pub struct Kept {
    /// States, then policies, then the default policies (when not all accept).
    pub records: Vec<v1::XfrmObject>,
}

/// Turns what the kernel dumped into image records: states (`NEWSA` answers), policies
/// (`NEWPOLICY`; sockets' own are not the namespace's and are left out), each in the order
/// the namespace made them, the default
/// policies (kept when any is not accept). A state offloaded to a device cannot be
/// re-created from a dump and stops the dump, named; a selector naming a device the dump
/// does not know does too.
pub fn keep(
    states: &[ReceivedMessage],
    policies: &[ReceivedMessage],
    defaults: Option<[u8; 3]>,
    name_of: &NameOf<'_>,
) -> Result<Kept, String> {
    let mut kept = Kept::default();
    // The kernel dumps newest first; the image holds them in the order they were made, so
    // that the restore makes them in that order again (of two policies of one priority that
    // both match, the older one wins).
    let dumped = states
        .iter()
        .rev()
        .filter(|m| m.kind == NEWSA)
        .map(|m| (Kind::State, m))
        .chain(
            policies
                .iter()
                .rev()
                .filter(|m| m.kind == NEWPOLICY)
                .map(|m| (Kind::Policy, m)),
        );
    for (kind, m) in dumped {
        let mut o = Object::parse(kind, &m.payload)?;
        if kind == Kind::Policy && o.dir() > 2 {
            continue;
        }
        if o.attr(OFFLOAD_DEV).is_some() {
            return Err(format!(
                "xfrm {} {} is offloaded to a device: netcr cannot keep offloaded states (--leave-out xfrm leaves IPsec out)",
                kind.noun(),
                describe(&o)
            ));
        }
        o.strip_kernel_owned();
        let dev = match o.sel_ifindex() {
            0 => String::new(),
            i => name_of(i).ok_or_else(|| {
                format!(
                    "xfrm {} {} selects device index {i}, which no device of the namespace has",
                    kind.noun(),
                    describe(&o)
                )
            })?,
        };
        kept.records.push(v1::XfrmObject {
            kind: u32::from(kind.msg()),
            message: o.encode(),
            dev,
        });
    }
    if let Some(d) = defaults.filter(|d| d.iter().any(|v| *v != 2)) {
        kept.records.push(v1::XfrmObject {
            kind: u32::from(SETDEFAULT),
            message: d.to_vec(),
            dev: String::new(),
        });
    }
    Ok(kept)
}

/// What a namespace holds, read over NETLINK_XFRM: its states, policies and default
/// policies (`None` where the kernel lacks them, before 5.16).
pub type Dumped = (Vec<ReceivedMessage>, Vec<ReceivedMessage>, Option<[u8; 3]>);

/// Reads a namespace's states, policies and default policies through `socket`.
pub fn dump(socket: &mut dyn RawTransport) -> netcr_netlink::Result<Dumped> {
    let states = socket.dump(GETSA, &[], "dumping xfrm states")?;
    let policies = socket.dump(GETPOLICY, &[], "dumping xfrm policies")?;
    let defaults = match socket.request(GETDEFAULT, &[0u8; 4], "reading the xfrm default policies")
    {
        Ok(messages) => messages
            .iter()
            .find(|m| m.kind == GETDEFAULT && m.payload.len() >= DEFAULT_LEN)
            .map(|m| [m.payload[0], m.payload[1], m.payload[2]]),
        Err(e) if e.is_unsupported() || e.errno() == Some(libc::EINVAL) => None,
        Err(e) => return Err(e),
    };
    Ok((states, policies, defaults))
}

/// The records of `dumped`, normalized as the dump keeps them, by key; for comparison and
/// clash checks. Selector indexes are named with `name_of`.
pub fn dumped_objects(
    dumped: &Dumped,
    name_of: &NameOf<'_>,
) -> Result<Vec<(Object, String)>, String> {
    let mut out = Vec::new();
    for (kind, messages, msg) in [
        (Kind::State, &dumped.0, NEWSA),
        (Kind::Policy, &dumped.1, NEWPOLICY),
    ] {
        for m in messages.iter().filter(|m| m.kind == msg) {
            let mut o = Object::parse(kind, &m.payload)?;
            if kind == Kind::Policy && o.dir() > 2 {
                continue;
            }
            o.strip_kernel_owned();
            let dev = match o.sel_ifindex() {
                0 => String::new(),
                i => name_of(i).unwrap_or_else(|| format!("if{i}")),
            };
            out.push((o, dev));
        }
    }
    if let Some(d) = dumped.2 {
        out.push((
            Object {
                kind: Kind::Default,
                head: d.to_vec(),
                attrs: Vec::new(),
            },
            String::new(),
        ));
    }
    Ok(out)
}

/// Checks an image's xfrm records before any change: known message types, whole structs,
/// well-framed attributes of known types, algorithms whose key length fits their
/// attribute, directions, actions and families the kernel knows, a device for every
/// selector that names one (and one the image holds), no object twice, at most one
/// default-policy record.
pub fn validate(ns: &NetnsImage, holds: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let mut keys = HashMap::new();
    let mut defaults = 0;
    for (i, rec) in ns.xfrm.iter().enumerate() {
        let o = Object::decode(rec).map_err(|e| format!("xfrm record {i}: {e}"))?;
        let what = format!("xfrm {} {}", o.kind.noun(), describe(&o));
        check_object(&o).map_err(|e| format!("{what}: {e}"))?;
        match (o.sel_ifindex(), rec.dev.is_empty()) {
            (0, true) => {}
            (0, false) | (_, true) => {
                return Err(format!(
                "{what}: its selector's device by index does not match its device by name ({:?})",
                rec.dev
            ))
            }
            (_, false) if !holds(&rec.dev) => {
                return Err(format!(
                    "{what}: its selector names \"{}\", which the image does not hold",
                    rec.dev
                ))
            }
            _ => {}
        }
        if o.kind == Kind::Default {
            defaults += 1;
            if defaults > 1 {
                return Err("more than one xfrm default-policy record".into());
            }
            continue;
        }
        if keys.insert(o.key(&rec.dev), ()).is_some() {
            return Err(format!("{what} appears twice"));
        }
    }
    Ok(())
}

fn check_object(o: &Object) -> Result<(), String> {
    let family_ok = |f: u16| f == 0 || f == 2 || f == 10;
    match o.kind {
        Kind::Default => {
            if o.head.iter().any(|v| *v > 2) || !o.attrs.is_empty() {
                return Err(format!(
                    "values {:?}: each must be 0 (unchanged), 1 (block) or 2 (accept), with nothing after them",
                    o.head
                ));
            }
            return Ok(());
        }
        Kind::State => {
            let family = u16_at(&o.head, SA_FAMILY);
            if family != 2 && family != 10 {
                return Err(format!("address family {family}"));
            }
            if o.head[SA_MODE] > 4 {
                return Err(format!("mode {}", o.head[SA_MODE]));
            }
        }
        Kind::Policy => {
            if o.dir() > 2 {
                return Err(format!(
                    "direction {}: only in (0), out (1) and fwd (2) are a namespace's",
                    o.dir()
                ));
            }
            if o.head[POL_ACTION] > 1 {
                return Err(format!("action {}", o.head[POL_ACTION]));
            }
            let index = o.index();
            if index != 0 && index % 8 != u32::from(o.dir()) {
                return Err(format!("index {index} is not one of direction {}", o.dir()));
            }
        }
    }
    if !family_ok(u16_at(&o.head, SEL_FAMILY)) {
        return Err(format!(
            "selector address family {}",
            u16_at(&o.head, SEL_FAMILY)
        ));
    }
    for (t, v) in &o.attrs {
        let t = t & 0x3fff;
        if t == 0 || t > ATTR_MAX {
            return Err(format!("attribute type {t}"));
        }
        match t {
            LTIME_VAL | LASTUSED | PAD => {
                return Err(format!(
                    "attribute {t}: the kernel's own bookkeeping, which no image holds"
                ))
            }
            OFFLOAD_DEV => return Err("offloaded to a device by index".into()),
            ALG_AUTH | ALG_CRYPT | ALG_COMP => check_alg(v, 68, t)?,
            ALG_AUTH_TRUNC | ALG_AEAD => check_alg(v, 72, t)?,
            TMPL if o.kind == Kind::Policy && v.len() % TMPL_LEN != 0 => {
                return Err(format!(
                    "templates of {} bytes, not a multiple of {TMPL_LEN}",
                    v.len()
                ))
            }
            MARK if v.len() != 8 => return Err(format!("a mark of {} bytes", v.len())),
            IF_ID if v.len() != 4 => return Err(format!("an if_id of {} bytes", v.len())),
            _ => {}
        }
    }
    Ok(())
}

/// `struct xfrm_algo` (`fixed` = 68: name, key length in bits) or `xfrm_algo_auth` /
/// `xfrm_algo_aead` (72: and the truncation or ICV length), then the key: the attribute
/// must hold exactly the key its length says.
fn check_alg(v: &[u8], fixed: usize, t: u16) -> Result<(), String> {
    if v.len() < fixed {
        return Err(format!(
            "algorithm attribute {t} of {} bytes, less than its {fixed}-byte struct",
            v.len()
        ));
    }
    if !v[..64].contains(&0) {
        return Err(format!("algorithm attribute {t}: a name without its NUL"));
    }
    let bits = u32_at(v, 64) as usize;
    let key = bits.div_ceil(8);
    if v.len() - fixed != key {
        return Err(format!(
            "algorithm {}: a {bits}-bit key in {} bytes",
            alg_name(v),
            v.len() - fixed
        ));
    }
    Ok(())
}

/// The request that makes a record again in a namespace where `index_of` names devices:
/// the selector's device index rewritten. A state or policy is a creation that never
/// replaces one (the kernel refuses an existing one); default policies are a change.
pub fn creation(
    rec: &v1::XfrmObject,
    index_of: &IndexOf<'_>,
) -> Result<Request<RawMessage>, String> {
    let mut o = Object::decode(rec)?;
    let what = format!("xfrm {} {}", o.kind.noun(), describe(&o));
    if o.sel_ifindex() != 0 {
        let index = crate::state::index(index_of, &rec.dev, &what)?;
        o.set_sel_ifindex(index);
    }
    let message = RawMessage {
        kind: o.kind.msg(),
        body: o.encode(),
    };
    Ok(match o.kind {
        Kind::Default => Request::change(message, format!("setting the {what}")),
        _ => Request::create(message, format!("adding {what}")),
    })
}

/// The request that removes what `creation` (already rewritten: its body as sent) made:
/// DELSA by destination, SPI, protocol, family and mark; DELPOLICY by selector, direction,
/// type, mark, if_id and security context. `None` for default policies (their undo puts
/// back the values read before: [`default_request`]).
pub fn deletion(creation: &RawMessage) -> Option<Request<RawMessage>> {
    let kind = Kind::of(u32::from(creation.kind))?;
    let o = Object::parse(kind, &creation.body).ok()?;
    let what = describe(&o);
    match kind {
        Kind::State => {
            let mut body = vec![0u8; SA_ID_LEN];
            body[..16].copy_from_slice(&o.head[SA_DADDR..SA_DADDR + 16]);
            body[16..20].copy_from_slice(&o.head[SA_SPI..SA_SPI + 4]);
            body[20..22].copy_from_slice(&o.head[SA_FAMILY..SA_FAMILY + 2]);
            body[22] = o.head[SA_PROTO];
            if let Some(mark) = o.attr(MARK) {
                body.extend(attribute(MARK, mark));
            }
            Some(Request::change(
                RawMessage { kind: DELSA, body },
                format!("removing xfrm state {what}"),
            ))
        }
        Kind::Policy => {
            let mut body = vec![0u8; POLICY_ID_LEN];
            body[..56].copy_from_slice(&o.head[..56]);
            body[60] = o.dir();
            for t in [POLICY_TYPE, MARK, IF_ID, SEC_CTX] {
                if let Some(v) = o.attr(t) {
                    body.extend(attribute(t, v));
                }
            }
            Some(Request::change(
                RawMessage {
                    kind: DELPOLICY,
                    body,
                },
                format!("removing xfrm policy {what}"),
            ))
        }
        Kind::Default => None,
    }
}

/// The request that sets the default policies to `values` (in, fwd, out).
pub fn default_request(values: [u8; 3], context: &str) -> Request<RawMessage> {
    Request::change(
        RawMessage {
            kind: SETDEFAULT,
            body: values.to_vec(),
        },
        context,
    )
}

fn selector_text(head: &[u8]) -> String {
    let family = u16_at(head, SEL_FAMILY);
    let mut out = format!(
        "{}/{} -> {}/{}",
        ip(family, &head[16..32]),
        head[43],
        ip(family, &head[0..16]),
        head[42]
    );
    if head[44] != 0 {
        out.push_str(&format!(" proto {}", proto_name(head[44])));
    }
    out
}

/// A state, policy or default-policy record in words, never with a key:
/// `esp spi 0x00000100 10.0.0.1 -> 10.0.0.2 transport`, `out 10.0.0.1/32 -> 10.0.0.2/32 block`.
pub fn describe(o: &Object) -> String {
    match o.kind {
        Kind::State => {
            let family = u16_at(&o.head, SA_FAMILY);
            let spi = u32::from_be_bytes([
                o.head[SA_SPI],
                o.head[SA_SPI + 1],
                o.head[SA_SPI + 2],
                o.head[SA_SPI + 3],
            ]);
            format!(
                "{} spi 0x{spi:08x} {} -> {} {}",
                proto_name(o.head[SA_PROTO]),
                ip(family, &o.head[SA_SADDR..SA_SADDR + 16]),
                ip(family, &o.head[SA_DADDR..SA_DADDR + 16]),
                mode_name(o.head[SA_MODE])
            )
        }
        Kind::Policy => {
            let dir = match o.dir() {
                0 => "in".to_string(),
                1 => "out".to_string(),
                2 => "fwd".to_string(),
                d => format!("dir {d}"),
            };
            let action = if o.head[POL_ACTION] == 1 {
                "block"
            } else {
                "allow"
            };
            format!("{dir} {} {action}", selector_text(&o.head))
        }
        Kind::Default => {
            let v = |b: u8| match b {
                1 => "block",
                2 => "accept",
                _ => "unchanged",
            };
            format!(
                "in {}, fwd {}, out {}",
                v(o.head[0]),
                v(o.head[1]),
                v(o.head[2])
            )
        }
    }
}

/// What `netcr show` says of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// "state", "policy" or "default policy".
    pub kind: &'static str,
    /// The object in words ([`describe`]).
    pub object: String,
    /// The settings that tell objects apart, as (name, value): algorithm names, never keys.
    pub fields: Vec<(&'static str, String)>,
}

/// What `netcr show` says of a record: its description and settings, never a key.
pub fn details(rec: &v1::XfrmObject) -> Result<Details, String> {
    let o = Object::decode(rec)?;
    let mut fields = Vec::new();
    match o.kind {
        Kind::State => {
            fields.push(("reqid", u32_at(&o.head, SA_REQID).to_string()));
            for (t, name) in [
                (ALG_CRYPT, "enc"),
                (ALG_AUTH_TRUNC, "auth-trunc"),
                (ALG_AEAD, "aead"),
                (ALG_COMP, "comp"),
            ] {
                if let Some(v) = o.attr(t) {
                    fields.push((name, alg_name(v)));
                }
            }
            if o.attr(ALG_AUTH_TRUNC).is_none() {
                if let Some(v) = o.attr(ALG_AUTH) {
                    fields.push(("auth", alg_name(v)));
                }
            }
        }
        Kind::Policy => {
            fields.push(("priority", u32_at(&o.head, POL_PRIORITY).to_string()));
            fields.push(("index", o.index().to_string()));
            if let Some(t) = o.attr(TMPL) {
                let n = t.len() / TMPL_LEN;
                for k in 0..n {
                    let tm = &t[k * TMPL_LEN..(k + 1) * TMPL_LEN];
                    // struct xfrm_user_tmpl: id (daddr 16, spi 4, proto 1, pad), family at
                    // 24, saddr 28, reqid 44, mode 48.
                    let family = u16_at(tm, 24);
                    fields.push((
                        "tmpl",
                        format!(
                            "{} {} -> {} {} reqid {}",
                            proto_name(tm[20]),
                            ip(family, &tm[28..44]),
                            ip(family, &tm[0..16]),
                            mode_name(tm[48]),
                            u32_at(tm, 44)
                        ),
                    ));
                }
            }
        }
        Kind::Default => {}
    }
    if let Some(m) = o.attr(MARK).and_then(mark_text) {
        fields.push(("mark", m));
    }
    if let Some(v) = o.attr(IF_ID).filter(|v| v.len() == 4) {
        fields.push(("if_id", format!("0x{:x}", u32_at(v, 0))));
    }
    if !rec.dev.is_empty() {
        fields.push(("dev", rec.dev.clone()));
    }
    Ok(Details {
        kind: o.kind.noun(),
        object: describe(&o),
        fields,
    })
}

/// Compared without the replay state (traffic moves its sequence numbers), with devices by
/// name, and without a policy's index unless `index` says it was kept.
fn comparable(o: &Object, index: bool) -> Object {
    let mut o = o.clone();
    o.drop_attrs(&[REPLAY_VAL, REPLAY_ESN_VAL]);
    if o.kind != Kind::Default {
        o.set_sel_ifindex(0);
    }
    if o.kind == Kind::Policy && !index {
        o.head[POL_INDEX..POL_INDEX + 4].fill(0);
    }
    o
}

/// The differences between the image's xfrm objects and those the kernel holds now
/// (`now`, from [`dumped_objects`]): each image object must be there, the same (a policy's
/// index only with `indexes_kept`). Objects the kernel holds besides are not the image's
/// business (an existing namespace's own).
pub fn diffs(
    image: &NetnsImage,
    now: &[(Object, String)],
    indexes_kept: bool,
) -> Result<Vec<String>, String> {
    let by_key: HashMap<Vec<u8>, &(Object, String)> =
        now.iter().map(|e| (e.0.key(&e.1), e)).collect();
    let mut out = Vec::new();
    for rec in &image.xfrm {
        let o = Object::decode(rec)?;
        let what = format!("xfrm {} {}", o.kind.noun(), describe(&o));
        let Some((k, dev)) = by_key.get(&o.key(&rec.dev)).copied() else {
            out.push(format!("{what}: missing"));
            continue;
        };
        if o.kind == Kind::Default {
            if o.head != k.head {
                out.push(format!(
                    "xfrm default policies: image {}, kernel {}",
                    describe(&o),
                    describe(k)
                ));
            }
            continue;
        }
        if *dev != rec.dev {
            out.push(format!(
                "{what}: selector device: image {:?}, kernel {dev:?}",
                rec.dev
            ));
        }
        let (a, b) = (comparable(&o, indexes_kept), comparable(k, indexes_kept));
        if a.head != b.head {
            let at = a
                .head
                .iter()
                .zip(&b.head)
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            out.push(format!(
                "{what}: its settings differ (struct byte {at}{})",
                if o.kind == Kind::Policy && o.index() != k.index() {
                    format!("; index: image {}, kernel {}", o.index(), k.index())
                } else {
                    String::new()
                }
            ));
        }
        let types = |o: &Object| {
            let mut t: Vec<u16> = o.attrs.iter().map(|(t, _)| t & 0x3fff).collect();
            t.sort_unstable();
            t
        };
        if types(&a) != types(&b) {
            out.push(format!(
                "{what}: attributes: image {:?}, kernel {:?}",
                types(&a),
                types(&b)
            ));
        } else {
            for (t, v) in &a.attrs {
                if b.attr(t & 0x3fff) != Some(v.as_slice()) {
                    out.push(format!("{what}: attribute {} differs", t & 0x3fff));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
