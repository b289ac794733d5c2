//! A writer for uncompressed "newc" cpio archives, the format the kernel unpacks as initramfs.
//!
//! Each entry is a 110-byte ASCII header (`070701` and 13 eight-digit hex fields), the
//! NUL-terminated name padded to a multiple of 4 bytes, then the data padded likewise. The
//! archive ends with an entry named `TRAILER!!!`. Parent directories are written before their
//! contents, because the kernel's unpacker does not create them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Writes a newc archive entry by entry; call [`CpioWriter::finish`] at the end.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

/// The header fields of one entry that vary; the others are fixed (uid, gid, mtime 0).
struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> CpioWriter<W> {
    /// A writer that appends to `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    /// Adds directory `path` (and its missing parents) with permission bits `perm`.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        if self.dirs.insert(path.clone()) {
            self.entry(
                &Header {
                    name: &path,
                    mode: S_IFDIR | (perm & 0o7777),
                    nlink: 2,
                    size: 0,
                    rdev: (0, 0),
                },
                &mut io::empty(),
            )?;
        }
        Ok(())
    }

    /// Adds regular file `path` holding `data`, with permission bits `perm`.
    pub fn file_bytes(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| too_big(path))?;
        self.file(path, perm, size, &mut &data[..])
    }

    /// Adds regular file `path` with the contents of host file `src`, with permission bits `perm`.
    pub fn file_from(&mut self, path: &str, perm: u32, src: &Path) -> io::Result<()> {
        let mut f = File::open(src)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
        let len = f.metadata()?.len();
        let size = u32::try_from(len).map_err(|_| too_big(path))?;
        self.file(path, perm, size, &mut f)
    }

    /// Adds character device node `path` (`major`, `minor`) with permission bits `perm`.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(
            &Header {
                name: &path,
                mode: S_IFCHR | (perm & 0o7777),
                nlink: 1,
                size: 0,
                rdev: (major, minor),
            },
            &mut io::empty(),
        )
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        let header = Header {
            name: TRAILER,
            mode: 0,
            nlink: 1,
            size: 0,
            rdev: (0, 0),
        };
        self.next_ino = 0;
        self.entry(&header, &mut io::empty())?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn file(&mut self, path: &str, perm: u32, size: u32, data: &mut dyn Read) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(
            &Header {
                name: &path,
                mode: S_IFREG | (perm & 0o7777),
                nlink: 1,
                size,
                rdev: (0, 0),
            },
            data,
        )
    }

    fn parents(&mut self, path: &str) -> io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !self.dirs.contains(parent) {
                self.dir(parent, 0o755)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, h: &Header<'_>, data: &mut dyn Read) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let namesize = h.name.len() + 1;
        let fields = [
            ino,
            h.mode,
            0, // uid
            0, // gid
            h.nlink,
            0, // mtime: reproducible archives
            h.size,
            0, // devmajor
            0, // devminor
            h.rdev.0,
            h.rdev.1,
            namesize as u32,
            0, // check: unused by newc
        ];
        let mut header = String::with_capacity(110);
        header.push_str(MAGIC);
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(h.name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        let copied = io::copy(&mut data.take(u64::from(h.size)), &mut self.out)?;
        if copied != u64::from(h.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: file shrank while archiving it", h.name),
            ));
        }
        self.written += copied;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0; 3][..n])
    }
}

/// Strips leading `/`, rejects empty names and `.`/`..` components.
fn normalize(path: &str) -> io::Result<String> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid archive path {path:?}"),
        ));
    }
    Ok(trimmed.to_owned())
}

fn too_big(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{path}: newc cpio entries are limited to 4 GiB"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Parses one header at `pos`: (the 13 fields, name, data, offset of the next entry).
    fn entry(archive: &[u8], pos: usize) -> ([u32; 13], String, Vec<u8>, usize) {
        assert_eq!(&archive[pos..pos + 6], MAGIC.as_bytes(), "magic at {pos}");
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let start = pos + 6 + 8 * i;
            let hex = std::str::from_utf8(&archive[start..start + 8]).unwrap();
            *field = u32::from_str_radix(hex, 16).unwrap();
        }
        let namesize = fields[11] as usize;
        let name_start = pos + 110;
        let name = &archive[name_start..name_start + namesize];
        assert_eq!(name.last(), Some(&0), "name is NUL-terminated");
        let data_start = (name_start + namesize).next_multiple_of(4);
        assert!(
            archive[name_start + namesize..data_start]
                .iter()
                .all(|&b| b == 0),
            "name padding is zeros"
        );
        let size = fields[6] as usize;
        let data = archive[data_start..data_start + size].to_vec();
        let next = (data_start + size).next_multiple_of(4);
        assert!(archive[data_start + size..next].iter().all(|&b| b == 0));
        let name = String::from_utf8(name[..namesize - 1].to_vec()).unwrap();
        (fields, name, data, next)
    }

    fn entries(archive: &[u8]) -> Vec<([u32; 13], String, Vec<u8>)> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < archive.len() {
            let (fields, name, data, next) = entry(archive, pos);
            out.push((fields, name, data));
            pos = next;
        }
        assert_eq!(pos, archive.len());
        out
    }

    #[test]
    fn file_and_dir_exact_headers() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/tests", 0o755).unwrap();
        w.file_bytes("/tests/hello", 0o755, b"hello").unwrap();
        let archive = w.finish().unwrap();

        // Directory entry: exact header bytes.
        let dir_header = concat!(
            "070701", "00000001", "000041ed", "00000000", "00000000", "00000002", "00000000",
            "00000000", "00000000", "00000000", "00000000", "00000000", "00000006", "00000000",
        );
        assert_eq!(&archive[..110], dir_header.as_bytes());
        // 110 + "tests\0" = 116: already a multiple of 4.
        assert_eq!(&archive[110..116], b"tests\0");

        let file_header = concat!(
            "070701", "00000002", "000081ed", "00000000", "00000000", "00000001", "00000000",
            "00000005", "00000000", "00000000", "00000000", "00000000", "0000000c", "00000000",
        );
        assert_eq!(&archive[116..226], file_header.as_bytes());
        // 226 + "tests/hello\0" (12) = 238, padded to 240.
        assert_eq!(&archive[226..240], b"tests/hello\0\0\0");
        // Data, padded from 245 to 248.
        assert_eq!(&archive[240..248], b"hello\0\0\0");

        let all = entries(&archive);
        assert_eq!(all.len(), 3);
        let (trailer, name, data) = &all[2];
        assert_eq!(name, TRAILER);
        assert!(data.is_empty());
        assert_eq!(trailer[4], 1, "trailer nlink");
        assert_eq!(archive.len() % 4, 0);
    }

    #[rstest]
    #[case::len0("", 0)]
    #[case::len1("a", 3)]
    #[case::len2("ab", 2)]
    #[case::len3("abc", 1)]
    #[case::len4("abcd", 0)]
    fn data_is_padded_to_four(#[case] data: &str, #[case] padding: usize) {
        let mut w = CpioWriter::new(Vec::new());
        w.file_bytes("f", 0o644, data.as_bytes()).unwrap();
        let archive = w.finish().unwrap();
        // Header 110 + "f\0" = 112; data follows at once.
        assert_eq!(&archive[112..112 + data.len()], data.as_bytes());
        let end = 112 + data.len() + padding;
        assert!(archive[112 + data.len()..end].iter().all(|&b| b == 0));
        assert_eq!(&archive[end..end + 6], MAGIC.as_bytes());
    }

    #[test]
    fn parents_come_first_once() {
        let mut w = CpioWriter::new(Vec::new());
        w.file_bytes("lib/modules/a.ko", 0o644, b"a").unwrap();
        w.file_bytes("lib/modules/b.ko", 0o644, b"b").unwrap();
        w.dir("lib", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let archive = w.finish().unwrap();
        let all = entries(&archive);
        let names: Vec<&str> = all.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "lib",
                "lib/modules",
                "lib/modules/a.ko",
                "lib/modules/b.ko",
                "dev",
                "dev/console",
                TRAILER
            ]
        );
        let (console, _, _) = &all[5];
        assert_eq!(console[1], 0o020600, "char device mode");
        assert_eq!((console[9], console[10]), (5, 1), "rdev major, minor");
        // Inode numbers are distinct.
        let inos: BTreeSet<u32> = all[..6].iter().map(|(f, _, _)| f[0]).collect();
        assert_eq!(inos.len(), 6);
    }

    #[rstest]
    #[case::empty("")]
    #[case::root("/")]
    #[case::dotdot("a/../b")]
    #[case::dot("./a")]
    #[case::double_slash("a//b")]
    fn bad_paths_are_rejected(#[case] path: &str) {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file_bytes(path, 0o644, b"").is_err());
    }
}
