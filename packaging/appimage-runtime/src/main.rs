//! Loupe's AppImage runtime: the static executable at the head of `Loupe-*.AppImage`.
//!
//! An AppImage (type 2) is an ELF runtime with `AI\x02` at offset 8, followed by a SquashFS
//! image of the AppDir that starts where the ELF file ends. The AppImage project's runtime
//! mounts the image with FUSE; it is not packaged by any registry Loupe's build machines reach,
//! so this one extracts instead ("extract and run", which the official runtime also does when
//! FUSE is missing): once per AppImage into `$XDG_CACHE_HOME/loupe-appimage/`, then runs
//! `AppRun` from there with `APPIMAGE`, `APPDIR` and `ARGV0` set as the official runtime sets
//! them. It needs no FUSE. It understands the runtime options tools rely on:
//! `--appimage-extract` (into `./squashfs-root`), `--appimage-offset`, `--appimage-help` and
//! `--appimage-version`. `packaging/build.sh linux` builds it and assembles the AppImage.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::UNIX_EPOCH;

use backhand::{FilesystemReader, InnerNode};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("AppImage runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let exe = fs::read_link("/proc/self/exe")
        .map_err(|e| format!("cannot find its own file through /proc/self/exe: {e}"))?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let offset = payload_offset(&exe)?;
    match args.get(1).and_then(|a| a.to_str()) {
        Some("--appimage-offset") => {
            println!("{offset}");
            Ok(ExitCode::SUCCESS)
        }
        Some("--appimage-version") => {
            println!("Loupe AppImage runtime {VERSION} (extract and run, no FUSE)");
            Ok(ExitCode::SUCCESS)
        }
        Some("--appimage-help") => {
            println!(
                "AppImage options: --appimage-extract, --appimage-offset, --appimage-version, \
                 --appimage-help. Anything else is passed to the application."
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("--appimage-extract") => {
            let dest = PathBuf::from("squashfs-root");
            extract(&exe, offset, &dest)?;
            println!("{}", dest.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(other) if other.starts_with("--appimage-") => Err(format!(
            "{other} is not supported by this runtime (see --appimage-help)"
        )),
        _ => {
            let appdir = cached_appdir(&exe, offset)?;
            let argv0 = args.first().cloned().unwrap_or_default();
            let err = Command::new(appdir.join("AppRun"))
                .args(&args[1.min(args.len())..])
                .env("APPIMAGE", &exe)
                .env("APPDIR", &appdir)
                .env("ARGV0", argv0)
                .exec();
            Err(format!(
                "cannot run {}: {err}",
                appdir.join("AppRun").display()
            ))
        }
    }
}

/// Where the SquashFS image starts: the end of the ELF file, i.e. the end of its section
/// header table (which linkers put last).
fn payload_offset(exe: &Path) -> Result<u64, String> {
    let mut head = [0u8; 64];
    File::open(exe)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return Err(format!(
            "{} is not a 64-bit little-endian ELF file",
            exe.display()
        ));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    let section_headers = u64_at(0x28);
    let entry_size = u64::from(u16_at(0x3A));
    let entries = u64::from(u16_at(0x3C));
    Ok(section_headers + entry_size * entries)
}

/// The AppDir in the user's cache, extracted on first use. The folder is named after the
/// AppImage's size, modification time and offset, so a new AppImage gets a new folder.
fn cached_appdir(exe: &Path, offset: u64) -> Result<PathBuf, String> {
    let meta = fs::metadata(exe).map_err(|e| format!("cannot stat {}: {e}", exe.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("loupe-appimage");
    let dir = cache.join(format!("{}-{mtime}-{offset}", meta.len()));
    if dir.join("AppRun").exists() {
        return Ok(dir);
    }
    // Extract beside the final folder and rename, so that a run that is interrupted (or two
    // started at once) never leaves a half-extracted AppDir under the final name.
    let partial = cache.join(format!(".partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    extract(exe, offset, &partial)?;
    match fs::rename(&partial, &dir) {
        Ok(()) => {}
        // Another run finished first: use its copy.
        Err(_) if dir.join("AppRun").exists() => {
            let _ = fs::remove_dir_all(&partial);
        }
        Err(e) => return Err(format!("cannot move the AppDir to {}: {e}", dir.display())),
    }
    Ok(dir)
}

/// Writes the SquashFS image at `offset` in `exe` out into the folder `dest`.
fn extract(exe: &Path, offset: u64, dest: &Path) -> Result<(), String> {
    let mut file = File::open(exe).map_err(|e| format!("cannot open {}: {e}", exe.display()))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
    let fs_reader = FilesystemReader::from_reader_with_offset(BufReader::new(file), offset)
        .map_err(|e| {
            format!(
                "no SquashFS image at offset {offset} of {}: {e}",
                exe.display()
            )
        })?;
    fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    for node in fs_reader.files() {
        // Paths in the image are absolute ("/usr/bin/loupe"); keep only plain components so
        // that nothing can be written outside `dest`.
        let relative: PathBuf = node
            .fullpath
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => Some(part),
                _ => None,
            })
            .collect();
        let path = dest.join(&relative);
        let mode = u32::from(node.header.permissions) & 0o7777;
        let write_err = |e: io::Error| format!("cannot write {}: {e}", path.display());
        match &node.inner {
            InnerNode::Dir(_) => {
                fs::create_dir_all(&path).map_err(write_err)?;
                // Owner write stays on, or the next files could not be created inside.
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(write_err)?;
            }
            InnerNode::File(f) => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(write_err)?;
                }
                let mut out = File::create(&path).map_err(write_err)?;
                io::copy(&mut fs_reader.file(f).reader(), &mut out).map_err(write_err)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(write_err)?;
            }
            InnerNode::Symlink(link) => {
                let _ = fs::remove_file(&path);
                symlink(&link.link, &path).map_err(write_err)?;
            }
            // Devices, pipes and sockets have no place in an AppDir.
            _ => {}
        }
    }
    Ok(())
}
