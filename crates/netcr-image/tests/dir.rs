//! Image directories: atomic commit, replacement, cleanup, refusals, and whole-image reads.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use netcr_image::dir::{file_name, INVENTORY_FILE};
use netcr_image::{v1, FileKind, Image, ImageError, ImageWriter, WriteOptions};
use rstest::rstest;

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn expected_files(ids: &[u32]) -> BTreeSet<String> {
    let mut files = BTreeSet::from([INVENTORY_FILE.to_owned()]);
    for &id in ids {
        for kind in &FileKind::ALL[1..] {
            files.insert(file_name(*kind, id));
        }
    }
    files
}

#[test]
fn file_names() {
    assert_eq!(file_name(FileKind::Inventory, 7), "inventory.img");
    assert_eq!(file_name(FileKind::Netns, 0), "netns-0.img");
    assert_eq!(file_name(FileKind::Links, 1), "links-1.img");
    assert_eq!(file_name(FileKind::Addresses, 2), "addrs-2.img");
    assert_eq!(file_name(FileKind::Routes, 3), "routes-3.img");
    assert_eq!(file_name(FileKind::Rules, 4), "rules-4.img");
    assert_eq!(file_name(FileKind::Neighbours, 5), "neigh-5.img");
    assert_eq!(file_name(FileKind::Nexthops, 6), "nexthops-6.img");
    assert_eq!(file_name(FileKind::Nftables, 7), "nftables-7.img");
    assert_eq!(file_name(FileKind::Xfrm, 8), "xfrm-8.img");
    assert_eq!(file_name(FileKind::Tc, 8), "tc-8.img");
}

#[test]
fn commit_creates_private_directory_and_files() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let image = sample_image(&[0, 1], 5);
    image.write(&target).unwrap();

    assert_eq!(names(parent.path()), BTreeSet::from(["img".to_owned()]));
    assert_eq!(mode(&target), 0o700);
    assert_eq!(names(&target), expected_files(&[0, 1]));
    for name in names(&target) {
        assert_eq!(mode(&target.join(&name)), 0o600, "{name}");
    }
    assert_eq!(Image::read(&target).unwrap(), image);
}

#[test]
fn empty_image_round_trips() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let image = Image::default();
    image.write(&target).unwrap();
    assert_eq!(names(&target), expected_files(&[]));
    assert_eq!(Image::read(&target).unwrap(), image);
}

#[test]
fn commit_replaces_a_previous_image_completely() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    sample_image(&[0, 1, 2], 4).write(&target).unwrap();
    let newer = sample_image(&[5], 2);
    newer.write(&target).unwrap();

    assert_eq!(names(parent.path()), BTreeSet::from(["img".to_owned()]));
    assert_eq!(names(&target), expected_files(&[5]));
    assert_eq!(Image::read(&target).unwrap(), newer);
}

#[test]
fn commit_replaces_an_empty_directory() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    std::fs::create_dir(&target).unwrap();
    let image = sample_image(&[0], 1);
    image.write(&target).unwrap();
    assert_eq!(names(parent.path()), BTreeSet::from(["img".to_owned()]));
    assert_eq!(Image::read(&target).unwrap(), image);
}

#[test]
fn trailing_slash_and_relative_parent() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let with_slash = format!("{}/", target.display());
    let image = sample_image(&[0], 1);
    image.write(Path::new(&with_slash)).unwrap();
    image.write(Path::new(&with_slash)).unwrap();
    assert_eq!(names(parent.path()), BTreeSet::from(["img".to_owned()]));
    assert_eq!(Image::read(&target).unwrap(), image);
}

/// `before_commit` is asked once, after every file is written; `false` leaves the target as it
/// was (absent, or the previous image) and no temporary directory.
#[test]
fn write_with_abandoned_before_commit_changes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let asked = std::cell::Cell::new(0);
    let refuse = || {
        asked.set(asked.get() + 1);
        // Every file is there by now, in the temporary directory beside the target.
        let temps: Vec<String> = names(parent.path())
            .into_iter()
            .filter(|n| n.starts_with(".img.tmp-"))
            .collect();
        assert_eq!(temps.len(), 1, "{temps:?}");
        assert_eq!(
            names(&parent.path().join(&temps[0])),
            expected_files(&[0, 1])
        );
        false
    };
    let options = WriteOptions {
        durable: true,
        before_commit: Some(&refuse),
    };
    let image = sample_image(&[0, 1], 2);
    let err = image.write_with(&target, &options).unwrap_err();
    assert!(
        matches!(&err, ImageError::Abandoned { path } if *path == target),
        "{err:?}"
    );
    assert_eq!(asked.get(), 1);
    assert!(names(parent.path()).is_empty());

    let old = sample_image(&[3], 1);
    old.write(&target).unwrap();
    image.write_with(&target, &options).unwrap_err();
    assert_eq!(asked.get(), 2);
    assert_eq!(names(parent.path()), BTreeSet::from(["img".to_owned()]));
    assert_eq!(Image::read(&target).unwrap(), old);
}

/// Without fsync the write is as atomic and private: same files, same modes, same image.
#[test]
fn write_with_without_fsync_writes_the_same_image() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let proceed = || true;
    let options = WriteOptions {
        durable: false,
        before_commit: Some(&proceed),
    };
    for image in [sample_image(&[0, 1], 3), sample_image(&[2], 1)] {
        image.write_with(&target, &options).unwrap();
        assert_eq!(names(parent.path()), BTreeSet::from(["img".to_owned()]));
        assert_eq!(mode(&target), 0o700);
        for name in names(&target) {
            assert_eq!(mode(&target.join(&name)), 0o600, "{name}");
        }
        assert_eq!(Image::read(&target).unwrap(), image);
    }
}

#[test]
fn drop_without_commit_cleans_up_and_keeps_the_old_image() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let old = sample_image(&[0], 3);
    old.write(&target).unwrap();

    let writer = ImageWriter::create(&target).unwrap();
    let temp = writer.temp_path().to_path_buf();
    assert_eq!(temp.parent(), Some(parent.path()));
    let temp_name = temp.file_name().unwrap().to_str().unwrap();
    assert!(
        temp_name.starts_with(&format!(".img.tmp-{}-", std::process::id())),
        "{temp_name}"
    );
    assert_eq!(mode(&temp), 0o700);
    writer.write_inventory(&sample_inventory(&[9])).unwrap();
    writer.write_netns(&sample_netns_image(9, 1)).unwrap();
    assert_eq!(names(&temp), expected_files(&[9]));
    drop(writer);

    assert!(!temp.exists());
    assert_eq!(names(parent.path()), BTreeSet::from(["img".to_owned()]));
    assert_eq!(Image::read(&target).unwrap(), old);
}

#[test]
fn drop_without_commit_and_without_a_previous_image() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let writer = ImageWriter::create(&target).unwrap();
    assert_eq!(writer.target(), target);
    writer.write_inventory(&sample_inventory(&[])).unwrap();
    drop(writer);
    assert!(names(parent.path()).is_empty());
}

#[test]
fn refuses_a_non_image_directory_before_writing() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("home");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("notes.txt"), b"precious").unwrap();

    let err = ImageWriter::create(&target).unwrap_err();
    assert!(matches!(err, ImageError::TargetNotImage { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", target.display())),
        "{err}"
    );
    let err = sample_image(&[0], 1).write(&target).unwrap_err();
    assert!(matches!(err, ImageError::TargetNotImage { .. }), "{err:?}");

    assert_eq!(names(parent.path()), BTreeSet::from(["home".to_owned()]));
    assert_eq!(names(&target), BTreeSet::from(["notes.txt".to_owned()]));
    assert_eq!(
        std::fs::read(target.join("notes.txt")).unwrap(),
        b"precious"
    );
}

#[test]
fn refuses_a_directory_whose_inventory_is_not_netcr() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join(INVENTORY_FILE), b"some other tool's file").unwrap();
    let err = ImageWriter::create(&target).unwrap_err();
    assert!(matches!(err, ImageError::TargetNotImage { .. }), "{err:?}");
}

#[test]
fn refuses_a_file_or_a_symlink() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = ImageWriter::create(&file).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TargetNotDirectory {
                what: "a regular file",
                ..
            }
        ),
        "{err:?}"
    );

    let real = parent.path().join("real");
    sample_image(&[0], 1).write(&real).unwrap();
    let link = parent.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = ImageWriter::create(&link).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TargetNotDirectory {
                what: "a symbolic link",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        names(parent.path()),
        BTreeSet::from(["file".to_owned(), "real".to_owned(), "link".to_owned()])
    );
}

#[test]
fn refuses_unusable_paths() {
    for path in ["/", "a/..", ".."] {
        let err = ImageWriter::create(Path::new(path)).unwrap_err();
        assert!(matches!(err, ImageError::BadPath { .. }), "{path}: {err:?}");
    }
    let parent = tempfile::tempdir().unwrap();
    let writer = ImageWriter::create(&parent.path().join("img")).unwrap();
    for name in ["", ".", "..", "a/b", "../escape"] {
        let err = writer
            .write_records(name, FileKind::Rules, &[sample_rule(0)])
            .unwrap_err();
        assert!(matches!(err, ImageError::BadPath { .. }), "{name}: {err:?}");
    }
}

#[test]
fn inconsistent_image_is_not_written() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");

    let mut fewer = sample_image(&[0, 1], 1);
    fewer.namespaces.pop();
    let mut swapped = sample_image(&[0, 1], 1);
    swapped.namespaces.swap(0, 1);
    let mut duplicate = sample_image(&[0, 0], 1);
    duplicate.namespaces[1].links.clear();

    for image in [fewer, swapped, duplicate] {
        let err = image.write(&target).unwrap_err();
        assert!(matches!(err, ImageError::Inconsistent { .. }), "{err:?}");
        assert!(matches!(
            image.to_files(),
            Err(ImageError::Inconsistent { .. })
        ));
    }
    assert!(names(parent.path()).is_empty());
}

/// Writes an image by hand, file by file, so reads can be given broken images.
fn write_raw(target: &Path, build: impl FnOnce(&ImageWriter)) {
    let writer = ImageWriter::create(target).unwrap();
    build(&writer);
    writer.commit().unwrap();
}

#[test]
fn read_reports_a_missing_file_by_name() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    sample_image(&[0, 4], 1).write(&target).unwrap();
    let missing = target.join("routes-4.img");
    std::fs::remove_file(&missing).unwrap();
    let err = Image::read(&target).unwrap_err();
    assert!(
        matches!(&err, ImageError::Missing { path } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains(&missing.display().to_string()));
}

/// Rewrites the version in a file's header (and its checksum, which does not cover it).
fn set_version(path: &Path, version: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_version_1_image_has_no_nexthops_file_and_reads_without_nexthops() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let mut image = sample_image(&[0, 3], 2);
    image.write(&target).unwrap();
    // What netcr 0.1 wrote: version 1 files, six per namespace.
    for id in [0, 3] {
        std::fs::remove_file(target.join(file_name(FileKind::Nexthops, id))).unwrap();
        std::fs::remove_file(target.join(file_name(FileKind::Nftables, id))).unwrap();
        std::fs::remove_file(target.join(file_name(FileKind::Xfrm, id))).unwrap();
        std::fs::remove_file(target.join(file_name(FileKind::Tc, id))).unwrap();
    }
    for name in names(&target) {
        set_version(&target.join(name), 1);
    }
    for ns in &mut image.namespaces {
        ns.nexthops.clear();
        ns.nftables.clear();
        ns.xfrm.clear();
        ns.tc.clear();
    }
    assert_eq!(Image::read(&target).unwrap(), image);
}

#[test]
fn a_version_2_image_has_no_nftables_file_and_reads_without_a_firewall() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let mut image = sample_image(&[0, 3], 2);
    image.write(&target).unwrap();
    // What netcr wrote before it kept nf_tables: version 2 files, seven per namespace.
    for id in [0, 3] {
        std::fs::remove_file(target.join(file_name(FileKind::Nftables, id))).unwrap();
        std::fs::remove_file(target.join(file_name(FileKind::Xfrm, id))).unwrap();
        std::fs::remove_file(target.join(file_name(FileKind::Tc, id))).unwrap();
    }
    for name in names(&target) {
        set_version(&target.join(name), 2);
    }
    for ns in &mut image.namespaces {
        ns.nftables.clear();
        ns.xfrm.clear();
        ns.tc.clear();
    }
    assert_eq!(Image::read(&target).unwrap(), image);
}

#[test]
fn a_version_3_image_has_no_tc_or_xfrm_file_and_reads_without_them() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let mut image = sample_image(&[0, 3], 2);
    image.write(&target).unwrap();
    // What netcr wrote before it kept traffic control and xfrm: version 3 files, eight per
    // namespace.
    for id in [0, 3] {
        std::fs::remove_file(target.join(file_name(FileKind::Xfrm, id))).unwrap();
        std::fs::remove_file(target.join(file_name(FileKind::Tc, id))).unwrap();
    }
    for name in names(&target) {
        set_version(&target.join(name), 3);
    }
    for ns in &mut image.namespaces {
        ns.xfrm.clear();
        ns.tc.clear();
    }
    assert_eq!(Image::read(&target).unwrap(), image);
}

#[rstest]
fn a_version_4_image_without_its_tc_or_xfrm_file_is_refused(
    #[values("tc-0.img", "xfrm-0.img")] file: &str,
) {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    sample_image(&[0], 1).write(&target).unwrap();
    let missing = target.join(file);
    std::fs::remove_file(&missing).unwrap();
    let err = Image::read(&target).unwrap_err();
    assert!(
        matches!(&err, ImageError::Missing { path } if *path == missing),
        "{err:?}"
    );
}

#[test]
fn a_version_3_image_without_its_nftables_file_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    sample_image(&[0], 1).write(&target).unwrap();
    let missing = target.join("nftables-0.img");
    std::fs::remove_file(&missing).unwrap();
    let err = Image::read(&target).unwrap_err();
    assert!(
        matches!(&err, ImageError::Missing { path } if *path == missing),
        "{err:?}"
    );
}

#[test]
fn a_version_2_image_without_its_nexthops_file_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    sample_image(&[0], 1).write(&target).unwrap();
    let missing = target.join("nexthops-0.img");
    std::fs::remove_file(&missing).unwrap();
    let err = Image::read(&target).unwrap_err();
    assert!(
        matches!(&err, ImageError::Missing { path } if *path == missing),
        "{err:?}"
    );
}

#[test]
fn read_reports_damage_in_a_namespace_file() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    sample_image(&[0], 3).write(&target).unwrap();
    let links = target.join("links-0.img");
    let mut bytes = std::fs::read(&links).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&links, bytes).unwrap();
    let err = Image::read(&target).unwrap_err();
    assert_eq!(err.path(), links);
}

#[test]
fn read_requires_exactly_one_inventory() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    write_raw(&target, |w| {
        let inv = sample_inventory(&[]);
        w.write_records(INVENTORY_FILE, FileKind::Inventory, &[inv.clone(), inv])
            .unwrap();
    });
    let err = Image::read(&target).unwrap_err();
    assert!(
        matches!(err, ImageError::NotSingleRecord { found: 2, .. }),
        "{err:?}"
    );
    assert_eq!(err.path(), target.join(INVENTORY_FILE));

    write_raw(&target, |w| {
        w.write_records::<v1::Inventory>(INVENTORY_FILE, FileKind::Inventory, &[])
            .unwrap();
    });
    let err = Image::read(&target).unwrap_err();
    assert!(
        matches!(err, ImageError::NotSingleRecord { found: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn read_refuses_duplicate_namespace_ids() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    write_raw(&target, |w| {
        w.write_inventory(&sample_inventory(&[3, 3])).unwrap();
        w.write_netns(&sample_netns_image(3, 1)).unwrap();
    });
    let err = Image::read(&target).unwrap_err();
    assert!(
        matches!(err, ImageError::DuplicateNetns { id: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("inventory.img"), "{err}");
}

#[test]
fn read_refuses_a_netns_file_for_another_namespace() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    write_raw(&target, |w| {
        w.write_inventory(&sample_inventory(&[1])).unwrap();
        let mut netns = sample_netns_image(1, 1);
        netns.netns.id = 2;
        w.write_netns(&netns).unwrap();
        // write_netns named the files after id 2; give namespace 1 the same content.
        for kind in &FileKind::ALL[1..] {
            let from = w.temp_path().join(file_name(*kind, 2));
            std::fs::rename(from, w.temp_path().join(file_name(*kind, 1))).unwrap();
        }
    });
    let err = Image::read(&target).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::NetnsIdMismatch {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.path(), target.join("netns-1.img"));
}

#[test]
fn in_memory_round_trip_of_ten_thousand_links() {
    let image = sample_image(&[0], 10_000);
    let files = image.to_files().unwrap();
    assert_eq!(files.len(), 11);
    let dir = Path::new("/nonexistent/img");
    let back = Image::from_files(dir, |path| {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(path.parent(), Some(dir));
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, bytes)| bytes.clone())
            .ok_or_else(|| ImageError::Missing {
                path: path.to_path_buf(),
            })
    })
    .unwrap();
    assert_eq!(back, image);
}

#[test]
fn files_on_disk_match_to_files() {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let image = sample_image(&[0, 1], 2);
    image.write(&target).unwrap();
    for (name, bytes) in image.to_files().unwrap() {
        assert_eq!(std::fs::read(target.join(&name)).unwrap(), bytes, "{name}");
    }
}
