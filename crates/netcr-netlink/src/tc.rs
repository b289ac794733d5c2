//! Traffic control messages (`struct tcmsg` and `TCA_*` attributes): the constants the core
//! needs to dump, re-create and delete qdiscs, classes and filters. They travel as
//! [`RawMessage`](crate::RawMessage)s (see [`RAW_MESSAGE_TYPES`](crate::RAW_MESSAGE_TYPES)),
//! so options netcr does not parse come back byte for byte.

/// Creates a qdisc.
pub const RTM_NEWQDISC: u16 = 36;
/// Deletes a qdisc (and everything under it).
pub const RTM_DELQDISC: u16 = 37;
/// Dumps qdiscs.
pub const RTM_GETQDISC: u16 = 38;
/// Creates a class.
pub const RTM_NEWTCLASS: u16 = 40;
/// Deletes a class.
pub const RTM_DELTCLASS: u16 = 41;
/// Dumps classes.
pub const RTM_GETTCLASS: u16 = 42;
/// Creates a filter.
pub const RTM_NEWTFILTER: u16 = 44;
/// Deletes a filter.
pub const RTM_DELTFILTER: u16 = 45;
/// Dumps filters.
pub const RTM_GETTFILTER: u16 = 46;
/// Creates a filter chain.
pub const RTM_NEWCHAIN: u16 = 100;
/// Deletes a filter chain.
pub const RTM_DELCHAIN: u16 = 101;
/// Dumps filter chains.
pub const RTM_GETCHAIN: u16 = 102;

/// Creates an action.
pub const RTM_NEWACTION: u16 = 48;
/// Deletes an action.
pub const RTM_DELACTION: u16 = 49;
/// Dumps actions (of one kind).
pub const RTM_GETACTION: u16 = 50;
/// `TCA_ACT_TAB` in an action message (after `struct tcamsg`, 4 bytes): the actions.
pub const TCA_ACT_TAB: u16 = 1;

/// `sizeof(struct tcmsg)`: family, padding, ifindex, handle, parent, info.
pub const TCMSG_LEN: usize = 20;

/// `TCA_KIND`: the qdisc, class or filter kind.
pub const TCA_KIND: u16 = 1;
/// `TCA_OPTIONS`: the kind's own attributes.
pub const TCA_OPTIONS: u16 = 2;
/// `TCA_STATS`: statistics (old layout).
pub const TCA_STATS: u16 = 3;
/// `TCA_XSTATS`: the kind's statistics.
pub const TCA_XSTATS: u16 = 4;
/// `TCA_RATE`: a rate estimator.
pub const TCA_RATE: u16 = 5;
/// `TCA_FCNT`: a filter count.
pub const TCA_FCNT: u16 = 6;
/// `TCA_STATS2`: statistics.
pub const TCA_STATS2: u16 = 7;
/// `TCA_STAB`: a size table.
pub const TCA_STAB: u16 = 8;
/// `TCA_PAD`: alignment.
pub const TCA_PAD: u16 = 9;
/// `TCA_DUMP_INVISIBLE`: asks a qdisc dump for the qdiscs `tc` hides too.
pub const TCA_DUMP_INVISIBLE: u16 = 10;
/// `TCA_CHAIN`: a filter's chain.
pub const TCA_CHAIN: u16 = 11;
/// `TCA_HW_OFFLOAD`: whether a qdisc is offloaded.
pub const TCA_HW_OFFLOAD: u16 = 12;
/// `TCA_INGRESS_BLOCK`: a shared block's index.
pub const TCA_INGRESS_BLOCK: u16 = 13;
/// `TCA_EGRESS_BLOCK`: a shared block's index.
pub const TCA_EGRESS_BLOCK: u16 = 14;
/// `TCA_DUMP_FLAGS`: dump options.
pub const TCA_DUMP_FLAGS: u16 = 15;
/// `TCA_EXT_WARN_MSG`: a warning the kernel attaches.
pub const TCA_EXT_WARN_MSG: u16 = 16;

/// `TC_H_ROOT`: the parent of a device's root qdisc.
pub const TC_H_ROOT: u32 = 0xffff_ffff;
/// `TC_H_INGRESS` (= `TC_H_CLSACT`): the parent of an ingress or clsact qdisc.
pub const TC_H_INGRESS: u32 = 0xffff_fff1;
/// `TC_H_MIN_INGRESS`: the minor of an ingress or clsact qdisc's ingress filters.
pub const TC_H_MIN_INGRESS: u32 = 0xfff2;
/// `TC_H_MIN_EGRESS`: the minor of a clsact qdisc's egress filters.
pub const TC_H_MIN_EGRESS: u32 = 0xfff3;

/// `TCA_ACT_KIND` in an action.
pub const TCA_ACT_KIND: u16 = 1;
/// `TCA_ACT_OPTIONS` in an action.
pub const TCA_ACT_OPTIONS: u16 = 2;
/// `TCA_ACT_INDEX` in an action.
pub const TCA_ACT_INDEX: u16 = 3;
/// `TCA_ACT_STATS` in an action.
pub const TCA_ACT_STATS: u16 = 4;
/// `TCA_ACT_PAD` in an action.
pub const TCA_ACT_PAD: u16 = 5;
/// `TCA_ACT_USED_HW_STATS` in an action.
pub const TCA_ACT_USED_HW_STATS: u16 = 9;
/// `TCA_ACT_IN_HW_COUNT` in an action.
pub const TCA_ACT_IN_HW_COUNT: u16 = 10;

/// The handle's major number (`TC_H_MAJ`).
pub fn major(handle: u32) -> u32 {
    handle & 0xffff_0000
}

/// The handle's minor number (`TC_H_MIN`).
pub fn minor(handle: u32) -> u32 {
    handle & 0xffff
}

/// A handle as `tc` writes it: `1:`, `1:10`, `root`, `ingress`.
pub fn handle_text(handle: u32) -> String {
    match handle {
        TC_H_ROOT => "root".into(),
        TC_H_INGRESS => "ingress".into(),
        h if minor(h) == 0 => format!("{:x}:", h >> 16),
        h => format!("{:x}:{:x}", h >> 16, minor(h)),
    }
}

/// The fields of a `struct tcmsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcHeader {
    /// `tcm_family`.
    pub family: u8,
    /// `tcm_ifindex`.
    pub ifindex: u32,
    /// `tcm_handle`.
    pub handle: u32,
    /// `tcm_parent`.
    pub parent: u32,
    /// `tcm_info`: a filter's priority (high 16 bits) and protocol (low, network order).
    pub info: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl TcHeader {
    /// Parses the header at the start of `body`, if it is long enough.
    pub fn parse(body: &[u8]) -> Option<TcHeader> {
        (body.len() >= TCMSG_LEN).then(|| TcHeader {
            family: body[0],
            ifindex: u32_at(body, 4),
            handle: u32_at(body, 8),
            parent: u32_at(body, 12),
            info: u32_at(body, 16),
        })
    }

    /// The 20 bytes of the header.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; TCMSG_LEN];
        b[0] = self.family;
        b[4..8].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[8..12].copy_from_slice(&self.handle.to_ne_bytes());
        b[12..16].copy_from_slice(&self.parent.to_ne_bytes());
        b[16..20].copy_from_slice(&self.info.to_ne_bytes());
        b
    }
}
