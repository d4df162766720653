//! Layers built by hand, byte by byte, so hostile ones can say what a well-behaved tar
//! writer would refuse to write.

use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// A tar stream assembled entry by entry.
#[derive(Default)]
struct Layer(Vec<u8>);

impl Layer {
    fn entry(
        mut self,
        kind: tar::EntryType,
        path: &str,
        link: &str,
        data: &[u8],
        mode: u32,
    ) -> Self {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn dir(self, path: &str) -> Self {
        self.entry(tar::EntryType::Directory, path, "", b"", 0o755)
    }
    fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(tar::EntryType::Regular, path, "", data, 0o644)
    }
    fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(tar::EntryType::Symlink, path, target, b"", 0o777)
    }
    fn hardlink(self, path: &str, target: &str) -> Self {
        self.entry(tar::EntryType::Link, path, target, b"", 0o644)
    }
    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

/// A sandbox: `root/layer` is where the layer goes, `root/outside` must stay untouched.
struct Sandbox {
    _dir: tempfile::TempDir,
    layer: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    let outside = dir.path().join("outside");
    fs::create_dir(&layer).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"host data").unwrap();
    Sandbox {
        _dir: dir,
        layer,
        outside,
    }
}

impl Sandbox {
    fn unpack(&self, bytes: &[u8]) -> Result<Unpacked> {
        unpack_layer(bytes, &self.layer, &Limits::default())
    }
    /// Nothing outside the layer changed.
    fn outside_untouched(&self) {
        let mut names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["secret"]);
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"host data");
    }
}

fn hostile(result: Result<Unpacked>) -> &'static str {
    match result {
        Err(UnpackError::Hostile { why, .. }) => why,
        other => panic!("expected a hostile-layer error, got {other:?}"),
    }
}

#[test]
fn an_ordinary_layer_unpacks_with_its_metadata_and_diff_id() {
    let tar = Layer::default()
        .dir("bin/")
        .entry(
            tar::EntryType::Regular,
            "bin/tool",
            "",
            b"#!/bin/sh\n",
            0o4755,
        )
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("bin/tool2", "bin/tool")
        .entry(tar::EntryType::Fifo, "run/pipe", "", b"", 0o600)
        .file("./etc/hostname", b"skiff\n")
        .finish();
    for stream in [
        tar.clone(),
        gzip(&tar),
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest),
    ] {
        let s = sandbox();
        let unpacked = s.unpack(&stream).unwrap();
        assert_eq!(unpacked.diff_id, skiff_oci::sha256_digest(&tar));
        assert_eq!(unpacked.size, tar.len() as u64);
        assert_eq!(unpacked.entries, 6);
        let tool = fs::metadata(s.layer.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid survives");
        assert_eq!(tool.mtime(), 1_700_000_000);
        assert_eq!(
            fs::read_link(s.layer.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!(
            fs::metadata(s.layer.join("bin/tool2")).unwrap().ino(),
            tool.ino()
        );
        assert!(
            fs::metadata(s.layer.join("run/pipe"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(fs::read(s.layer.join("etc/hostname")).unwrap(), b"skiff\n");
    }
}

#[test]
fn whiteouts_become_overlayfs_whiteouts() {
    let s = sandbox();
    let tar = Layer::default()
        .dir("etc/")
        .file("etc/.wh.motd", b"")
        .dir("var/cache/")
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/.wh..wh.plnk", b"")
        .finish();
    s.unpack(&tar).unwrap();
    let whiteout = fs::symlink_metadata(s.layer.join("etc/motd")).unwrap();
    if rustix::process::geteuid().is_root() {
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0);
        let mut value = [0u8; 4];
        let path = CString::new(s.layer.join("var/cache").as_os_str().as_bytes()).unwrap();
        let name = CString::new("trusted.overlay.opaque").unwrap();
        let n =
            unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), 4) };
        assert_eq!(&value[..n as usize], b"y");
    }
    assert!(!s.layer.join("etc/.wh.motd").exists());
    assert!(!s.layer.join("var/.wh..wh.plnk").exists());
}

#[test]
fn parent_directory_paths_are_refused() {
    let s = sandbox();
    let tar = Layer::default().file("../outside/pwned", b"x").finish();
    assert_eq!(hostile(s.unpack(&tar)), "climbs out with '..'");
    let tar = Layer::default()
        .file("a/../../outside/pwned", b"x")
        .finish();
    assert_eq!(hostile(s.unpack(&tar)), "climbs out with '..'");
    s.outside_untouched();
}

#[test]
fn absolute_paths_land_inside_the_layer() {
    let s = sandbox();
    let abs = format!("{}/pwned", s.outside.display());
    let tar = Layer::default().file(&abs, b"x").finish();
    s.unpack(&tar).unwrap();
    s.outside_untouched();
    assert!(s.layer.join(abs.trim_start_matches('/')).is_file());
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let s = sandbox();
    let to_outside = s.outside.display().to_string();
    let tar = Layer::default()
        .symlink("evil", &to_outside)
        .file("evil/pwned", b"x")
        .finish();
    assert_eq!(hostile(s.unpack(&tar)), "writes through a symlink");
    // The same through a relative link and a directory entry.
    let s = sandbox();
    let tar = Layer::default()
        .symlink("up", "../outside")
        .dir("up/newdir/")
        .finish();
    assert_eq!(hostile(s.unpack(&tar)), "writes through a symlink");
    s.outside_untouched();
}

#[test]
fn a_file_replacing_a_symlink_does_not_follow_it() {
    let s = sandbox();
    let secret = format!("{}/secret", s.outside.display());
    let tar = Layer::default()
        .symlink("etc-passwd", &secret)
        .file("etc-passwd", b"overwritten?")
        .finish();
    s.unpack(&tar).unwrap();
    s.outside_untouched();
    assert_eq!(
        fs::read(s.layer.join("etc-passwd")).unwrap(),
        b"overwritten?"
    );
}

#[test]
fn hard_links_must_stay_inside_the_layer() {
    let s = sandbox();
    let secret = format!("{}/secret", s.outside.display());
    let tar = Layer::default().hardlink("stolen", &secret).finish();
    // An absolute name is taken inside the layer, where nothing is there to link.
    assert_eq!(
        hostile(s.unpack(&tar)),
        "hard-links through a symlink or a missing directory"
    );
    let tar = Layer::default()
        .hardlink("stolen", "../outside/secret")
        .finish();
    assert_eq!(hostile(s.unpack(&tar)), "climbs out with '..'");
    let to_outside = s.outside.display().to_string();
    let tar = Layer::default()
        .symlink("door", &to_outside)
        .hardlink("stolen", "door/secret")
        .finish();
    assert_eq!(
        hostile(s.unpack(&tar)),
        "hard-links through a symlink or a missing directory"
    );
    assert!(!s.layer.join("stolen").exists());
    s.outside_untouched();
}

#[test]
fn device_nodes_are_not_created() {
    let s = sandbox();
    let tar = Layer::default()
        .entry(tar::EntryType::Block, "dev/sda", "", b"", 0o666)
        .entry(tar::EntryType::Char, "dev/mem", "", b"", 0o666)
        .file("ok", b"fine")
        .finish();
    s.unpack(&tar).unwrap();
    assert!(fs::symlink_metadata(s.layer.join("dev/sda")).is_err());
    assert!(fs::symlink_metadata(s.layer.join("dev/mem")).is_err());
    assert!(s.layer.join("ok").is_file());
}

#[test]
fn size_limits_hold_against_big_entries_and_bombs() {
    let limits = Limits {
        max_entry_bytes: 1024,
        max_layer_bytes: 64 * 1024,
        max_entries: 3,
    };
    let s = sandbox();
    let tar = Layer::default().file("big", &[0u8; 2048]).finish();
    assert!(matches!(
        unpack_layer(&tar[..], &s.layer, &limits),
        Err(UnpackError::Oversized {
            size: 2048,
            limit: 1024,
            ..
        })
    ));
    // A header that claims far more than the stream holds is refused before any read.
    let mut lying = Layer::default().file("liar", b"x").finish();
    let mut h = tar::Header::from_byte_slice(&lying[..512]).clone();
    h.set_size(1 << 40);
    h.set_cksum();
    lying[..512].copy_from_slice(h.as_bytes());
    assert!(matches!(
        unpack_layer(&lying[..], &s.layer, &limits),
        Err(UnpackError::Oversized { .. })
    ));
    // 1 MiB of zeros gzips to about a kilobyte: the decompressed limit stops it.
    let mut bomb = Layer::default();
    for i in 0..200 {
        bomb = bomb.file(&format!("f{i}"), &[0u8; 1000]);
    }
    let bomb = gzip(&bomb.finish());
    let generous = Limits {
        max_entries: 1_000,
        ..limits
    };
    assert!(matches!(
        unpack_layer(&bomb[..], &s.layer, &generous),
        Err(UnpackError::LayerTooLarge { limit: 65536 })
    ));
    let many = Layer::default()
        .file("a", b"")
        .file("b", b"")
        .file("c", b"")
        .file("d", b"")
        .finish();
    assert!(matches!(
        unpack_layer(&many[..], &s.layer, &limits),
        Err(UnpackError::TooManyEntries { limit: 3 })
    ));
}

#[test]
fn garbage_is_a_corrupt_layer_not_a_panic() {
    let s = sandbox();
    let mut not_gzip = vec![0x1f, 0x8b];
    not_gzip.extend_from_slice(&[7u8; 100]);
    assert!(matches!(s.unpack(&not_gzip), Err(UnpackError::Corrupt(_))));
    let truncated = &Layer::default().file("f", &[1u8; 5000]).finish()[..2000];
    assert!(s.unpack(truncated).is_err());
}
