//! Reading images that may have come from elsewhere: never through a symbolic link out of the
//! image directory, and, when asked, only from a directory nobody else can change.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use netcr_image::{Image, ImageDir, ImageError};
use rstest::rstest;

/// A parent directory holding a written image `img`.
fn written() -> (tempfile::TempDir, PathBuf, Image) {
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("img");
    let image = sample_image(&[0], 3);
    image.write(&target).unwrap();
    (parent, target, image)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn symlink_error(err: &ImageError) -> &'static str {
    match err {
        ImageError::Symlink { why, .. } => why,
        other => panic!("expected a symlink refusal, got {other:?}"),
    }
}

/// An image file replaced by a link to a copy outside the image directory: the copy is a
/// perfectly good file, so only the link's destination makes the read fail.
#[rstest]
#[case::relative(true)]
#[case::absolute(false)]
fn a_symlink_out_of_the_directory_is_refused(#[case] relative: bool) {
    let (parent, target, _) = written();
    let inside = target.join("links-0.img");
    let outside = parent.path().join("elsewhere.img");
    std::fs::rename(&inside, &outside).unwrap();
    let dest = if relative {
        PathBuf::from("../elsewhere.img")
    } else {
        outside.clone()
    };
    std::os::unix::fs::symlink(&dest, &inside).unwrap();
    let err = Image::read(&target).unwrap_err();
    assert_eq!(
        symlink_error(&err),
        "that leads out of the image directory",
        "{err}"
    );
    assert_eq!(err.path(), inside);
    assert!(
        err.to_string().starts_with(&format!(
            "{}: a symbolic link that leads out of the image directory: refused",
            inside.display()
        )),
        "{err}"
    );
    // The same file, back inside, reads.
    std::fs::remove_file(&inside).unwrap();
    std::fs::rename(&outside, &inside).unwrap();
    Image::read(&target).unwrap();
}

#[test]
fn a_symlink_inside_the_directory_is_followed() {
    let (_parent, target, image) = written();
    let links = target.join("links-0.img");
    std::fs::rename(&links, target.join("real-links")).unwrap();
    std::os::unix::fs::symlink("real-links", &links).unwrap();
    assert_eq!(Image::read(&target).unwrap(), image);
}

#[test]
fn a_proc_magic_link_is_refused() {
    let (_parent, target, _) = written();
    let links = target.join("links-0.img");
    let kept = std::fs::File::open(&links).unwrap();
    std::fs::remove_file(&links).unwrap();
    // A link to the deleted file through /proc: absolute, so out of the directory as well.
    let magic = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&kept));
    std::os::unix::fs::symlink(&magic, &links).unwrap();
    let err = Image::read(&target).unwrap_err();
    symlink_error(&err);
}

#[test]
fn a_subdirectory_is_opened_beneath_its_parent() {
    let parent = tempfile::tempdir().unwrap();
    let criu = parent.path().join("criu");
    std::fs::create_dir(&criu).unwrap();
    let image = sample_image(&[0], 1);
    image.write(&criu.join("netcr")).unwrap();
    let dir = ImageDir::open(&criu).unwrap().open_dir("netcr").unwrap();
    assert_eq!(dir.path(), criu.join("netcr"));
    assert_eq!(dir.read_image().unwrap(), image);

    // The same image reached through a link that leaves `criu`: refused.
    let other = parent.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::rename(criu.join("netcr"), other.join("netcr")).unwrap();
    std::os::unix::fs::symlink(other.join("netcr"), criu.join("netcr")).unwrap();
    let err = ImageDir::open(&criu)
        .unwrap()
        .open_dir("netcr")
        .unwrap_err();
    assert_eq!(symlink_error(&err), "that leads out of the image directory");

    let err = ImageDir::open(&criu)
        .unwrap()
        .open_dir("absent")
        .unwrap_err();
    assert!(matches!(err, ImageError::Missing { .. }), "{err:?}");
}

#[rstest]
#[case::parent("..")]
#[case::dot(".")]
#[case::empty("")]
#[case::path("a/b")]
#[case::up("../img/inventory.img")]
#[case::nul("a\0b")]
fn only_plain_names_are_read(#[case] name: &str) {
    let (_parent, target, _) = written();
    let err = ImageDir::open(&target)
        .unwrap()
        .read_file(name)
        .unwrap_err();
    assert!(
        matches!(err, ImageError::BadPath { .. }),
        "{name:?}: {err:?}"
    );
}

#[test]
fn a_missing_file_is_missing() {
    let (_parent, target, _) = written();
    let err = ImageDir::open(&target)
        .unwrap()
        .read_file("external")
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::Missing { path } if *path == target.join("external")),
        "{err:?}"
    );
}

fn not_private(err: ImageError) -> (PathBuf, String, String) {
    match err {
        ImageError::NotPrivate { path, problem, fix } => (path, problem, fix),
        other => panic!("expected NotPrivate, got {other:?}"),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

#[rstest]
#[case(0o777, "writable by group and others (mode 0777)")]
#[case(0o702, "writable by others (mode 0702)")]
#[case(0o770, "writable by its group (mode 0770)")]
fn a_directory_others_can_write_is_not_private(#[case] mode: u32, #[case] problem: &str) {
    let (_parent, target, _) = written();
    chmod(&target, mode);
    let (path, got, fix) = not_private(
        ImageDir::open(&target)
            .unwrap()
            .require_private(euid())
            .unwrap_err(),
    );
    assert_eq!(path, target);
    assert_eq!(got, format!("the image directory is {problem}"));
    assert_eq!(fix, format!("chmod go-w {}", target.display()));
    // Readable all the same, by whoever does not ask for privacy (`netcr show`).
    Image::read(&target).unwrap();
    chmod(&target, 0o755);
    let dir = ImageDir::open(&target)
        .unwrap()
        .require_private(euid())
        .unwrap();
    dir.read_image().unwrap();
}

#[test]
fn a_file_others_can_write_is_not_private() {
    let (_parent, target, image) = written();
    let routes = target.join("routes-0.img");
    chmod(&routes, 0o646);
    let dir = ImageDir::open(&target)
        .unwrap()
        .require_private(euid())
        .unwrap();
    let (path, problem, _) = not_private(dir.read_image().unwrap_err());
    assert_eq!(path, routes);
    assert_eq!(problem, "the image file is writable by others (mode 0646)");
    chmod(&routes, 0o644);
    assert_eq!(dir.read_image().unwrap(), image);
}

/// Owned by someone else than root and the reader. As root: the directory is given away; as
/// another user: the reader claims another uid.
#[test]
fn a_directory_owned_by_someone_else_is_not_private() {
    let (_parent, target, _) = written();
    let me = euid();
    let (owner, reader) = if me == 0 {
        std::os::unix::fs::chown(&target, Some(65534), None).unwrap();
        (65534, 0)
    } else {
        (me, me + 1)
    };
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), owner);
    let (_, problem, fix) = not_private(
        ImageDir::open(&target)
            .unwrap()
            .require_private(reader)
            .unwrap_err(),
    );
    let allowed = if reader == 0 {
        "root".to_string()
    } else {
        format!("root or uid {reader} (this process)")
    };
    assert_eq!(
        problem,
        format!("the image directory is owned by uid {owner}, not by {allowed}")
    );
    assert_eq!(fix, format!("chown root {}", target.display()));
    // Its owner may read it.
    ImageDir::open(&target)
        .unwrap()
        .require_private(owner)
        .unwrap();
}
