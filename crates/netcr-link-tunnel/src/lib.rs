//! netcr's drivers for IP tunnels and geneve: gre, gretap, ipip, sit, ip6tnl, ip6gre,
//! ip6gretap and geneve, one module each. They share one way of keeping a tunnel: every
//! attribute of its IFLA_INFO_DATA as the kernel dumped it (local, remote, ttl, tos, keys and
//! flags, encapsulation, collect-metadata, ...; unknown ones verbatim), sent back as they
//! were, and the underlay device (IFLA_IPTUN_LINK, IFLA_GRE_LINK) as the link's lower
//! device, inside the namespace or outside, re-attached with `--external KIND[INNER]:OUTER`
//! as a vxlan's is. A tunnel belongs to the namespace it is created in, so one on an
//! outside underlay is created with IFLA_LINK_NETNSID naming the caller's namespace (the
//! kernel makes it there and moves it), never from the caller with IFLA_NET_NS_FD. Each kind module holds its attribute table (names as iproute2 prints
//! them, for `netcr show`) and its driver.
//!
//! The kernel's fallback devices (tunl0, gre0, gretap0, erspan0, sit0, ip6tnl0, ip6gre0),
//! which it makes in every namespace, are skipped by the core: the restored namespace gets
//! its own.

use netcr_core::{DriverError, LowerRef};
use netcr_image::link::v1::{NamedAttr, Tunnel};
use netlink_packet_core::{Nla, NlaBuffer, NlasIterator};
use netlink_packet_route::link::{InfoData, LinkAttribute, LinkMessage};

pub mod geneve;
pub mod gre;
pub mod gretap;
pub mod ip6gre;
pub mod ip6gretap;
pub mod ip6tnl;
pub mod ipip;
pub mod sit;

/// How an attribute's payload reads, for `netcr show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A number of 1, 2 or 4 bytes in host order.
    Num,
    /// A 16-bit number in network order (ports, GRE flags).
    Be16,
    /// A 32-bit number in network order (keys, flow labels), in hex.
    Be32,
    /// An IPv4 or IPv6 address.
    Ip,
    /// Present means on.
    Flag,
}

/// What a kind's driver needs to know of its attributes.
#[derive(Debug)]
pub struct Spec {
    /// IFLA_INFO_KIND.
    pub kind: &'static str,
    /// The attribute naming the underlay device, if the kind has one.
    pub link_attr: Option<u16>,
    /// (type, iproute2's name, payload) of each attribute the kind dumps.
    pub attrs: &'static [(u16, &'static str, Ty)],
}

/// IFLA_IPTUN_* (ipip, sit, ip6tnl), from include/uapi/linux/if_tunnel.h.
pub const IPTUN_ATTRS: &[(u16, &str, Ty)] = &[
    (1, "link", Ty::Num),
    (2, "local", Ty::Ip),
    (3, "remote", Ty::Ip),
    (4, "ttl", Ty::Num),
    (5, "tos", Ty::Num),
    (6, "encaplimit", Ty::Num),
    (7, "flowlabel", Ty::Be32),
    (8, "flags", Ty::Num),
    (9, "proto", Ty::Num),
    (10, "pmtudisc", Ty::Num),
    (11, "6rd_prefix", Ty::Ip),
    (12, "6rd_relay_prefix", Ty::Ip),
    (13, "6rd_prefixlen", Ty::Num),
    (14, "6rd_relay_prefixlen", Ty::Num),
    (15, "encap", Ty::Num),
    (16, "encap_flags", Ty::Num),
    (17, "encap_sport", Ty::Be16),
    (18, "encap_dport", Ty::Be16),
    (19, "external", Ty::Flag),
    (20, "fwmark", Ty::Num),
];

/// IFLA_GRE_* (gre, gretap, ip6gre, ip6gretap).
pub const GRE_ATTRS: &[(u16, &str, Ty)] = &[
    (1, "link", Ty::Num),
    (2, "iflags", Ty::Be16),
    (3, "oflags", Ty::Be16),
    (4, "ikey", Ty::Be32),
    (5, "okey", Ty::Be32),
    (6, "local", Ty::Ip),
    (7, "remote", Ty::Ip),
    (8, "ttl", Ty::Num),
    (9, "tos", Ty::Num),
    (10, "pmtudisc", Ty::Num),
    (11, "encaplimit", Ty::Num),
    (12, "flowlabel", Ty::Be32),
    (13, "flags", Ty::Num),
    (14, "encap", Ty::Num),
    (15, "encap_flags", Ty::Num),
    (16, "encap_sport", Ty::Be16),
    (17, "encap_dport", Ty::Be16),
    (18, "external", Ty::Flag),
    (19, "ignore_df", Ty::Num),
    (20, "fwmark", Ty::Num),
    (21, "erspan_index", Ty::Num),
    (22, "erspan_ver", Ty::Num),
    (23, "erspan_dir", Ty::Num),
    (24, "erspan_hwid", Ty::Num),
];

/// The attribute type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Every attribute of an info data as (type, payload), exactly as it is emitted.
fn raw_attrs(data: Option<&InfoData>) -> Result<Vec<(u16, Vec<u8>)>, DriverError> {
    let Some(data) = data else {
        return Ok(Vec::new());
    };
    let mut bytes = vec![0; data.value_len()];
    data.emit_value(&mut bytes);
    NlasIterator::new(bytes.as_slice())
        .map(|nla| {
            let nla: NlaBuffer<&[u8]> =
                nla.map_err(|e| DriverError::new(format!("info data does not parse: {e}")))?;
            Ok((nla.kind() & NLA_TYPE_MASK, nla.value().to_vec()))
        })
        .collect()
}

fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.try_into().ok()?))
}

impl Spec {
    fn name(&self, kind: u16) -> &'static str {
        self.attrs
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, n, _)| *n)
            .unwrap_or("")
    }

    /// The config of a dumped tunnel: every attribute but the underlay device's.
    pub fn dump(&self, data: Option<&InfoData>, link: &LinkMessage) -> Result<Tunnel, DriverError> {
        let mut cfg = Tunnel::default();
        for (kind, value) in raw_attrs(data)? {
            if Some(kind) == self.link_attr {
                continue;
            }
            cfg.options.push(NamedAttr {
                kind: kind.into(),
                name: self.name(kind).to_string(),
                value,
            });
        }
        let outside = link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::LinkNetNsId(_)));
        cfg.netns_outside = outside && self.underlay_index(data).is_none();
        Ok(cfg)
    }

    fn underlay_index(&self, data: Option<&InfoData>) -> Option<u32> {
        let link_attr = self.link_attr?;
        raw_attrs(data)
            .ok()?
            .into_iter()
            .find(|(k, _)| *k == link_attr)
            .and_then(|(_, v)| u32_of(&v))
            .filter(|i| *i != 0)
    }

    /// Where the underlay device of a dumped tunnel is.
    pub fn underlay(&self, data: Option<&InfoData>) -> LowerRef {
        LowerRef::from(self.underlay_index(data))
    }

    /// The IFLA_INFO_DATA that recreates `cfg` on the underlay device `underlay` (an index
    /// in the namespace the request goes to); refuses a malformed or unrestorable config.
    pub fn request(&self, cfg: &Tunnel, underlay: Option<u32>) -> Result<InfoData, DriverError> {
        if cfg.netns_outside {
            return Err(DriverError::new(
                "its underlay lived in another namespace and it had no underlay device, so \
                 nothing tells which namespace to put it in; give it an underlay device (dev) \
                 or create it inside the namespace",
            ));
        }
        let mut attrs: Vec<(u16, &[u8])> = Vec::with_capacity(cfg.options.len() + 1);
        let index;
        if let (Some(i), Some(link_attr)) = (underlay, self.link_attr) {
            index = i.to_ne_bytes();
            attrs.push((link_attr, &index));
        } else if underlay.is_some() {
            return Err(DriverError::new(format!(
                "a {} has no underlay device",
                self.kind
            )));
        }
        for attr in &cfg.options {
            let kind = u16::try_from(attr.kind).unwrap_or(0);
            if kind == 0 || kind > NLA_TYPE_MASK || Some(kind) == self.link_attr {
                return Err(DriverError::new(format!(
                    "attribute {} ({}) is malformed",
                    attr.kind, attr.name
                )));
            }
            if attr.value.len() > 512 {
                return Err(DriverError::new(format!(
                    "attribute {} ({}) has {} bytes",
                    attr.kind,
                    attr.name,
                    attr.value.len()
                )));
            }
            attrs.push((kind, &attr.value));
        }
        let mut bytes = Vec::new();
        for (kind, value) in attrs {
            let len = 4 + value.len();
            bytes.extend_from_slice(&(len as u16).to_ne_bytes());
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(value);
            bytes.resize(bytes.len().next_multiple_of(4), 0);
        }
        Ok(InfoData::Other(bytes))
    }

    /// The config as readable pairs, for `netcr show`; validates it too.
    pub fn show(&self, cfg: &Tunnel) -> Result<Vec<(String, String)>, DriverError> {
        self.request(
            &Tunnel {
                netns_outside: false,
                ..cfg.clone()
            },
            None,
        )?;
        let mut out: Vec<(String, String)> = cfg.options.iter().map(|a| self.display(a)).collect();
        if cfg.netns_outside {
            out.push((
                "netns".into(),
                "another one, without an underlay device (cannot be restored)".into(),
            ));
        }
        Ok(out)
    }

    fn display(&self, attr: &NamedAttr) -> (String, String) {
        let spec = self
            .attrs
            .iter()
            .find(|(k, _, _)| u32::from(*k) == attr.kind);
        let name = match spec {
            Some((_, n, _)) => n.to_string(),
            None => format!("attr{}", attr.kind),
        };
        let v = attr.value.as_slice();
        let text = match (spec.map(|s| s.2), v.len()) {
            (Some(Ty::Num), 1) => v[0].to_string(),
            (Some(Ty::Num), 2) => u16::from_ne_bytes([v[0], v[1]]).to_string(),
            (Some(Ty::Num), 4) => u32::from_ne_bytes([v[0], v[1], v[2], v[3]]).to_string(),
            (Some(Ty::Be16), 2) => format!("{:#x}", u16::from_be_bytes([v[0], v[1]])),
            (Some(Ty::Be32), 4) => format!("{:#x}", u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            (Some(Ty::Ip), 4) => std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3]).to_string(),
            (Some(Ty::Ip), 16) => {
                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(v).expect("16 bytes")).to_string()
            }
            (Some(Ty::Flag), 0) => "on".into(),
            _ if v.is_empty() => "-".into(),
            _ => v.iter().map(|b| format!("{b:02x}")).collect(),
        };
        (name, text)
    }
}

/// Defines a kind's driver on its [`Spec`].
macro_rules! tunnel_driver {
    ($(#[$doc:meta])* $driver:ident, $spec:expr) => {
        $(#[$doc])*
        pub struct $driver;

        netcr_core::register_driver!($driver);

        impl netcr_core::KindDriver for $driver {
            const KIND: &'static str = $spec.kind;
            const LOWER_VIA_NSID: bool = true;
            type Config = netcr_image::link::v1::Tunnel;

            fn dump_config(
                &self,
                data: Option<&netlink_packet_route::link::InfoData>,
                link: &netlink_packet_route::link::LinkMessage,
                _cx: &netcr_core::DumpCx<'_>,
            ) -> Result<Self::Config, netcr_core::DriverError> {
                $spec.dump(data, link)
            }

            fn lower_in_data(
                &self,
                data: Option<&netlink_packet_route::link::InfoData>,
            ) -> netcr_core::LowerRef {
                $spec.underlay(data)
            }

            fn request_data(
                &self,
                cfg: Self::Config,
                cx: &mut netcr_core::RestoreCx<'_>,
            ) -> Result<Option<netlink_packet_route::link::InfoData>, netcr_core::DriverError>
            {
                $spec.request(&cfg, cx.lower_index).map(Some)
            }

            fn show(
                &self,
                cfg: &Self::Config,
            ) -> Result<Vec<(String, String)>, netcr_core::DriverError> {
                $spec.show(cfg)
            }
        }
    };
}
pub(crate) use tunnel_driver;

#[cfg(test)]
mod tests;
