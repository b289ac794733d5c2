//! The nexthops phase: every nexthop object of the image, after the links are up (the
//! kernel refuses a nexthop over a device that is down) and before the routes that use
//! them. Single nexthops (blackhole and fdb ones too) go first, then the groups made of
//! them, each level in one pipelined batch, every one under its image id.
//!
//! In an existing namespace each nexthop added is journaled and deleted again by id on
//! rollback; in one the restore created, they go with the namespace.

use super::journal::Entry;
use super::session::{annotate, Key, Session};
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

/// Adds every nexthop of the image to target `ns`.
pub(crate) fn add(s: &mut Session<'_>, ns: usize) -> Result<()> {
    if s.image_ns(ns).nexthops.is_empty() {
        return Ok(());
    }
    let existing = s.targets[ns].existing();
    let mut added = 0;
    for level in levels(s, ns)? {
        let warnings: Vec<String> = level
            .iter()
            .flat_map(|c| &c.left_out)
            .map(|what| {
                format!("{what} (the kernel reported it; netcr does not know it) was not restored")
            })
            .collect();
        s.targets[ns].report.warnings.extend(warnings);
        let requests = level.iter().map(nexthops::create_request).collect();
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
                        });
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
