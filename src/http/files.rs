//! Static files from one directory, and every way a request path tries to leave it.
//!
//! # The idea
//!
//! A static file server maps a URL path onto a directory: `/files/a/b.txt` under
//! the prefix `/files/` is `DIR/a/b.txt`. The danger is a path that maps onto
//! something *outside* `DIR` — "path traversal", the oldest bug of file servers.
//! A request can try it in several spellings, and [`StaticDir::locate`] refuses
//! each one with `403 Forbidden`, before touching the file system where it can:
//!
//! | the request says                  | why it would escape                      |
//! |-----------------------------------|------------------------------------------|
//! | `/files/../secret`                | `..` climbs out of the directory         |
//! | `/files/%2e%2e/secret`            | the same, percent-encoded (`%2e` is `.`) |
//! | `/files/%2E%2e%2fsecret`          | encoded `/` hides a segment boundary     |
//! | `/files//etc/passwd`              | an absolute path after the prefix        |
//! | `/files/a\..\..\secret`           | `\` is a separator on other systems      |
//! | `/files/link` → symlink to `/etc` | the file system itself points outside    |
//!
//! The rules: decode percent-escapes strictly (a malformed escape, a NUL or a
//! control byte is 400), then split on `/` and refuse any segment that is `.` or
//! `..` or contains `\`, and refuse a remainder that starts with `/`. What is left
//! is walked from the directory one component at a time, and a component that
//! is a symlink is resolved and must still lead inside the directory — that
//! check is what catches symlinks, and it would catch anything the first rules
//! missed.
//!
//! # Checking the file that is opened, cheaply
//!
//! A path under the root with no `..` and no symlink in it cannot leave the
//! root. So the walk asks each component what it is *without following it*
//! (`lstat`; for `/files/a.txt`, one call, whose answer also says whether it is
//! a regular file and how large). Only a path with a symlink in it takes the
//! slow road: `canonicalize` (realpath(3), a `readlink` per component), the
//! result checked against the root, and walked again.
//!
//! Between that look and the `open`, someone who can write in the directory
//! could swap a component for a symlink, and the server would open what the
//! walk never saw. So once open, the file is asked who it is (`fstat`: device
//! and inode), and it must be the very file the walk found; anything else is
//! refused. (Asking the kernel where the descriptor leads, `readlink
//! /proc/self/fd/N`, would do the same; it cost 13 % of the server's CPU on
//! this route — more than `openat` — in `perf`, and `fstat` a fraction of it.)
//! A request for a file directly under the root costs five system calls:
//! `lstat`, `openat`, `fstat`, one `read` of as many bytes as the walk said,
//! `close` — nginx makes four (`openat`, `fstat`, `pread64`, `close`).

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::http::server::request_path;
use crate::http::wire::{Request, Response};
use crate::step::Step;

/// The largest file [`StaticDir`] serves: responses are built in memory, so this
/// bounds what one request can make the server hold.
pub const MAX_FILE: u64 = 16 << 20;

/// Serves the files under one directory at a URL prefix. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct StaticDir {
    root: PathBuf,
    prefix: String,
}

/// Why a path was not served: the status and a sentence for the response body.
pub type Refusal = (u16, &'static str);

impl StaticDir {
    /// Serves `dir` at `prefix` (for example `/files/`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `dir` does not exist or is not a directory.
    pub fn new(dir: impl AsRef<Path>, prefix: &str) -> Result<StaticDir, Error> {
        let dir = dir.as_ref();
        let root = fs::canonicalize(dir)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                Error::new(
                    Step::Parse,
                    ErrorKind::InvalidInput(format!(
                        "{} is not a directory we can serve files from",
                        dir.display()
                    )),
                )
            })?;
        Ok(StaticDir {
            root,
            prefix: prefix.to_string(),
        })
    }

    /// The answer to a `GET` (or `HEAD`) for `request`: the file with its
    /// `Content-Type`, or the refusal's status.
    pub fn respond(&self, request: &Request) -> Response {
        let found = match self.open(&request.target) {
            Ok(found) => found,
            Err((status, why)) => return Response::text(status, format!("{why}\n")),
        };
        match found.read() {
            Ok(bytes) => Response::new(200).with_body(content_type(&found.path), bytes),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Response::text(403, "the file is not readable\n")
            }
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                Response::text(500, format!("the file is larger than {MAX_FILE} bytes\n"))
            }
            Err(_) => Response::text(500, "the file could not be read\n"),
        }
    }

    /// The file a request target names, or why it is refused.
    ///
    /// ```
    /// # let dir = std::env::temp_dir();
    /// use sockstep::http::files::StaticDir;
    ///
    /// let files = StaticDir::new(&dir, "/files/")?;
    /// assert_eq!(files.locate("/files/../etc/passwd").unwrap_err().0, 403);
    /// assert_eq!(files.locate("/files/%2e%2e/etc/passwd").unwrap_err().0, 403);
    /// assert_eq!(files.locate("/files/%zz").unwrap_err().0, 400);
    /// # Ok::<(), sockstep::Error>(())
    /// ```
    ///
    /// # Errors
    /// 400 for a malformed path, 403 for one that would leave the directory or
    /// is not a regular file, 404 for one that does not exist.
    pub fn locate(&self, target: &str) -> Result<PathBuf, Refusal> {
        self.open(target).map(|found| found.path)
    }

    /// The file a request target names, opened, with where it really is and
    /// how large it was; or why it is refused.
    fn open(&self, target: &str) -> Result<Found, Refusal> {
        let (mut relative, mut metadata) = self.resolve(&self.candidate(target)?)?;
        if metadata.is_dir() {
            relative.push("index.html");
            (relative, metadata) = self.resolve(&relative)?;
        }
        if !metadata.is_file() {
            return Err((403, "only regular files are served"));
        }
        let path = self.root.join(&relative);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => (403, "the file is not readable"),
            _ => (404, "no such file"),
        })?;
        if !same_file(&file, &metadata) {
            return Err((403, "the file changed while it was being opened"));
        }
        Ok(Found {
            file,
            path,
            len: metadata.len(),
        })
    }

    /// `relative` as a path under the root without a symlink in it, and what
    /// its last component is: the walk of the [module docs](self), and the
    /// slow road when a component is a symlink.
    fn resolve(&self, relative: &Path) -> Result<(PathBuf, Metadata), Refusal> {
        if let Some(metadata) = self.walk(relative)? {
            return Ok((relative.to_path_buf(), metadata));
        }
        let real = fs::canonicalize(self.root.join(relative)).map_err(refusal)?;
        let inside = real
            .strip_prefix(&self.root)
            .map_err(|_| (403, "the path leads outside the served directory"))?;
        // Walked again: a symlink now is one swapped in since canonicalize.
        match self.walk(inside)? {
            Some(metadata) => Ok((inside.to_path_buf(), metadata)),
            None => Err((403, "the path changed while it was being looked at")),
        }
    }

    /// What the last component of `relative` is (the root's own metadata for
    /// an empty path), asking each component in turn without following it;
    /// `None` as soon as one is a symlink.
    fn walk(&self, relative: &Path) -> Result<Option<Metadata>, Refusal> {
        let mut path = self.root.clone();
        let mut last = None;
        for component in relative.components() {
            path.push(component);
            let found = fs::symlink_metadata(&path).map_err(refusal)?;
            if found.file_type().is_symlink() {
                return Ok(None);
            }
            last = Some(found);
        }
        match last {
            Some(metadata) => Ok(Some(metadata)),
            None => fs::symlink_metadata(&path).map(Some).map_err(refusal),
        }
    }

    /// The path under the root that `target` names, relative to it, by the
    /// rules of the [module docs](self), before the file system is asked
    /// anything.
    fn candidate(&self, target: &str) -> Result<PathBuf, Refusal> {
        // The absolute-form a proxy sends (`http://host/files/a`) names the same
        // file as `/files/a` (RFC 9112 §3.2.2), and the router routes both here.
        let path = request_path(target).ok_or((400, "the request target is not a path"))?;
        let rest = path
            .strip_prefix(self.prefix.as_str())
            .ok_or((404, "not under this directory's prefix"))?;
        let decoded = percent_decode(rest)?;
        if decoded.starts_with('/') {
            return Err((403, "absolute paths are not served"));
        }
        let mut relative = PathBuf::new();
        for segment in decoded.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." || segment.contains('\\') {
                return Err((403, "the path would leave the served directory"));
            }
            relative.push(segment);
        }
        Ok(relative)
    }
}

/// A file [`StaticDir::open`] found: open, at its real path, of the size its
/// metadata said.
struct Found {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Found {
    /// The file's bytes as large as its metadata said, unless that is more
    /// than [`MAX_FILE`]: one `read` into a buffer of that size. A file that
    /// grew since is served as it was when looked at (as nginx does); one
    /// that shrank, as far as it still goes.
    fn read(&self) -> io::Result<Vec<u8>> {
        if self.len > MAX_FILE {
            return Err(io::ErrorKind::FileTooLarge.into());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        (&self.file).take(self.len).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// A path the file system would not show us: forbidden or missing.
fn refusal(e: io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::PermissionDenied => (403, "the path is not accessible"),
        _ => (404, "no such file"),
    }
}

/// Whether the open `file` is the one `found` describes: the same device and
/// inode (fstat). Where std does not tell them, the walk has to be trusted.
fn same_file(file: &File, found: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata()
            .is_ok_and(|opened| (opened.dev(), opened.ino()) == (found.dev(), found.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, found);
        true
    }
}

/// Percent-decoding (RFC 3986 §2.1) that refuses rather than guesses: `%` must
/// be followed by two hex digits, and the result must be UTF-8 without control bytes.
fn percent_decode(s: &str) -> Result<String, Refusal> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or((400, "a % escape is cut short"))?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or((400, "a % escape is not two hex digits"))?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| (400, "the path is not UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err((400, "the path contains a control character"));
    }
    Ok(text)
}

/// The media type of the file types a small site has.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_file_is_the_same_file_only_as_the_one_looked_at() {
        let dir = std::env::temp_dir().join(format!("sockstep-same-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let looked_at = fs::symlink_metadata(&a).unwrap();
        assert!(same_file(&File::open(&a).unwrap(), &looked_at));
        assert!(!same_file(&File::open(&b).unwrap(), &looked_at));
        // Swapped after the look: a new file under the old name.
        fs::rename(&b, &a).unwrap();
        assert!(!same_file(&File::open(&a).unwrap(), &looked_at));
        fs::remove_dir_all(&dir).unwrap();
    }
}
