//! Static files over real loopback sockets, and every way a path tries to leave
//! the served directory.
//!
//! A fresh directory under the system's temp dir holds the served root, a file
//! *next to* it (the secret a traversal would reach), a subdirectory with an
//! `index.html`, and two symlinks: one pointing outside the root, one inside.
//! Each request goes over a real socket to a [`Router::files`] server.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{IO_TIMEOUT, read_to_eof, serve};
use sockstep::http::{Limits, Parsed, Request, Response, Router, parse_response};
use sockstep::tcp::serve::Server;
use sockstep::trace::Trace;

const ALPHA: &[u8] = b"alpha\n";
const INDEX: &[u8] = b"<!doctype html><title>sub</title>\n";
const SECRET: &[u8] = b"the secret next to the served directory\n";

/// A temporary tree, removed when dropped (also when a test fails).
struct Tree {
    base: PathBuf,
}

impl Tree {
    /// ```text
    /// BASE/secret.txt                 outside the served root
    /// BASE/root/a.txt                 "alpha\n"
    /// BASE/root/page.html, style.css, data.bin (all 256 byte values)
    /// BASE/root/sub/index.html
    /// BASE/root/empty/                no index.html
    /// BASE/root/link-out -> ../secret.txt
    /// BASE/root/link-in  -> a.txt
    /// BASE/root/dir-out  -> ..        (a directory symlink leaving the root)
    /// ```
    fn new() -> Tree {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let base = std::env::temp_dir().join(format!(
            "sockstep-http-files-{}-{nanos}",
            std::process::id()
        ));
        let tree = Tree { base };
        let root = tree.root();
        fs::create_dir_all(root.join("sub")).expect("mkdir sub");
        fs::create_dir_all(root.join("empty")).expect("mkdir empty");
        fs::write(tree.base.join("secret.txt"), SECRET).expect("write secret");
        fs::write(root.join("a.txt"), ALPHA).expect("write a.txt");
        fs::write(root.join("page.html"), b"<p>page</p>\n").expect("write page");
        fs::write(root.join("style.css"), b"p { color: red }\n").expect("write css");
        fs::write(root.join("data.bin"), all_bytes()).expect("write data.bin");
        fs::write(root.join("sub/index.html"), INDEX).expect("write index");
        std::os::unix::fs::symlink("../secret.txt", root.join("link-out")).expect("symlink");
        std::os::unix::fs::symlink("a.txt", root.join("link-in")).expect("symlink");
        std::os::unix::fs::symlink("..", root.join("dir-out")).expect("symlink");
        tree
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn all_bytes() -> Vec<u8> {
    (0..=255).collect()
}

fn start(root: &Path) -> Server {
    let router = Router::new()
        .files("/files/", root)
        .expect("the root is a directory")
        .route("GET", "/hello", |_: &Request| {
            Response::text(200, "hello\n")
        });
    serve(16, common::config(16), router, &Trace::off())
}

/// Sends `method target` on a fresh connection and reads the whole answer.
fn request(addr: SocketAddr, method: &str, target: &str) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let wire = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(wire.as_bytes()).expect("write");
    let got = read_to_eof(&mut stream).unwrap_or_else(|(got, e)| panic!("{e} after {got:?}"));
    match parse_response(&got, method, &Limits::default()) {
        Ok(Parsed::Complete { message, consumed }) => {
            assert_eq!(
                consumed,
                got.len(),
                "{method} {target}: bytes after the response"
            );
            message
        }
        other => panic!(
            "{method} {target}: {other:?} from {:?}",
            String::from_utf8_lossy(&got)
        ),
    }
}

fn get(addr: SocketAddr, target: &str) -> Response {
    request(addr, "GET", target)
}

#[test]
fn a_file_is_served_with_its_exact_bytes_and_content_type() {
    let tree = Tree::new();
    let server = start(&tree.root());
    let addr = server.local_addr();
    for (target, content_type, body) in [
        ("/files/a.txt", "text/plain; charset=utf-8", ALPHA.to_vec()),
        (
            "/files/page.html",
            "text/html; charset=utf-8",
            b"<p>page</p>\n".to_vec(),
        ),
        (
            "/files/style.css",
            "text/css; charset=utf-8",
            b"p { color: red }\n".to_vec(),
        ),
        ("/files/data.bin", "application/octet-stream", all_bytes()),
        (
            "/files/a.txt?version=2",
            "text/plain; charset=utf-8",
            ALPHA.to_vec(),
        ),
    ] {
        let response = get(addr, target);
        assert_eq!(response.status, 200, "{target}");
        assert_eq!(
            response.headers.get("content-type"),
            Some(content_type),
            "{target}"
        );
        assert_eq!(response.body, body, "{target}");
    }
}

#[test]
fn a_directory_is_served_as_its_index_html() {
    let tree = Tree::new();
    let server = start(&tree.root());
    for target in ["/files/sub/", "/files/sub", "/files/sub/index.html"] {
        let response = get(server.local_addr(), target);
        assert_eq!(response.status, 200, "{target}");
        assert_eq!(response.body, INDEX, "{target}");
        assert_eq!(
            response.headers.get("content-type"),
            Some("text/html; charset=utf-8")
        );
    }
    // A directory without one has nothing to serve.
    for target in ["/files/", "/files/empty/"] {
        assert_eq!(get(server.local_addr(), target).status, 404, "{target}");
    }
}

#[test]
fn every_spelling_of_a_path_out_of_the_directory_is_403() {
    let tree = Tree::new();
    let server = start(&tree.root());
    for target in [
        "/files/../secret.txt",
        "/files/sub/../../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/.%2e/secret.txt",
        "/files/%2E%2e%2fsecret.txt",
        "/files/..%2fsecret.txt",
        "/files/sub%2f..%2f..%2fsecret.txt",
        "/files/%2fetc%2fpasswd",
        "/files//etc/passwd",
        "/files/..\\secret.txt",
        "/files/sub\\..\\..\\secret.txt",
        "/files/%5c..%5csecret.txt",
        "/files/./a.txt",
    ] {
        let response = get(server.local_addr(), target);
        assert_eq!(response.status, 403, "{target}");
        assert!(!response.body.windows(SECRET.len()).any(|w| w == SECRET));
    }
}

#[test]
fn malformed_escapes_nul_and_control_bytes_are_400() {
    let tree = Tree::new();
    let server = start(&tree.root());
    for target in [
        "/files/%zz",
        "/files/%2",
        "/files/a.txt%",
        "/files/%00",
        "/files/a.txt%00.html",
        "/files/%0d%0aSet-Cookie:x",
        "/files/%1b",
        "/files/%7f",
        "/files/%c3%28",
    ] {
        assert_eq!(get(server.local_addr(), target).status, 400, "{target}");
    }
}

#[test]
fn a_symlink_out_of_the_directory_is_403_and_one_inside_is_served() {
    let tree = Tree::new();
    let server = start(&tree.root());
    let out = get(server.local_addr(), "/files/link-out");
    assert_eq!(out.status, 403);
    assert!(!out.body.windows(SECRET.len()).any(|w| w == SECRET));
    for target in [
        "/files/dir-out/secret.txt",
        "/files/dir-out",
        "/files/dir-out/",
    ] {
        assert_eq!(get(server.local_addr(), target).status, 403, "{target}");
    }
    let inside = get(server.local_addr(), "/files/link-in");
    assert_eq!((inside.status, inside.body.as_slice()), (200, ALPHA));
    // A directory symlink that stays inside, at any depth of the path.
    std::os::unix::fs::symlink("sub", tree.root().join("sub-link")).expect("symlink");
    std::os::unix::fs::symlink("../link-in", tree.root().join("sub/up-link")).expect("symlink");
    for (target, body) in [
        ("/files/sub-link/", INDEX),
        ("/files/sub-link/index.html", INDEX),
        ("/files/sub/up-link", ALPHA),
        ("/files/sub-link/up-link", ALPHA),
    ] {
        let response = get(server.local_addr(), target);
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, body),
            "{target}"
        );
    }
}

#[test]
fn a_fifo_is_refused_without_opening_it_and_a_file_too_large_is_500() {
    let tree = Tree::new();
    let server = start(&tree.root());
    // Opening a FIFO for reading blocks until a writer comes: a server that
    // opened before looking would hang this request's thread (and the test,
    // whose reads would then time out).
    let made = std::process::Command::new("mkfifo")
        .arg(tree.root().join("pipe"))
        .status();
    match made {
        Ok(status) if status.success() => {
            let response = get(server.local_addr(), "/files/pipe");
            assert_eq!(response.status, 403);
        }
        _ => eprintln!("SKIPPED the FIFO half: mkfifo did not run ({made:?})"),
    }
    // Sparse: 16 MiB + 1 byte of file system, almost nothing on disk.
    let big = fs::File::create(tree.root().join("big.bin")).expect("create big.bin");
    big.set_len(sockstep::http::files::MAX_FILE + 1)
        .expect("set_len");
    let response = get(server.local_addr(), "/files/big.bin");
    assert_eq!(response.status, 500);
    assert!(
        String::from_utf8_lossy(&response.body).contains("larger than"),
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
}

#[test]
fn a_missing_file_is_404_and_a_double_encoded_dot_dot_is_only_a_name() {
    let tree = Tree::new();
    let server = start(&tree.root());
    for target in [
        "/files/missing.txt",
        "/files/sub/missing.html",
        "/files/%252e%252e/secret.txt",
    ] {
        assert_eq!(get(server.local_addr(), target).status, 404, "{target}");
    }
}

#[test]
fn head_on_a_file_has_its_length_and_no_body() {
    let tree = Tree::new();
    let server = start(&tree.root());
    let mut stream = TcpStream::connect_timeout(&server.local_addr(), IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
        .write_all(b"HEAD /files/data.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .expect("the head, then end of stream");
    let text = String::from_utf8(got).expect("an ASCII head");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 256\r\n"), "{text}");
    assert!(
        text.contains("Content-Type: application/octet-stream\r\n"),
        "{text}"
    );
    assert_eq!(
        text.find("\r\n\r\n"),
        Some(text.len() - 4),
        "a body came: {text:?}"
    );
}

#[test]
fn files_answer_get_and_head_only() {
    let tree = Tree::new();
    let server = start(&tree.root());
    let response = request(server.local_addr(), "DELETE", "/files/a.txt");
    assert_eq!(response.status, 405);
    assert_eq!(response.headers.get("allow"), Some("GET, HEAD"));
    assert!(tree.root().join("a.txt").exists());
}

#[test]
fn an_absolute_form_target_serves_the_same_file() {
    let tree = Tree::new();
    let server = start(&tree.root());
    let response = get(server.local_addr(), "http://test/files/a.txt");
    assert_eq!((response.status, response.body.as_slice()), (200, ALPHA));
    assert_eq!(
        get(server.local_addr(), "http://test/files/../secret.txt").status,
        403
    );
}

#[test]
fn the_tree_is_removed_when_the_test_ends() {
    let base = {
        let tree = Tree::new();
        assert!(tree.root().join("a.txt").is_file());
        tree.base.clone()
    };
    assert!(!base.exists(), "{} is left behind", base.display());
}
