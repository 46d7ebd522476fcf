//! How exports put files on disk: every file goes to a temporary name in its destination folder
//! and is renamed into place, and what already stands at a destination is checked first. A
//! symbolic link or a special file (FIFO, device, socket) there is refused: replacing it would
//! silently swap a link the user made (run as root on `/dev/stdout`, a naive export replaced the
//! system's link with a plain file). With `force`, links are followed and special files are
//! written into, as a shell redirection would.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::FormatError;

/// Links followed before giving up (as the kernel's own limit, `ELOOP`).
const MAX_LINKS: usize = 40;

/// Where a file of an export goes, once what stands there was checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Nothing or a regular file: written to a temporary file beside it and renamed over it.
    Replace(PathBuf),
    /// A special file reached with `force`: written into, in place (it cannot be renamed over).
    Into(PathBuf),
}

/// What kind of special file `meta` describes, for messages.
pub(crate) fn special_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    let _ = meta;
    "not a regular file"
}

/// Checks what stands at `path` and says where to write. Without `force`, a symbolic link or a
/// special file is refused; with it, links are followed (also dangling ones: their target is
/// created) and special files are written into.
pub(crate) fn destination(path: &Path, force: bool) -> Result<Destination, FormatError> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&current) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Destination::Replace(current));
            }
            Err(e) => return Err(FormatError::io(&current, e)),
        };
        let file_type = meta.file_type();
        if file_type.is_file() {
            return Ok(Destination::Replace(current));
        }
        if file_type.is_dir() {
            return Err(FormatError::export(
                &current,
                "a folder stands where a file is to be written",
            ));
        }
        if file_type.is_symlink() {
            let target = std::fs::read_link(&current).map_err(|e| FormatError::io(&current, e))?;
            if !force {
                return Err(FormatError::export(
                    &current,
                    format!(
                        "is a symbolic link (to {}); refusing to replace it: choose another path, or pass --force to write through it",
                        target.display()
                    ),
                ));
            }
            current = match current.parent() {
                Some(parent) if target.is_relative() => parent.join(target),
                _ => target,
            };
            continue;
        }
        if !force {
            return Err(FormatError::export(
                &current,
                format!(
                    "is {}, not a regular file; refusing to write there (pass --force to write into it, or `-` for standard output)",
                    special_kind(&meta)
                ),
            ));
        }
        return Ok(Destination::Into(current));
    }
    Err(FormatError::export(
        path,
        format!("more than {MAX_LINKS} symbolic links in a row"),
    ))
}

/// A temporary file beside `target`, created new (never through an existing link).
fn create_temporary(target: &Path) -> io::Result<(PathBuf, File)> {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut attempt = 0u32;
    loop {
        let tmp = dir.join(format!(
            ".{name}.{}.{attempt}.loupe-tmp",
            std::process::id()
        ));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `target` through `write`: to a temporary file in its folder renamed over it, or into
/// the special file `force` allowed. A failure leaves no half-written file behind.
pub(crate) fn write_with(
    target: &Path,
    force: bool,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), FormatError> {
    match destination(target, force)? {
        Destination::Into(special) => {
            let file = OpenOptions::new()
                .write(true)
                .open(&special)
                .map_err(|e| FormatError::io(&special, e))?;
            let mut w = BufWriter::with_capacity(1 << 16, file);
            write(&mut w)
                .and_then(|()| w.flush())
                .map_err(|e| FormatError::io(&special, e))
        }
        Destination::Replace(real) => {
            if let Some(parent) = real.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| FormatError::io(parent, e))?;
            }
            let (tmp, file) = create_temporary(&real).map_err(|e| FormatError::io(&real, e))?;
            let result = (|| {
                let mut w = BufWriter::with_capacity(1 << 20, file);
                write(&mut w)?;
                // No fsync: the rename makes the file appear whole or not at all, which is
                // what matters here, and syncing hundreds of megabytes would dominate the
                // export time.
                w.into_inner().map_err(io::IntoInnerError::into_error)?;
                std::fs::rename(&tmp, &real)
            })();
            result.map_err(|e| {
                // Best effort: the temporary file is garbage either way.
                let _ = std::fs::remove_file(&tmp);
                FormatError::io(&real, e)
            })
        }
    }
}

/// Writes `contents` to `path` as [`write_with`] does.
pub(crate) fn write_file(path: &Path, contents: &[u8], force: bool) -> Result<(), FormatError> {
    write_with(path, force, |w| w.write_all(contents))
}

/// How [`place_image`] put an image in place.
#[derive(Debug)]
pub(crate) enum Placed {
    Linked,
    /// Copied; with the hard link's error when a link was asked for and failed.
    Copied(Option<io::Error>),
}

/// Puts the image `from` at `to`: a hard link when `link` and possible, else a copy, made under
/// a temporary name and renamed into place. What stands at `to` is checked as for every export
/// file.
pub(crate) fn place_image(
    from: &Path,
    to: &Path,
    link: bool,
    force: bool,
) -> Result<Placed, FormatError> {
    let real = match destination(to, force)? {
        Destination::Into(special) => {
            let mut source = File::open(from).map_err(|e| FormatError::io(from, e))?;
            write_with(&special, true, |w| io::copy(&mut source, w).map(|_| ()))?;
            return Ok(Placed::Copied(None));
        }
        Destination::Replace(real) => real,
    };
    if let Some(parent) = real.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| FormatError::io(parent, e))?;
    }
    let mut link_error = None;
    if link {
        let (tmp, file) = create_temporary(&real).map_err(|e| FormatError::io(&real, e))?;
        drop(file);
        // `hard_link` will not replace the placeholder: remove it, keeping its unique name.
        let _ = std::fs::remove_file(&tmp);
        match std::fs::hard_link(from, &tmp) {
            Ok(()) => {
                return std::fs::rename(&tmp, &real)
                    .map(|()| Placed::Linked)
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        FormatError::io(&real, e)
                    });
            }
            Err(e) => link_error = Some(e),
        }
    }
    let mut source = File::open(from).map_err(|e| FormatError::io(from, e))?;
    write_with(&real, false, |w| io::copy(&mut source, w).map(|_| ()))?;
    Ok(Placed::Copied(link_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_special_files_are_refused_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.json");
        std::fs::write(&real, "old").expect("write");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).expect("symlink");

        let err = write_file(&link, b"new", false).expect_err("a link is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
        assert_eq!(std::fs::read_to_string(&real).expect("read"), "old");

        // Forced: written through the link, which stays a link.
        write_file(&link, b"new", true).expect("forced");
        assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
        assert_eq!(std::fs::read_to_string(&real).expect("read"), "new");

        // A dangling link, forced, creates its target.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink("made.json", &dangling).expect("symlink");
        assert!(write_file(&dangling, b"x", false).is_err());
        write_file(&dangling, b"x", true).expect("forced");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("made.json")).expect("read"),
            "x"
        );

        // A device is refused, and with force written into, never replaced.
        let err = write_file(Path::new("/dev/null"), b"x", false).expect_err("device");
        assert!(err.to_string().contains("a device"), "{err}");
        write_file(Path::new("/dev/null"), b"x", true).expect("forced into /dev/null");
        assert!(
            !std::fs::symlink_metadata("/dev/null")
                .expect("null")
                .is_file()
        );

        // Nothing temporary is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("loupe-tmp")), "{names:?}");
    }
}
