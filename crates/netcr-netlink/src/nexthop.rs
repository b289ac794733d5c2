//! Nexthop objects (`ip nexthop`, RTM_NEWNEXTHOP/RTM_DELNEXTHOP/RTM_GETNEXTHOP), which
//! netlink-packet-route 0.34 does not model: `struct nhmsg` and the `NHA_*` attributes of
//! `include/uapi/linux/nexthop.h`, with what netcr does not know kept as raw attributes.
//!
//! Messages travel as [`RawMessage`]s of the types below; [`NexthopMessage`] parses and
//! emits their bodies ([`Parseable`]/[`Emitable`], like netlink-packet-route's messages).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    emit_u16, emit_u32, emit_u64, parse_u16, parse_u32, parse_u64, DecodeError, DefaultNla,
    Emitable, Nla, NlaBuffer, NlasIterator, Parseable, NLA_F_NESTED, NLA_TYPE_MASK,
};

use crate::transport::RawMessage;

/// `RTM_NEWNEXTHOP`: creates a nexthop; the kernel's dump answers with these.
pub const RTM_NEWNEXTHOP: u16 = 104;
/// `RTM_DELNEXTHOP`: deletes a nexthop by id.
pub const RTM_DELNEXTHOP: u16 = 105;
/// `RTM_GETNEXTHOP`: gets one nexthop, or dumps them all with `NLM_F_DUMP`.
pub const RTM_GETNEXTHOP: u16 = 106;

/// `NEXTHOP_GRP_TYPE_MPATH`: a hash-threshold (multipath) group, the default.
pub const NEXTHOP_GRP_TYPE_MPATH: u16 = 0;
/// `NEXTHOP_GRP_TYPE_RES`: a resilient group (fixed buckets).
pub const NEXTHOP_GRP_TYPE_RES: u16 = 1;
/// `NHA_OP_FLAG_DUMP_STATS`: a dump also reports each group's statistics and hw_stats.
pub const NHA_OP_FLAG_DUMP_STATS: u32 = 1;
/// `RTNH_F_ONLINK` in `nh_flags`: the gateway is on the link whatever the addresses say.
pub const RTNH_F_ONLINK: u32 = 4;

const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_GROUP_TYPE: u16 = 3;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const NHA_ENCAP_TYPE: u16 = 7;
const NHA_ENCAP: u16 = 8;
const NHA_GROUPS: u16 = 9;
const NHA_MASTER: u16 = 10;
const NHA_FDB: u16 = 11;
const NHA_RES_GROUP: u16 = 12;
const NHA_OP_FLAGS: u16 = 14;
const NHA_GROUP_STATS: u16 = 15;
const NHA_HW_STATS_ENABLE: u16 = 16;
const NHA_HW_STATS_USED: u16 = 17;

const NHA_RES_GROUP_BUCKETS: u16 = 1;
const NHA_RES_GROUP_IDLE_TIMER: u16 = 2;
const NHA_RES_GROUP_UNBALANCED_TIMER: u16 = 3;
const NHA_RES_GROUP_UNBALANCED_TIME: u16 = 4;

/// Bytes of `struct nhmsg`.
const HEADER_LEN: usize = 8;
/// Bytes of one `struct nexthop_grp`.
const GROUP_ENTRY_LEN: usize = 8;

/// `struct nhmsg`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NexthopHeader {
    /// `nh_family`: AF_INET, AF_INET6, or AF_UNSPEC (groups).
    pub family: u8,
    /// `nh_scope`: reported by the kernel, must be 0 in a request.
    pub scope: u8,
    /// `nh_protocol`: who installed it (RTPROT_*).
    pub protocol: u8,
    /// `resvd`: must be 0.
    pub reserved: u8,
    /// `nh_flags`: RTNH_F_* (onlink; dead and linkdown are the kernel's view).
    pub flags: u32,
}

/// One member of a group (`struct nexthop_grp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexthopGroupEntry {
    /// The member's id.
    pub id: u32,
    /// Its weight, 1..=65536 (the kernel stores weight - 1 in `weight` and, since 6.12,
    /// the high byte in `weight_high`).
    pub weight: u32,
}

/// An attribute of a resilient group (`NHA_RES_GROUP_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResilientAttribute {
    /// Number of buckets (u16).
    Buckets(u16),
    /// Idle timer, clock_t (u32).
    IdleTimer(u32),
    /// Unbalanced timer, clock_t (u32).
    UnbalancedTimer(u32),
    /// How long the group has been unbalanced, clock_t (u64): the kernel's state.
    UnbalancedTime(u64),
    /// Anything else, verbatim.
    Other(DefaultNla),
}

/// An `NHA_*` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NexthopAttribute {
    /// `NHA_ID`.
    Id(u32),
    /// `NHA_GROUP`: the members.
    Group(Vec<NexthopGroupEntry>),
    /// `NHA_GROUP_TYPE`: [`NEXTHOP_GRP_TYPE_MPATH`] or [`NEXTHOP_GRP_TYPE_RES`].
    GroupType(u16),
    /// `NHA_BLACKHOLE`.
    Blackhole,
    /// `NHA_OIF`: the device's index.
    Oif(u32),
    /// `NHA_GATEWAY`: 4 or 16 bytes (an IPv4 nexthop may have an IPv6 gateway).
    Gateway(IpAddr),
    /// `NHA_ENCAP_TYPE`: LWTUNNEL_ENCAP_*.
    EncapType(u16),
    /// `NHA_ENCAP`: the encapsulation's nested attributes, verbatim.
    Encap(Vec<u8>),
    /// `NHA_GROUPS`: dump filter, groups only.
    Groups,
    /// `NHA_MASTER`: dump filter, by master device.
    Master(u32),
    /// `NHA_FDB`: a nexthop of the bridge/vxlan forwarding database.
    Fdb,
    /// `NHA_RES_GROUP`: the parameters of a resilient group.
    ResilientGroup(Vec<ResilientAttribute>),
    /// `NHA_OP_FLAGS`: what a request asks the kernel to report.
    OpFlags(u32),
    /// `NHA_GROUP_STATS`: per-member packet counters, verbatim.
    GroupStats(Vec<u8>),
    /// `NHA_HW_STATS_ENABLE`: whether hardware statistics are collected (u32).
    HwStatsEnable(u32),
    /// `NHA_HW_STATS_USED`: whether a driver collects them (the kernel's state).
    HwStatsUsed(u32),
    /// Anything else, verbatim.
    Other(DefaultNla),
}

/// A nexthop message body: `struct nhmsg` and attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NexthopMessage {
    /// `struct nhmsg`.
    pub header: NexthopHeader,
    /// The attributes, in the kernel's order.
    pub attributes: Vec<NexthopAttribute>,
}

impl NexthopMessage {
    /// The nexthop's id (`NHA_ID`), 0 when absent.
    pub fn id(&self) -> u32 {
        self.attributes
            .iter()
            .find_map(|a| match a {
                NexthopAttribute::Id(id) => Some(*id),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The device index (`NHA_OIF`), if any.
    pub fn oif(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            NexthopAttribute::Oif(i) => Some(*i),
            _ => None,
        })
    }

    /// The gateway (`NHA_GATEWAY`), if any.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.attributes.iter().find_map(|a| match a {
            NexthopAttribute::Gateway(g) => Some(*g),
            _ => None,
        })
    }

    /// The members, when this is a group.
    pub fn group(&self) -> Option<&[NexthopGroupEntry]> {
        self.attributes.iter().find_map(|a| match a {
            NexthopAttribute::Group(g) => Some(g.as_slice()),
            _ => None,
        })
    }

    /// Whether a flag attribute is present.
    pub fn has(&self, flag: &NexthopAttribute) -> bool {
        self.attributes.contains(flag)
    }

    /// This body as the raw message of type `kind` (RTM_NEWNEXTHOP, ...).
    pub fn to_raw(&self, kind: u16) -> RawMessage {
        let mut body = vec![0; self.buffer_len()];
        self.emit(&mut body);
        RawMessage { kind, body }
    }
}

fn emit_nested<T: Emitable>(items: &[T], buffer: &mut [u8]) {
    let mut at = 0;
    for item in items {
        let len = item.buffer_len();
        item.emit(&mut buffer[at..at + len]);
        at += len;
    }
}

fn nested_len<T: Emitable>(items: &[T]) -> usize {
    items.iter().map(Emitable::buffer_len).sum()
}

/// The payload of an attribute kept verbatim.
pub fn raw_value(nla: &DefaultNla) -> Vec<u8> {
    let mut value = vec![0; nla.value_len()];
    nla.emit_value(&mut value);
    value
}

impl Nla for ResilientAttribute {
    fn value_len(&self) -> usize {
        match self {
            Self::Buckets(_) => 2,
            Self::IdleTimer(_) | Self::UnbalancedTimer(_) => 4,
            Self::UnbalancedTime(_) => 8,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Buckets(_) => NHA_RES_GROUP_BUCKETS,
            Self::IdleTimer(_) => NHA_RES_GROUP_IDLE_TIMER,
            Self::UnbalancedTimer(_) => NHA_RES_GROUP_UNBALANCED_TIMER,
            Self::UnbalancedTime(_) => NHA_RES_GROUP_UNBALANCED_TIME,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        // The lengths come from value_len(), so the emitters cannot fail.
        let _ = match self {
            Self::Buckets(v) => emit_u16(buffer, *v),
            Self::IdleTimer(v) | Self::UnbalancedTimer(v) => emit_u32(buffer, *v),
            Self::UnbalancedTime(v) => emit_u64(buffer, *v),
            Self::Other(nla) => {
                nla.emit_value(buffer);
                Ok(())
            }
        };
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for ResilientAttribute {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() & NLA_TYPE_MASK {
            NHA_RES_GROUP_BUCKETS => Self::Buckets(parse_u16(payload)?),
            NHA_RES_GROUP_IDLE_TIMER => Self::IdleTimer(parse_u32(payload)?),
            NHA_RES_GROUP_UNBALANCED_TIMER => Self::UnbalancedTimer(parse_u32(payload)?),
            NHA_RES_GROUP_UNBALANCED_TIME => Self::UnbalancedTime(parse_u64(payload)?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl Nla for NexthopAttribute {
    fn value_len(&self) -> usize {
        match self {
            Self::Id(_)
            | Self::Oif(_)
            | Self::Master(_)
            | Self::OpFlags(_)
            | Self::HwStatsEnable(_)
            | Self::HwStatsUsed(_) => 4,
            Self::Group(entries) => entries.len() * GROUP_ENTRY_LEN,
            Self::GroupType(_) | Self::EncapType(_) => 2,
            Self::Blackhole | Self::Groups | Self::Fdb => 0,
            Self::Gateway(IpAddr::V4(_)) => 4,
            Self::Gateway(IpAddr::V6(_)) => 16,
            Self::Encap(bytes) | Self::GroupStats(bytes) => bytes.len(),
            Self::ResilientGroup(attrs) => nested_len(attrs),
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Id(_) => NHA_ID,
            Self::Group(_) => NHA_GROUP,
            Self::GroupType(_) => NHA_GROUP_TYPE,
            Self::Blackhole => NHA_BLACKHOLE,
            Self::Oif(_) => NHA_OIF,
            Self::Gateway(_) => NHA_GATEWAY,
            Self::EncapType(_) => NHA_ENCAP_TYPE,
            // Nested attributes carry NLA_F_NESTED: strict validation wants it.
            Self::Encap(_) => NHA_ENCAP | NLA_F_NESTED,
            Self::Groups => NHA_GROUPS,
            Self::Master(_) => NHA_MASTER,
            Self::Fdb => NHA_FDB,
            Self::ResilientGroup(_) => NHA_RES_GROUP | NLA_F_NESTED,
            Self::OpFlags(_) => NHA_OP_FLAGS,
            Self::GroupStats(_) => NHA_GROUP_STATS | NLA_F_NESTED,
            Self::HwStatsEnable(_) => NHA_HW_STATS_ENABLE,
            Self::HwStatsUsed(_) => NHA_HW_STATS_USED,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        // The lengths come from value_len(), so the emitters cannot fail.
        let _ = match self {
            Self::Id(v)
            | Self::Oif(v)
            | Self::Master(v)
            | Self::OpFlags(v)
            | Self::HwStatsEnable(v)
            | Self::HwStatsUsed(v) => emit_u32(buffer, *v),
            Self::GroupType(v) | Self::EncapType(v) => emit_u16(buffer, *v),
            Self::Blackhole | Self::Groups | Self::Fdb => Ok(()),
            Self::Group(entries) => {
                for (entry, chunk) in entries.iter().zip(buffer.chunks_exact_mut(GROUP_ENTRY_LEN)) {
                    let stored = entry.weight.saturating_sub(1);
                    chunk[..4].copy_from_slice(&entry.id.to_ne_bytes());
                    chunk[4] = (stored & 0xff) as u8;
                    chunk[5] = ((stored >> 8) & 0xff) as u8;
                    chunk[6..].fill(0);
                }
                Ok(())
            }
            Self::Gateway(IpAddr::V4(ip)) => {
                buffer.copy_from_slice(&ip.octets());
                Ok(())
            }
            Self::Gateway(IpAddr::V6(ip)) => {
                buffer.copy_from_slice(&ip.octets());
                Ok(())
            }
            Self::Encap(bytes) | Self::GroupStats(bytes) => {
                buffer.copy_from_slice(bytes);
                Ok(())
            }
            Self::ResilientGroup(attrs) => {
                emit_nested(attrs, buffer);
                Ok(())
            }
            Self::Other(nla) => {
                nla.emit_value(buffer);
                Ok(())
            }
        };
    }
}

fn parse_group(payload: &[u8]) -> Result<Vec<NexthopGroupEntry>, DecodeError> {
    if payload.len() % GROUP_ENTRY_LEN != 0 {
        return Err(format!(
            "NHA_GROUP of {} bytes is not a whole number of {GROUP_ENTRY_LEN}-byte entries",
            payload.len()
        )
        .into());
    }
    Ok(payload
        .chunks_exact(GROUP_ENTRY_LEN)
        .map(|chunk| {
            let mut id = [0u8; 4];
            id.copy_from_slice(&chunk[..4]);
            NexthopGroupEntry {
                id: u32::from_ne_bytes(id),
                weight: (u32::from(chunk[4]) | (u32::from(chunk[5]) << 8)) + 1,
            }
        })
        .collect())
}

fn parse_gateway(payload: &[u8]) -> Result<IpAddr, DecodeError> {
    match payload.len() {
        4 => {
            let mut v4 = [0u8; 4];
            v4.copy_from_slice(payload);
            Ok(IpAddr::V4(Ipv4Addr::from(v4)))
        }
        16 => {
            let mut v6 = [0u8; 16];
            v6.copy_from_slice(payload);
            Ok(IpAddr::V6(Ipv6Addr::from(v6)))
        }
        n => Err(format!("NHA_GATEWAY of {n} bytes (4 or 16 expected)").into()),
    }
}

fn parse_flag(
    payload: &[u8],
    name: &str,
    flag: NexthopAttribute,
) -> Result<NexthopAttribute, DecodeError> {
    if payload.is_empty() {
        Ok(flag)
    } else {
        Err(format!("{name} carries {} bytes (a flag has none)", payload.len()).into())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for NexthopAttribute {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() & NLA_TYPE_MASK {
            NHA_ID => Self::Id(parse_u32(payload)?),
            NHA_GROUP => Self::Group(parse_group(payload)?),
            NHA_GROUP_TYPE => Self::GroupType(parse_u16(payload)?),
            NHA_BLACKHOLE => parse_flag(payload, "NHA_BLACKHOLE", Self::Blackhole)?,
            NHA_OIF => Self::Oif(parse_u32(payload)?),
            NHA_GATEWAY => Self::Gateway(parse_gateway(payload)?),
            NHA_ENCAP_TYPE => Self::EncapType(parse_u16(payload)?),
            NHA_ENCAP => Self::Encap(payload.to_vec()),
            NHA_GROUPS => parse_flag(payload, "NHA_GROUPS", Self::Groups)?,
            NHA_MASTER => Self::Master(parse_u32(payload)?),
            NHA_FDB => parse_flag(payload, "NHA_FDB", Self::Fdb)?,
            NHA_RES_GROUP => {
                let mut attrs = Vec::new();
                for nla in NlasIterator::new(payload) {
                    attrs.push(ResilientAttribute::parse(&nla?)?);
                }
                Self::ResilientGroup(attrs)
            }
            NHA_OP_FLAGS => Self::OpFlags(parse_u32(payload)?),
            NHA_GROUP_STATS => Self::GroupStats(payload.to_vec()),
            NHA_HW_STATS_ENABLE => Self::HwStatsEnable(parse_u32(payload)?),
            NHA_HW_STATS_USED => Self::HwStatsUsed(parse_u32(payload)?),
            _ => Self::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl Emitable for NexthopMessage {
    fn buffer_len(&self) -> usize {
        HEADER_LEN + nested_len(&self.attributes)
    }

    fn emit(&self, buffer: &mut [u8]) {
        let h = &self.header;
        buffer[0] = h.family;
        buffer[1] = h.scope;
        buffer[2] = h.protocol;
        buffer[3] = h.reserved;
        buffer[4..8].copy_from_slice(&h.flags.to_ne_bytes());
        emit_nested(&self.attributes, &mut buffer[HEADER_LEN..]);
    }
}

impl Parseable<[u8]> for NexthopMessage {
    fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(format!(
                "a nexthop message of {} bytes is shorter than struct nhmsg ({HEADER_LEN})",
                buf.len()
            )
            .into());
        }
        let mut flags = [0u8; 4];
        flags.copy_from_slice(&buf[4..8]);
        let header = NexthopHeader {
            family: buf[0],
            scope: buf[1],
            protocol: buf[2],
            reserved: buf[3],
            flags: u32::from_ne_bytes(flags),
        };
        let mut attributes = Vec::new();
        for nla in NlasIterator::new(&buf[HEADER_LEN..]) {
            attributes.push(NexthopAttribute::parse(&nla?)?);
        }
        Ok(NexthopMessage { header, attributes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip nexthop add id 11 group 1/2,300 type resilient buckets 32 idle_timer 100` as the
    /// kernel dumps it: nhmsg, NHA_ID, NHA_GROUP (weights stored minus one, 300 with
    /// weight_high), NHA_GROUP_TYPE, NHA_RES_GROUP (nested, with NLA_F_NESTED).
    fn resilient_group() -> Vec<u8> {
        let mut b = vec![0, 0, 0, 0, 0, 0, 0, 0];
        b.extend([8, 0, 1, 0, 11, 0, 0, 0]);
        b.extend([20, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 43, 1, 0, 0]);
        b.extend([6, 0, 3, 0, 1, 0, 0, 0]);
        b.extend([40, 0, 12, 0x80]);
        b.extend([6, 0, 1, 0, 32, 0, 0, 0]);
        b.extend([8, 0, 2, 0, 0x10, 0x27, 0, 0]);
        b.extend([8, 0, 3, 0, 0, 0, 0, 0]);
        b.extend([12, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn a_resilient_group_parses_and_emits_the_same_bytes() {
        let bytes = resilient_group();
        let msg = NexthopMessage::parse(bytes.as_slice()).unwrap();
        assert_eq!(msg.id(), 11);
        assert_eq!(
            msg.group().unwrap(),
            &[
                NexthopGroupEntry { id: 1, weight: 1 },
                NexthopGroupEntry { id: 2, weight: 300 }
            ]
        );
        assert!(msg
            .attributes
            .contains(&NexthopAttribute::ResilientGroup(vec![
                ResilientAttribute::Buckets(32),
                ResilientAttribute::IdleTimer(10_000),
                ResilientAttribute::UnbalancedTimer(0),
                ResilientAttribute::UnbalancedTime(0),
            ])));
        let mut again = vec![0; msg.buffer_len()];
        msg.emit(&mut again);
        assert_eq!(again, bytes);
    }

    #[test]
    fn a_gateway_nexthop_with_an_unknown_attribute_keeps_it() {
        let mut b = vec![2, 253, 0, 0, 4, 0, 0, 0];
        b.extend([8, 0, 1, 0, 4, 0, 0, 0]);
        b.extend([8, 0, 6, 0, 10, 9, 9, 9]);
        b.extend([8, 0, 5, 0, 3, 0, 0, 0]);
        b.extend([8, 0, 99, 0, 1, 2, 3, 4]);
        let msg = NexthopMessage::parse(b.as_slice()).unwrap();
        assert_eq!(msg.header.flags, RTNH_F_ONLINK);
        assert_eq!(msg.gateway(), Some("10.9.9.9".parse().unwrap()));
        assert_eq!(msg.oif(), Some(3));
        let NexthopAttribute::Other(nla) = &msg.attributes[3] else {
            panic!("{msg:?}");
        };
        assert_eq!((nla.kind(), raw_value(nla)), (99, vec![1, 2, 3, 4]));
        assert_eq!(msg.to_raw(RTM_NEWNEXTHOP).body, b);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(NexthopMessage::parse([2u8, 0, 0].as_slice()).is_err());
        // An NHA_GROUP of 6 bytes, an NHA_GATEWAY of 3, a flag with a payload.
        for attr in [
            vec![10, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            vec![7, 0, 6, 0, 1, 2, 3, 0],
            vec![5, 0, 4, 0, 1, 0, 0, 0],
            vec![8, 0, 1, 0, 1, 0, 0, 0, 200, 0],
        ] {
            let mut b = vec![2, 0, 0, 0, 0, 0, 0, 0];
            b.extend(attr);
            assert!(NexthopMessage::parse(b.as_slice()).is_err(), "{b:?}");
        }
    }
}
