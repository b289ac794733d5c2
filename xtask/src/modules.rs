//! Kernel modules for the guest: find them in a `lib/modules/<version>` tree and order them so
//! that every module comes after its dependencies.
//!
//! Dependencies come from `modules.dep` when the tree has one. A tree unpacked from a Debian
//! package has none (depmod writes it at install time), so then they come from the `depends=`
//! entry of each module's `.modinfo` ELF section, which is what depmod reads too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::Result;

/// The modules the netcr tests need, in the guest, when the kernel has them as modules.
pub const WANTED: &[&str] = &[
    "macvlan",
    "macvtap",
    "veth",
    "dummy",
    "ipvlan",
    "8021q",
    "bridge",
    "vxlan",
    "tun",
    "ifb",
    "vrf",
    "ip_gre",
    "ipip",
    "sit",
    "ip6_tunnel",
    "ip6_gre",
    "geneve",
    // A kind netcr has no driver for, for the unknown-kind test (crates/netcr/tests/cli_kinds.rs).
    "nlmon",
    // nf_tables transactions and dumps (crates/netcr-netlink/tests/nftables.rs).
    "nf_tables",
    // IPsec states (crates/netcr/tests/cli_xfrm.rs): ESP and the crypto its states use. The
    // guest has no modprobe, so the kernel cannot load algorithms on demand.
    "xfrm_user",
    "esp4",
    "authenc",
    // ESP makes its IVs with echainiv(authenc(...)) for CBC ciphers, which draws on the
    // default RNG (drbg; its HMAC is over sha512).
    "echainiv",
    "drbg",
    "sha512_generic",
    // AEAD states: rfc4106(gcm(aes)), whose IVs come from seqiv.
    "gcm",
    "ghash_generic",
    "ctr",
    "seqiv",
    "cbc",
    "aes_generic",
    "hmac",
    "sha256_generic",
];

/// A module tree on the host (`lib/modules/<version>`).
#[derive(Debug)]
pub struct ModuleDir {
    root: PathBuf,
    /// Module name -> path relative to `root`.
    files: BTreeMap<String, String>,
    /// Module name -> dependency names, when the tree has a `modules.dep`.
    dep_file: Option<BTreeMap<String, Vec<String>>>,
    builtin: BTreeSet<String>,
}

/// What to load in the guest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadPlan {
    /// Module name and host path, dependencies first.
    pub order: Vec<(String, PathBuf)>,
    /// Wanted modules the kernel has built in.
    pub builtin: Vec<String>,
    /// Wanted modules the kernel has neither as a module nor built in.
    pub missing: Vec<String>,
}

impl ModuleDir {
    /// Indexes the module tree at `root`.
    pub fn open(root: &Path) -> Result<ModuleDir> {
        if !root.is_dir() {
            return Err(format!(
                "module directory {} does not exist",
                root.display()
            ));
        }
        let dep_path = root.join("modules.dep");
        let (files, dep_file) = if dep_path.exists() {
            let text = read_to_string(&dep_path)?;
            let entries =
                parse_modules_dep(&text).map_err(|e| format!("{}: {e}", dep_path.display()))?;
            let mut files = BTreeMap::new();
            let mut deps = BTreeMap::new();
            for entry in entries {
                files.insert(entry.name.clone(), entry.path);
                deps.insert(entry.name, entry.deps);
            }
            (files, Some(deps))
        } else {
            let mut files = BTreeMap::new();
            scan(root, root, &mut files)?;
            if files.is_empty() {
                return Err(format!(
                    "{} has neither modules.dep nor any .ko file: is it a lib/modules/<version> directory?",
                    root.display()
                ));
            }
            (files, None)
        };
        let builtin_path = root.join("modules.builtin");
        let builtin = if builtin_path.exists() {
            parse_builtin(&read_to_string(&builtin_path)?)
        } else {
            BTreeSet::new()
        };
        Ok(ModuleDir {
            root: root.to_path_buf(),
            files,
            dep_file,
            builtin,
        })
    }

    /// The modules to load for `wanted`, with their dependencies, in load order.
    pub fn plan(&self, wanted: &[&str]) -> Result<LoadPlan> {
        let mut plan = LoadPlan::default();
        let mut roots = Vec::new();
        for &want in wanted {
            let name = module_name(want);
            if self.files.contains_key(&name) {
                roots.push(name);
            } else if self.builtin.contains(&name) {
                plan.builtin.push(name);
            } else {
                plan.missing.push(name);
            }
        }
        // Collect the dependency graph of everything reachable from the roots.
        let mut graph = BTreeMap::new();
        let mut todo = roots.clone();
        while let Some(name) = todo.pop() {
            if graph.contains_key(&name) {
                continue;
            }
            let deps = self.deps(&name)?;
            todo.extend(deps.iter().cloned());
            graph.insert(name, deps);
        }
        for name in dependency_order(&roots, &graph)? {
            let rel = &self.files[&name];
            if !rel.ends_with(".ko") {
                return Err(format!(
                    "{}: compressed modules are not supported (the guest loads plain .ko files): \
                     decompress the tree or pass --modules with uncompressed modules",
                    self.root.join(rel).display()
                ));
            }
            plan.order.push((name, self.root.join(rel)));
        }
        Ok(plan)
    }

    fn deps(&self, name: &str) -> Result<Vec<String>> {
        let Some(rel) = self.files.get(name) else {
            return Err(format!(
                "module {name} is needed but not in {}",
                self.root.display()
            ));
        };
        if let Some(dep_file) = &self.dep_file {
            return Ok(dep_file.get(name).cloned().unwrap_or_default());
        }
        let path = self.root.join(rel);
        if !rel.ends_with(".ko") {
            // Reported with a clear message by `plan`; reading .modinfo would need xz/zstd.
            return Ok(Vec::new());
        }
        let elf = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        modinfo_depends(&elf).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The module name of a file name or path: no directory, no `.ko*` suffix, `-` as `_`.
pub fn module_name(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = match base.find(".ko") {
        Some(i) if is_module_file(base) => &base[..i],
        _ => base,
    };
    stem.replace('-', "_")
}

fn is_module_file(name: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// One line of `modules.dep`.
#[derive(Debug, PartialEq, Eq)]
pub struct DepEntry {
    /// Module name.
    pub name: String,
    /// Path of the module file, as written in modules.dep.
    pub path: String,
    /// Names of the modules it depends on.
    pub deps: Vec<String>,
}

/// Parses `modules.dep`: lines `path: dep-path dep-path ...`.
pub fn parse_modules_dep(text: &str) -> Result<Vec<DepEntry>> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((path, deps)) = line.split_once(':') else {
            return Err(format!("line {}: no ':' in {line:?}", n + 1));
        };
        let path = path.trim();
        if path.is_empty() {
            return Err(format!("line {}: empty module path", n + 1));
        }
        entries.push(DepEntry {
            name: module_name(path),
            path: path.to_owned(),
            deps: deps.split_whitespace().map(module_name).collect(),
        });
    }
    Ok(entries)
}

/// Parses `modules.builtin`: one module path a line.
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

/// Orders `roots` and everything they depend on in `graph` (name -> dependency names) so that
/// each module comes after its dependencies; among independent modules, `roots` order holds.
pub fn dependency_order(
    roots: &[String],
    graph: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        graph: &BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<()> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                return Err(format!(
                    "module dependency cycle: {} -> {name}",
                    path.join(" -> ")
                ))
            }
            None => {}
        }
        let Some(deps) = graph.get(name) else {
            let who = path
                .last()
                .map_or(String::new(), |p| format!(" (needed by {p})"));
            return Err(format!("unknown module {name}{who}"));
        };
        marks.insert(name.to_owned(), Mark::Visiting);
        path.push(name.to_owned());
        for dep in deps {
            visit(dep, graph, marks, path, out)?;
        }
        path.pop();
        marks.insert(name.to_owned(), Mark::Done);
        out.push(name.to_owned());
        Ok(())
    }

    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for root in roots {
        visit(root, graph, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// The `depends=` list of a module's `.modinfo` section (64-bit little-endian ELF).
pub fn modinfo_depends(elf: &[u8]) -> Result<Vec<String>> {
    let modinfo = elf_section(elf, ".modinfo")?
        .ok_or_else(|| "no .modinfo section: not a kernel module".to_owned())?;
    Ok(modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|deps| deps.split(|&b| b == b','))
        .filter(|d| !d.is_empty())
        .map(|d| module_name(&String::from_utf8_lossy(d)))
        .collect())
}

/// The contents of the section named `want`, if any.
fn elf_section<'a>(elf: &'a [u8], want: &str) -> Result<Option<&'a [u8]>> {
    let bad = |what: &str| format!("not a 64-bit little-endian ELF file: {what}");
    if elf.get(..4) != Some(b"\x7fELF") {
        return Err(bad("bad magic"));
    }
    if elf.get(4..6) != Some(&[2, 1]) {
        return Err(bad("wrong class or byte order"));
    }
    let u16_at = |off: usize| -> Result<usize> {
        elf.get(off..off + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| bad("truncated"))
    };
    let u32_at = |off: usize| -> Result<usize> {
        elf.get(off..off + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
            .ok_or_else(|| bad("truncated"))
    };
    let u64_at = |off: usize| -> Result<usize> {
        elf.get(off..off + 8)
            .and_then(|b| {
                usize::try_from(u64::from_le_bytes(b.try_into().unwrap_or_default())).ok()
            })
            .ok_or_else(|| bad("truncated"))
    };
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)?;
    let shnum = u16_at(0x3c)?;
    let shstrndx = u16_at(0x3e)?;
    if shentsize < 0x40 || shstrndx >= shnum {
        return Err(bad("bad section header table"));
    }
    let section = |i: usize| -> Result<(usize, &'a [u8])> {
        let sh = shoff + i * shentsize;
        let name = u32_at(sh)?;
        let offset = u64_at(sh + 0x18)?;
        let size = u64_at(sh + 0x20)?;
        let data = offset
            .checked_add(size)
            .and_then(|end| elf.get(offset..end))
            .ok_or_else(|| bad("section out of bounds"))?;
        Ok((name, data))
    };
    let (_, names) = section(shstrndx)?;
    for i in 0..shnum {
        let (name_off, data) = section(i)?;
        let name = names
            .get(name_off..)
            .and_then(|s| s.split(|&b| b == 0).next())
            .ok_or_else(|| bad("section name out of bounds"))?;
        if name == want.as_bytes() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

fn scan(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if file_type.is_dir() {
            scan(root, &path, files)?;
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            if is_module_file(name) {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                files.insert(module_name(name), rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(())
}

fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const DEP: &str = "\
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/8021q/8021q.ko: kernel/net/802/mrp.ko kernel/net/802/garp.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/garp.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/mrp.ko:
kernel/drivers/net/macvtap.ko: kernel/drivers/net/macvlan.ko kernel/drivers/net/tap.ko
kernel/drivers/net/macvlan.ko:
kernel/drivers/net/tap.ko:
kernel/drivers/net/dummy.ko:
kernel/drivers/net/ip-vlan.ko.xz:
";

    fn graph(text: &str) -> BTreeMap<String, Vec<String>> {
        parse_modules_dep(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.deps))
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_modules_dep_lines() {
        let entries = parse_modules_dep(DEP).unwrap();
        assert_eq!(entries.len(), 11);
        assert_eq!(
            entries[3],
            DepEntry {
                name: "8021q".into(),
                path: "kernel/net/8021q/8021q.ko".into(),
                deps: names(&["mrp", "garp", "stp", "llc"]),
            }
        );
        assert_eq!(entries[1].deps, Vec::<String>::new());
        assert_eq!(
            entries[10].name, "ip_vlan",
            "dash becomes underscore, .ko.xz stripped"
        );
    }

    #[test]
    fn rejects_malformed_modules_dep() {
        assert!(parse_modules_dep("kernel/a.ko kernel/b.ko\n").is_err());
        assert!(parse_modules_dep(": kernel/b.ko\n").is_err());
    }

    #[rstest]
    #[case::leaf(&["llc"], &["llc"])]
    #[case::chain(&["bridge"], &["llc", "stp", "bridge"])]
    #[case::shared_deps(&["8021q", "bridge"], &["mrp", "llc", "stp", "garp", "8021q", "bridge"])]
    #[case::already_ordered(&["macvlan", "macvtap"], &["macvlan", "tap", "macvtap"])]
    #[case::dep_listed_later(&["macvtap", "macvlan", "dummy"], &["macvlan", "tap", "macvtap", "dummy"])]
    #[case::duplicates(&["dummy", "dummy"], &["dummy"])]
    fn orders_dependencies_first(#[case] roots: &[&str], #[case] expected: &[&str]) {
        let order = dependency_order(&names(roots), &graph(DEP)).unwrap();
        assert_eq!(order, names(expected));
    }

    #[test]
    fn every_module_after_its_dependencies() {
        let g = graph(DEP);
        let roots: Vec<String> = g.keys().cloned().collect();
        let order = dependency_order(&roots, &g).unwrap();
        assert_eq!(order.len(), g.len());
        for (i, name) in order.iter().enumerate() {
            for dep in &g[name] {
                let j = order.iter().position(|n| n == dep).unwrap();
                assert!(j < i, "{dep} must load before {name}");
            }
        }
    }

    #[test]
    fn cycle_is_an_error() {
        let g = graph("a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\n");
        let err = dependency_order(&names(&["a"]), &g).unwrap_err();
        assert!(err.contains("cycle: a -> b -> c -> a"), "{err}");
    }

    #[test]
    fn unknown_dependency_is_an_error() {
        let g = graph("a.ko: b.ko\n");
        let err = dependency_order(&names(&["a"]), &g).unwrap_err();
        assert!(err.contains("unknown module b (needed by a)"), "{err}");
    }

    #[rstest]
    #[case("kernel/net/8021q/8021q.ko", "8021q")]
    #[case("kernel/drivers/net/ipvlan/ipvlan.ko.xz", "ipvlan")]
    #[case("nf-nat.ko.zst", "nf_nat")]
    #[case("macvlan", "macvlan")]
    fn module_names(#[case] file: &str, #[case] name: &str) {
        assert_eq!(module_name(file), name);
    }

    #[test]
    fn builtin_list() {
        let builtin = parse_builtin("kernel/drivers/net/tun.ko\n\nkernel/net/ipv4/udp_tunnel.ko\n");
        assert_eq!(
            builtin.into_iter().collect::<Vec<_>>(),
            names(&["tun", "udp_tunnel"])
        );
    }

    /// A minimal ELF64 LE file with sections: null, `.shstrtab`, `.modinfo`.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let strtab_off = elf.len();
        elf.extend_from_slice(shstrtab);
        let modinfo_off = elf.len();
        elf.extend_from_slice(modinfo);
        while elf.len() % 8 != 0 {
            elf.push(0);
        }
        let shoff = elf.len();
        let sections = [
            (0u32, 0usize, 0usize),
            (1, strtab_off, shstrtab.len()),
            (11, modinfo_off, modinfo.len()),
        ];
        for (name, off, size) in sections {
            let mut sh = [0u8; 64];
            sh[0..4].copy_from_slice(&name.to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&sh);
        }
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[rstest]
    #[case::two(b"license=GPL\0depends=stp,llc\0intree=Y\0".as_slice(), &["stp", "llc"])]
    #[case::none(b"license=GPL\0depends=\0name=dummy\0".as_slice(), &[])]
    #[case::dashes(b"depends=ip6-udp-tunnel\0".as_slice(), &["ip6_udp_tunnel"])]
    #[case::absent(b"license=GPL\0".as_slice(), &[])]
    fn reads_modinfo_depends(#[case] modinfo: &[u8], #[case] expected: &[&str]) {
        let elf = elf_with_modinfo(modinfo);
        assert_eq!(modinfo_depends(&elf).unwrap(), names(expected));
    }

    /// A fresh, empty directory under the system's temp dir.
    fn temp_tree(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn put(root: &Path, rel: &str, data: &[u8]) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    #[test]
    fn plans_from_modinfo_without_modules_dep() {
        // A tree as `dpkg -x` leaves it: no modules.dep, dependencies in .modinfo.
        let root = temp_tree("modinfo");
        put(
            &root,
            "kernel/net/llc/llc.ko",
            &elf_with_modinfo(b"depends=\0"),
        );
        put(
            &root,
            "kernel/net/802/stp.ko",
            &elf_with_modinfo(b"depends=llc\0"),
        );
        put(
            &root,
            "kernel/net/bridge/bridge.ko",
            &elf_with_modinfo(b"depends=stp,llc\0"),
        );
        put(
            &root,
            "kernel/drivers/net/dummy.ko",
            &elf_with_modinfo(b"depends=\0"),
        );
        put(&root, "modules.builtin", b"kernel/drivers/net/tun.ko\n");
        let plan = ModuleDir::open(&root)
            .unwrap()
            .plan(&["bridge", "tun", "dummy", "ipvlan"])
            .unwrap();
        let order: Vec<&str> = plan.order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["llc", "stp", "bridge", "dummy"]);
        assert_eq!(plan.order[2].1, root.join("kernel/net/bridge/bridge.ko"));
        assert_eq!(plan.builtin, ["tun"]);
        assert_eq!(plan.missing, ["ipvlan"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn plans_from_modules_dep_and_refuses_compressed() {
        let root = temp_tree("dep");
        put(&root, "modules.dep", DEP.as_bytes());
        let dir = ModuleDir::open(&root).unwrap();
        let plan = dir.plan(&["macvtap"]).unwrap();
        let order: Vec<&str> = plan.order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["macvlan", "tap", "macvtap"]);
        let err = dir.plan(&["ip-vlan"]).unwrap_err();
        assert!(
            err.contains("compressed modules are not supported"),
            "{err}"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn empty_tree_is_an_error() {
        let root = temp_tree("empty");
        let err = ModuleDir::open(&root).unwrap_err();
        assert!(
            err.contains("neither modules.dep nor any .ko file"),
            "{err}"
        );
        fs::remove_dir_all(&root).unwrap();
        assert!(
            ModuleDir::open(&root).is_err(),
            "a missing directory is an error"
        );
    }

    #[rstest]
    #[case::not_elf(b"hello world".to_vec())]
    #[case::truncated(elf_with_modinfo(b"depends=a\0")[..100].to_vec())]
    fn bad_elf_is_an_error(#[case] bytes: Vec<u8>) {
        assert!(modinfo_depends(&bytes).is_err());
    }
}
