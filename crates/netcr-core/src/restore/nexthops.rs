//! The nexthops phase: every nexthop object of the image, after the links are up (the
//! kernel refuses a nexthop over a device that is down) and before the routes that use
//! them. Single nexthops (blackhole and fdb ones too) go first, then the groups made of
//! them, each level in one pipelined batch, every one under its image id.
//!
//! In an existing namespace each nexthop added is journaled and deleted again by id on
//! rollback; in one the restore created, they go with the namespace.

use netcr_netlink::Request;
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::journal::Entry;
use super::session::{annotate, check, Key, Session};
use crate::error::{CoreError, Result};
use crate::nexthops::{self, Creation};

/// The creations of the image's nexthops of target `ns`: single nexthops, then groups.
fn levels(s: &Session<'_>, ns: usize) -> Result<[Vec<Creation>; 2]> {
    let target = &s.targets[ns];
    let index_of = |dev: &str| target.index.get(dev).copied();
    let mut singles = Vec::new();
    let mut groups = Vec::new();
    for rec in &s.image_ns(ns).nexthops {
        let creation = nexthops::creation(rec, &index_of).map_err(CoreError::Refused)?;
        if nexthops::is_group(&creation.message) {
            groups.push(creation);
        } else {
            singles.push(creation);
        }
    }
    Ok([singles, groups])
}

/// lo's index in target `ns` when the image has it down and holds a blackhole nexthop. The
/// kernel makes blackhole nexthops over lo and refuses one while lo is down, yet keeps it
/// when lo goes down afterwards, so an image can hold both.
fn lo_down_under_blackholes(s: &Session<'_>, ns: usize, levels: &[Vec<Creation>]) -> Option<u32> {
    let blackhole = levels.iter().flatten().any(|c| {
        c.message
            .has(&netcr_netlink::nexthop::NexthopAttribute::Blackhole)
    });
    let lo = s.links(ns).iter().find(|l| crate::common::is_loopback(l))?;
    let down = lo.flags & LinkFlags::Up.bits() == 0;
    (blackhole && down).then(|| s.targets[ns].index.get(&lo.name).copied())?
}

/// Sets lo (index `lo`) of target `ns` up or down. In an existing namespace the links
/// phase journaled lo as it was, so a rollback puts it back either way.
fn set_lo(s: &mut Session<'_>, ns: usize, lo: u32, up: bool) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = lo;
    msg.header.change_mask = LinkFlags::Up;
    msg.header.flags = if up {
        LinkFlags::Up
    } else {
        LinkFlags::empty()
    };
    let what = if up {
        "bringing lo up for the blackhole nexthops"
    } else {
        "taking lo down again, as in the image"
    };
    check(s.send(
        Key::Target(ns),
        vec![Request::change(RouteNetlinkMessage::SetLink(msg), what)],
    )?)
}

/// Adds every nexthop of the image to target `ns`.
pub(crate) fn add(s: &mut Session<'_>, ns: usize) -> Result<()> {
    if s.image_ns(ns).nexthops.is_empty() {
        return Ok(());
    }
    let levels = levels(s, ns)?;
    let lo_down = lo_down_under_blackholes(s, ns, &levels);
    if let Some(lo) = lo_down {
        set_lo(s, ns, lo, true)?;
    }
    add_levels(s, ns, levels)?;
    if let Some(lo) = lo_down {
        set_lo(s, ns, lo, false)?;
    }
    Ok(())
}

/// Adds single nexthops, then groups, each level in one batch.
fn add_levels(s: &mut Session<'_>, ns: usize, levels: [Vec<Creation>; 2]) -> Result<()> {
    let existing = s.targets[ns].existing();
    let mut added = 0;
    for level in levels {
        let warnings: Vec<String> = level
            .iter()
            .flat_map(|c| &c.left_out)
            .map(|what| {
                format!("{what} (the kernel reported it; netcr does not know it) was not restored")
            })
            .collect();
        s.targets[ns].report.warnings.extend(warnings);
        let requests = level.iter().map(nexthops::create_request).collect();
        if existing {
            for creation in &level {
                s.journal.intend(&Entry::NexthopAdded {
                    ns,
                    id: creation.id,
                })?;
            }
        }
        let replies = s.send_raw(Key::Target(ns), requests)?;
        let mut first_err = None;
        for (reply, creation) in replies.into_iter().zip(&level) {
            match reply {
                Ok(_) => {
                    added += 1;
                    if existing {
                        s.journal.push(Entry::NexthopAdded {
                            ns,
                            id: creation.id,
                        })?;
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(annotate(e));
        }
    }
    s.targets[ns].report.nexthops = added;
    Ok(())
}
