//! Sysctls: the namespace's own (through /proc/sys/net inside it) and each device's (IPv4
//! over netlink with the link, IPv6 through /proc where they differ).

use std::collections::HashMap;

use netcr_image::v1;
use netcr_netlink::Request;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;

use super::journal::Entry;
use super::session::{check, Key, Session};
use crate::common;
use crate::error::{CoreError, Result};
use crate::sysctl;

/// The namespace's own settings, first: `conf/default` shapes every device made next. Those
/// the kernel does not have or will not take are warnings and left out of verification.
pub(crate) fn namespace_wide(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let wanted = &s.image_ns(ns).netns.sysctls;
    let netns = s.netns(Key::Target(ns))?;
    // Each value as it is now, journaled before any is written: writing one back that was
    // never changed changes nothing.
    let names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
    let before: Vec<(String, String)> = sysctl::read_named(netns, &names)?
        .into_iter()
        .filter(|now| {
            wanted
                .iter()
                .any(|w| w.name == now.name && w.value != now.value)
        })
        .map(|now| (now.name, now.value))
        .collect();
    if !before.is_empty() {
        s.journal.intend(&Entry::NetnsSysctls {
            ns,
            changed: before,
        })?;
    }
    let written = sysctl::write_netns(s.netns(Key::Target(ns))?, wanted)?;
    if !written.changed.is_empty() {
        s.journal.push(Entry::NetnsSysctls {
            ns,
            changed: written.changed,
        })?;
    }
    let target = &mut s.targets[ns];
    target.sysctls_left_out.extend(written.left_out);
    target.report.warnings.extend(written.warnings);
    match written.error {
        Some(e) => Err(CoreError::Refused(e)),
        None => Ok(()),
    }
}

/// Each device's own settings, before addresses: `disable_ipv6` decides whether IPv6 ones
/// stick. Only values that differ from what the new device has are written.
pub(crate) fn per_device(s: &mut Session<'_>, ns: usize) -> Result<()> {
    let target = &s.targets[ns];
    let by_name: HashMap<&str, &v1::Link> =
        s.links(ns).iter().map(|l| (l.name.as_str(), l)).collect();
    let mut requests = Vec::new();
    let mut ipv6 = Vec::new();
    for now in &target.links_now {
        let name = common::parse(now).name;
        let Some(link) = by_name.get(name) else {
            continue;
        };
        let (v4, v6) = sysctl::devconf_of(now);
        if let Some(request) = ipv4_request(now, &link.ipv4_devconf, &v4, "setting") {
            requests.push(request);
        }
        for (file, value) in sysctl::device_ipv6_writes(link, &v6) {
            ipv6.push((name.to_string(), file, value));
        }
    }
    check(s.send(Key::Target(ns), requests)?)?;
    let warnings = sysctl::write_ipv6(s.netns(Key::Target(ns))?, &ipv6)?;
    s.targets[ns].report.warnings.extend(warnings);
    Ok(())
}

/// The RTM_SETLINK that sets `link`'s IPv4 settings from `have` to `want`, if they differ.
pub(crate) fn ipv4_request(
    link: &LinkMessage,
    want: &[i32],
    have: &[i32],
    verb: &str,
) -> Option<Request> {
    let attr = sysctl::ipv4_request(want, have)?;
    let mut msg = LinkMessage::default();
    msg.header.index = link.header.index;
    msg.attributes.push(attr);
    Some(Request::change(
        RouteNetlinkMessage::SetLink(msg),
        format!(
            "{verb} the IPv4 sysctls of \"{}\"",
            common::parse(link).name
        ),
    ))
}
