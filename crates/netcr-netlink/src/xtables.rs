//! Legacy x_tables (iptables, ip6tables, arptables): which tables a namespace has and whether
//! any holds more than a fresh table does. The kernel lists a namespace's tables in
//! `/proc/net/{ip,ip6,arp}_tables_names`; only listed tables are asked about
//! (`IPT_SO_GET_INFO`/`GET_ENTRIES` on a raw socket), since asking about another one would
//! create it in the namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Which x_tables a table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XtFamily {
    /// iptables (IPv4).
    Ipv4,
    /// ip6tables.
    Ipv6,
    /// arptables.
    Arp,
}

impl XtFamily {
    /// The command that manages it.
    pub fn command(self) -> &'static str {
        match self {
            XtFamily::Ipv4 => "iptables",
            XtFamily::Ipv6 => "ip6tables",
            XtFamily::Arp => "arptables",
        }
    }

    fn layout(self) -> Layout {
        match self {
            XtFamily::Ipv4 => Layout {
                names: "ip_tables_names",
                domain: libc::AF_INET,
                level: libc::IPPROTO_IP,
                get_info: 64,
                get_entries: 65,
                hooks: IP_HOOKS,
                entry_size: 112,
                target_offset_at: 88,
            },
            XtFamily::Ipv6 => Layout {
                names: "ip6_tables_names",
                domain: libc::AF_INET6,
                level: libc::IPPROTO_IPV6,
                get_info: 64,
                get_entries: 65,
                hooks: IP_HOOKS,
                entry_size: 168,
                target_offset_at: 140,
            },
            XtFamily::Arp => Layout {
                names: "arp_tables_names",
                domain: libc::AF_INET,
                level: libc::IPPROTO_IP,
                get_info: 96,
                get_entries: 97,
                hooks: &["INPUT", "OUTPUT", "FORWARD"],
                entry_size: 192,
                target_offset_at: 164,
            },
        }
    }
}

/// The built-in chains of iptables and ip6tables, by hook number.
const IP_HOOKS: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// The kernel's structures for one family (checked against its uapi headers).
struct Layout {
    names: &'static str,
    domain: libc::c_int,
    level: libc::c_int,
    get_info: libc::c_int,
    get_entries: libc::c_int,
    hooks: &'static [&'static str],
    /// `sizeof(struct ipt_entry)` (ip6t_entry, arpt_entry).
    entry_size: usize,
    /// `offsetof(struct ipt_entry, target_offset)`.
    target_offset_at: usize,
}

/// `XT_TABLE_MAXNAMELEN`.
const NAME_LEN: usize = 32;
/// `offsetof(struct ipt_get_entries, entrytable)` (the same for all three).
const ENTRIES_AT: usize = 40;
/// `sizeof(struct xt_entry_target)`: the verdict of a standard target follows it.
const TARGET_HEADER: usize = 32;
/// A standard target's verdict for ACCEPT (`-NF_ACCEPT - 1`).
const VERDICT_ACCEPT: i32 = -2;

/// One legacy table of a namespace, and how it differs from a fresh one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTable {
    /// iptables, ip6tables or arptables.
    pub family: XtFamily,
    /// "filter", "nat", ...
    pub name: String,
    /// Entries beyond the built-in chains' policies: rules, and the head and tail of each
    /// user chain.
    pub extra_entries: u32,
    /// Built-in chains whose policy is not ACCEPT: (chain, policy).
    pub policies: Vec<(String, String)>,
}

impl LegacyTable {
    /// True when the table holds nothing a fresh one would not: no rules, no user chains,
    /// every policy ACCEPT.
    pub fn is_pristine(&self) -> bool {
        self.extra_entries == 0 && self.policies.is_empty()
    }
}

/// The legacy tables of `netns` (iptables, ip6tables and arptables; those the kernel has).
pub fn legacy_tables(netns: &Netns) -> Result<Vec<LegacyTable>> {
    netns.run(|| {
        let mut out = Vec::new();
        for family in [XtFamily::Ipv4, XtFamily::Ipv6, XtFamily::Arp] {
            let layout = family.layout();
            // /proc/net is the main thread's namespace; this thread's is thread-self's.
            let path = format!("/proc/thread-self/net/{}", layout.names);
            let names = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(netns, &format!("reading {path}"), e.to_string())),
            };
            for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
                out.push(read_table(netns, family, &layout, name)?);
            }
        }
        Ok(out)
    })?
}

fn err(netns: &Netns, context: &str, detail: String) -> Error {
    Error::Protocol {
        context: context.to_string(),
        netns: netns.label().to_string(),
        detail,
    }
}

fn read_table(netns: &Netns, family: XtFamily, l: &Layout, name: &str) -> Result<LegacyTable> {
    let context = format!("reading {} table {name:?}", family.command());
    if name.len() >= NAME_LEN {
        return Err(err(netns, &context, "the table name is too long".into()));
    }
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            l.domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(Error::Socket {
            netns: netns.label().to_string(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: fd is a new, valid descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // The table can change between the two calls (EAGAIN): ask again.
    for _ in 0..8 {
        let mut info = vec![0u8; NAME_LEN + 4 + 4 * 2 * l.hooks.len() + 8];
        info[..name.len()].copy_from_slice(name.as_bytes());
        getsockopt(&socket, l.level, l.get_info, &mut info)
            .map_err(|e| err(netns, &context, e.to_string()))?;
        let info = Info::parse(&info, l.hooks.len());
        let mut entries = vec![0u8; ENTRIES_AT + info.size as usize];
        entries[..name.len()].copy_from_slice(name.as_bytes());
        entries[NAME_LEN..NAME_LEN + 4].copy_from_slice(&info.size.to_ne_bytes());
        match getsockopt(&socket, l.level, l.get_entries, &mut entries) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(err(netns, &context, e.to_string())),
        }
        let table = examine(family, l, name, &info, &entries[ENTRIES_AT..])
            .map_err(|detail| err(netns, &context, detail))?;
        return Ok(table);
    }
    Err(err(
        netns,
        &context,
        "the table kept changing while it was read".into(),
    ))
}

fn getsockopt(
    socket: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for len bytes, and the kernel writes at most len bytes.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `struct ipt_getinfo` (and its ip6t/arpt twins), past the name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Info {
    valid_hooks: u32,
    underflow: Vec<u32>,
    num_entries: u32,
    size: u32,
}

impl Info {
    fn parse(buf: &[u8], hooks: usize) -> Info {
        let u32_at = |i: usize| {
            buf.get(i..i + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(0)
        };
        let underflow_at = NAME_LEN + 4 + 4 * hooks;
        Info {
            valid_hooks: u32_at(NAME_LEN),
            underflow: (0..hooks).map(|h| u32_at(underflow_at + 4 * h)).collect(),
            num_entries: u32_at(underflow_at + 4 * hooks),
            size: u32_at(underflow_at + 4 * hooks + 4),
        }
    }
}

/// Compares a table's entries with a fresh table's: one policy entry per built-in chain and
/// the closing error entry, every policy ACCEPT.
fn examine(
    family: XtFamily,
    l: &Layout,
    name: &str,
    info: &Info,
    blob: &[u8],
) -> std::result::Result<LegacyTable, String> {
    let mut policies = Vec::new();
    let mut hooks = 0;
    for (h, chain) in l.hooks.iter().enumerate() {
        if info.valid_hooks & (1 << h) == 0 {
            continue;
        }
        hooks += 1;
        let entry = info.underflow[h] as usize;
        let at = entry + l.target_offset_at;
        let target_offset = blob
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| {
                format!(
                    "the {chain} policy lies past the table's {} bytes",
                    blob.len()
                )
            })?;
        if target_offset < l.entry_size {
            return Err(format!(
                "the {chain} policy's target lies inside its entry (offset {target_offset})"
            ));
        }
        let target = entry + target_offset;
        let verdict_at = target + TARGET_HEADER;
        let verdict = blob
            .get(verdict_at..verdict_at + 4)
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| {
                format!(
                    "the {chain} policy lies past the table's {} bytes",
                    blob.len()
                )
            })?;
        if verdict != VERDICT_ACCEPT {
            let policy = match verdict {
                -1 => "DROP".to_string(),
                v => format!("verdict {v}"),
            };
            policies.push((chain.to_string(), policy));
        }
    }
    Ok(LegacyTable {
        family,
        name: name.to_string(),
        extra_entries: info.num_entries.saturating_sub(hooks + 1),
        policies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A fresh IPv4 filter table as the kernel lays it out: INPUT, FORWARD, OUTPUT policy
    /// entries (a standard target each), then the error entry.
    fn filter_blob(verdicts: [i32; 3]) -> (Info, Vec<u8>) {
        let l = XtFamily::Ipv4.layout();
        let standard = l.entry_size + 40;
        let mut blob = Vec::new();
        let mut underflow = vec![0; 5];
        for (i, hook) in [1usize, 2, 3].into_iter().enumerate() {
            underflow[hook] = blob.len() as u32;
            let mut entry = vec![0u8; standard];
            entry[l.target_offset_at..l.target_offset_at + 2]
                .copy_from_slice(&(l.entry_size as u16).to_ne_bytes());
            let v = l.entry_size + TARGET_HEADER;
            entry[v..v + 4].copy_from_slice(&verdicts[i].to_ne_bytes());
            blob.extend(entry);
        }
        blob.extend(vec![0u8; l.entry_size + 64]);
        let info = Info {
            valid_hooks: 0b1110,
            underflow,
            num_entries: 4,
            size: blob.len() as u32,
        };
        (info, blob)
    }

    fn examine_filter(info: &Info, blob: &[u8]) -> std::result::Result<LegacyTable, String> {
        examine(
            XtFamily::Ipv4,
            &XtFamily::Ipv4.layout(),
            "filter",
            info,
            blob,
        )
    }

    #[rstest]
    fn a_fresh_table_is_pristine() {
        let (info, blob) = filter_blob([-2, -2, -2]);
        let t = examine_filter(&info, &blob).unwrap();
        assert!(t.is_pristine(), "{t:?}");
    }

    #[rstest]
    fn a_drop_policy_and_rules_are_seen() {
        let (mut info, blob) = filter_blob([-1, -2, -2]);
        info.num_entries = 6;
        let t = examine_filter(&info, &blob).unwrap();
        assert_eq!(t.extra_entries, 2);
        assert_eq!(t.policies, vec![("INPUT".to_string(), "DROP".to_string())]);
    }

    #[rstest]
    fn offsets_past_the_blob_are_errors() {
        let (mut info, blob) = filter_blob([-2, -2, -2]);
        info.underflow[1] = 1 << 20;
        assert!(examine_filter(&info, &blob).is_err());
    }

    #[rstest]
    fn getinfo_parses_like_the_kernel_lays_it_out() {
        // struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5],
        // num_entries, size: 84 bytes.
        let mut buf = vec![0u8; 84];
        buf[32..36].copy_from_slice(&0b1110u32.to_ne_bytes());
        buf[56 + 4..56 + 8].copy_from_slice(&152u32.to_ne_bytes());
        buf[76..80].copy_from_slice(&4u32.to_ne_bytes());
        buf[80..84].copy_from_slice(&656u32.to_ne_bytes());
        let info = Info::parse(&buf, 5);
        assert_eq!(info.valid_hooks, 0b1110);
        assert_eq!(info.underflow[1], 152);
        assert_eq!((info.num_entries, info.size), (4, 656));
    }
}
