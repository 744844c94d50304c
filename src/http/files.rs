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
//! is joined onto the directory and canonicalised (symlinks resolved), and the
//! result must still lie inside the canonical directory — that last check is what
//! catches symlinks, and it would catch anything the first rules missed.

use std::fs;
use std::io;
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
        let path = match self.locate(&request.target) {
            Ok(path) => path,
            Err((status, why)) => return Response::text(status, format!("{why}\n")),
        };
        match read_bounded(&path) {
            Ok(bytes) => Response::new(200).with_body(content_type(&path), bytes),
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
        let mut full = self.inside(&self.root.join(relative))?;
        if full.is_dir() {
            full = self.inside(&full.join("index.html"))?;
        }
        if !full.is_file() {
            return Err((403, "only regular files are served"));
        }
        Ok(full)
    }

    /// `path` with every symlink resolved, if it exists and is still inside the root.
    fn inside(&self, path: &Path) -> Result<PathBuf, Refusal> {
        let real = fs::canonicalize(path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => (403, "the path is not accessible"),
            _ => (404, "no such file"),
        })?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err((403, "the path leads outside the served directory"))
        }
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

/// The file's bytes, unless it is larger than [`MAX_FILE`].
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io::ErrorKind::FileTooLarge.into());
    }
    Ok(bytes)
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
