//! Our HTTP server and client with real peers: our server driven by `curl` and
//! by Python's `http.client`; our client against Python's `http.server`.
//!
//! A peer that is not installed is a loud skip (`SKIPPED: …` on stderr), never a
//! silent pass. Every child runs under a deadline and is killed when it passes;
//! every Python server also exits on its own after a minute.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::process::wait_or_kill;
use common::{IO_TIMEOUT, TIMEOUTS};
use sockstep::http::client::{Client, ClientConfig};
use sockstep::http::server::{Router, echo};
use sockstep::http::{Headers, Limits, Parsed, Request, Response, parse_request};
use sockstep::tcp::serve::Server;
use sockstep::trace::Trace;

/// Longer than anything here should take, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Peers: finding them, running them under a deadline.
// ---------------------------------------------------------------------------

/// Says loudly that a test did not run. Straight to the stderr handle: the test
/// harness captures `eprintln!` of passing tests, which would hide the skip.
fn skipped(test: &str, tool: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {test}: {tool} not found on PATH (or it does not run); install it to run this test ***\n"
    );
}

/// Whether `program args…` can be started and succeeds.
fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn have_curl(test: &str) -> bool {
    let found = works("curl", &["--version"]);
    if !found {
        skipped(test, "curl");
    }
    found
}

/// The Python interpreter behind `python3` on PATH, asked once per test binary.
///
/// A version manager's shim may exist without a Python behind it, so it is asked
/// to run; and since a shim can cost a second per start on a loaded machine, the
/// tests run the interpreter it names (`sys.executable`) directly.
fn python(test: &str) -> Option<&'static str> {
    static PYTHON: OnceLock<Option<String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import http.client, http.server, sys; print(sys.executable)",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !path.is_empty()).then_some(path)
    });
    if found.is_none() {
        skipped(test, "python3");
    }
    found.as_deref()
}

/// A finished child: its exit code and everything it wrote.
#[derive(Debug)]
struct Finished {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Finished {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Reads all of `pipe` on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Runs `program args…` to the end, with no input; fails the test if it does
/// not finish within [`DEADLINE`] or exits non-zero.
fn run(program: &str, args: &[&str]) -> Finished {
    let mut child = Command::new(program)
        .args(args)
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let status = wait_or_kill(&mut child, DEADLINE);
    let finished = Finished {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
    };
    assert!(
        status.is_some(),
        "{program} {args:?} did not finish within {DEADLINE:?}: {finished:?}"
    );
    assert_eq!(finished.code, Some(0), "{program} {args:?}: {finished:?}");
    finished
}

/// `curl -s --max-time 10 args…`: silent, and never longer than ten seconds.
fn curl(args: &[&str]) -> Finished {
    let mut all = vec!["-s", "-S", "--max-time", "10"];
    all.extend_from_slice(args);
    run("curl", &all)
}

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "sockstep-http-interop-{}-{test}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create dir");
        }
        fs::write(&path, contents).expect("write file");
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A body with every byte value, NUL and CR LF included, `len` bytes long.
fn binary_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

// ---------------------------------------------------------------------------
// Our server.
// ---------------------------------------------------------------------------

/// `GET /hello`, a chunked `GET /chunky`, `POST|PUT /echo`, and the status page.
fn router() -> Router {
    Router::new()
        .route("GET", "/hello", |_: &Request| {
            Response::text(200, "hello\n")
        })
        .route("GET", "/chunky", |_: &Request| {
            Response::text(200, "x".repeat(20_000)).with_header("Transfer-Encoding", "chunked")
        })
        .route("POST", "/echo", echo)
        .route("PUT", "/echo", echo)
        .status_page("/status")
}

fn serve(router: Router) -> (Server, String) {
    let server = common::serve(64, common::config(16), router, &Trace::off());
    let base = format!("http://{}", server.local_addr());
    (server, base)
}

/// The request our echo route saw, parsed back from an echo response's body.
fn echoed(body: &[u8]) -> Request {
    let limits = Limits {
        max_body: 16 << 20,
        ..Limits::default()
    };
    match parse_request(body, &limits).expect("echo body is a request") {
        Parsed::Complete { message, consumed } => {
            assert_eq!(consumed, body.len(), "one request, nothing after it");
            message
        }
        Parsed::Partial => panic!("echo body is a whole request"),
    }
}

/// Splits curl's `-D -` output into the head (up to the blank line) and the rest.
fn split_head(out: &[u8]) -> (String, &[u8]) {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no blank line in {:?}", String::from_utf8_lossy(out)));
    (
        String::from_utf8_lossy(&out[..end + 4]).into_owned(),
        &out[end + 4..],
    )
}

#[test]
fn curl_get_sees_our_status_line_headers_and_body() {
    if !have_curl("curl_get_sees_our_status_line_headers_and_body") {
        return;
    }
    let (_server, base) = serve(router());
    let done = curl(&["-D", "-", &format!("{base}/hello")]);
    let (head, body) = split_head(&done.stdout);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Length: 6\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{head}"
    );
    assert_eq!(body, b"hello\n");
}

#[test]
fn curl_head_gets_the_get_answers_headers_and_no_body() {
    if !have_curl("curl_head_gets_the_get_answers_headers_and_no_body") {
        return;
    }
    let (_server, base) = serve(router());
    // Two on one connection: had a body followed the first head, curl would
    // read it as the second answer.
    let done = curl(&[
        "-I",
        "-w",
        "%{num_connects}\n",
        &format!("{base}/chunky"),
        &format!("{base}/hello"),
    ]);
    let (head, rest) = split_head(&done.stdout);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "{head}"
    );
    let (connects, rest) = rest.split_at(2);
    assert_eq!(connects, b"1\n");
    let (head, rest) = split_head(rest);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Length: 6\r\n"), "{head}");
    assert_eq!(rest, b"0\n", "a body after HEAD, or a second connection");
    assert!(done.stderr.is_empty(), "{}", done.stderr);
}

#[test]
fn curl_posts_binary_data_that_our_echo_returns_byte_for_byte() {
    if !have_curl("curl_posts_binary_data_that_our_echo_returns_byte_for_byte") {
        return;
    }
    let dir = TempDir::new("curl-post");
    let body = binary_body(50_000);
    let file = dir.file("body.bin", &body);
    let (_server, base) = serve(router());
    let data = format!("@{}", file.display());
    let done = curl(&["--data-binary", &data, &format!("{base}/echo")]);
    let request = echoed(&done.stdout);
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/echo")
    );
    assert_eq!(request.headers.get("content-length"), Some("50000"));
    assert!(request.body == body, "the body came back changed");
}

#[test]
fn curl_chunked_upload_arrives_whole() {
    if !have_curl("curl_chunked_upload_arrives_whole") {
        return;
    }
    let dir = TempDir::new("curl-chunked");
    let body = binary_body(100_000);
    let file = dir.file("body.bin", &body);
    let (_server, base) = serve(router());
    let data = format!("@{}", file.display());
    let done = curl(&[
        "-X",
        "PUT",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &format!("{base}/echo"),
    ]);
    let request = echoed(&done.stdout);
    assert_eq!(request.method, "PUT");
    assert_eq!(request.headers.get("transfer-encoding"), Some("chunked"));
    assert!(request.headers.get("content-length").is_none());
    assert!(request.body == body, "the body came back changed");
}

#[test]
fn curl_http10_gets_a_closed_connection_and_no_chunked_coding() {
    if !have_curl("curl_http10_gets_a_closed_connection_and_no_chunked_coding") {
        return;
    }
    let (_server, base) = serve(router());
    let done = curl(&["--http1.0", "-D", "-", &format!("{base}/chunky")]);
    let (head, body) = split_head(&done.stdout);
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: close\r\n"), "{head}");
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(lower.contains("\r\ncontent-length: 20000\r\n"), "{head}");
    assert_eq!(body, "x".repeat(20_000).as_bytes());
    // The same route to an HTTP/1.1 client is chunked, and curl decodes it.
    let done = curl(&["-D", "-", &format!("{base}/chunky")]);
    let (head, body) = split_head(&done.stdout);
    assert!(
        head.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "{head}"
    );
    assert_eq!(body, "x".repeat(20_000).as_bytes());
}

#[test]
fn curl_reuses_one_connection_for_two_urls() {
    if !have_curl("curl_reuses_one_connection_for_two_urls") {
        return;
    }
    let router = router();
    let stats = router.clone();
    let (_server, base) = serve(router);
    let url = format!("{base}/hello");
    let done = curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects}\n",
        &url,
        &url,
    ]);
    // One new connection for the first transfer, none for the second.
    assert_eq!(done.stdout(), "1\n0\n");
    let stats = stats.stats();
    assert_eq!((stats.connections, stats.requests, stats.reused), (1, 2, 1));
}

#[test]
fn curl_expecting_100_continue_gets_it_before_sending_the_body() {
    if !have_curl("curl_expecting_100_continue_gets_it_before_sending_the_body") {
        return;
    }
    let dir = TempDir::new("curl-expect");
    let body = binary_body(2_000);
    let file = dir.file("body.bin", &body);
    let (_server, base) = serve(router());
    let data = format!("@{}", file.display());
    let started = Instant::now();
    // Without a 100, curl would send the body after this long anyway.
    let done = curl(&[
        "--expect100-timeout",
        "8",
        "-D",
        "-",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &format!("{base}/echo"),
    ]);
    let elapsed = started.elapsed();
    let (interim, rest) = split_head(&done.stdout);
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    let (head, echo_body) = split_head(rest);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let request = echoed(echo_body);
    assert_eq!(request.headers.get("expect"), Some("100-continue"));
    assert!(request.body == body, "the body came back changed");
    assert!(
        elapsed < Duration::from_secs(8),
        "took {elapsed:?}: no 100 Continue"
    );
}

/// Python's `http.client` on one connection: three GETs, a POST, a chunked POST.
/// Prints `status hex(body)` per response and, last, whether the socket stayed
/// the same one throughout.
const PYTHON_CLIENT: &str = r#"
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
def show(r):
    print(r.status, r.read().hex())
conn.request("GET", "/hello"); first = conn.sock; show(conn.getresponse())
for i in range(2):
    conn.request("GET", "/hello?%d" % i); show(conn.getresponse())
conn.request("POST", "/echo", body=b"posted \x00\r\n bytes", headers={"Content-Type": "application/octet-stream"})
show(conn.getresponse())
conn.request("POST", "/echo", body=iter([b"ch", b"unk", b"ed\x00"]), encode_chunked=True)
show(conn.getresponse())
print("same socket", conn.sock is first)
conn.close()
"#;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn python_http_client_keeps_one_connection_for_gets_posts_and_chunked_posts() {
    let Some(python) =
        python("python_http_client_keeps_one_connection_for_gets_posts_and_chunked_posts")
    else {
        return;
    };
    let router = router();
    let stats = router.clone();
    let (server, _base) = serve(router);
    let port = server.local_addr().port().to_string();
    let done = run(python, &["-c", PYTHON_CLIENT, &port]);
    let out = done.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    let responses: Vec<(u16, Vec<u8>)> = lines[..5]
        .iter()
        .map(|line| {
            let (status, body) = line.split_once(' ').expect("status hex");
            (status.parse().expect("status"), hex(body))
        })
        .collect();
    for (status, body) in &responses[..3] {
        assert_eq!((*status, body.as_slice()), (200, &b"hello\n"[..]));
    }
    let posted = echoed(&responses[3].1);
    assert_eq!(posted.body, b"posted \x00\r\n bytes");
    assert_eq!(
        posted.headers.get("content-type"),
        Some("application/octet-stream")
    );
    let chunked = echoed(&responses[4].1);
    assert_eq!(chunked.headers.get("transfer-encoding"), Some("chunked"));
    assert_eq!(chunked.body, b"chunked\x00");
    assert_eq!(lines[5], "same socket True");
    let stats = stats.stats();
    assert_eq!((stats.connections, stats.requests, stats.reused), (1, 5, 4));
}

// ---------------------------------------------------------------------------
// Our client against Python's servers.
// ---------------------------------------------------------------------------

/// A Python HTTP server on an ephemeral port. `argv[1]` chooses it:
/// `files-1.0` (SimpleHTTPRequestHandler as shipped: HTTP/1.0, one request per
/// connection), `files-1.1` (the same with `protocol_version = "HTTP/1.1"`,
/// keep-alive) or `chunked` (answers every GET with a chunked body in odd pieces).
/// It prints its port, then serves until killed — or for a minute at most.
const PYTHON_SERVER: &str = r#"
import http.server, os, sys, threading
mode, root = sys.argv[1], sys.argv[2]
threading.Timer(60, os._exit, [3]).start()

class Files(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=root, **kwargs)
    def log_message(self, *args):
        pass

class Chunked(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        body = ("path %s " % self.path).encode() * 300
        sizes, at = [1, 2, 3, 5, 7, 11, 13, 4096], 0
        while at < len(body):
            piece = body[at:at + sizes[at % len(sizes)]]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            at += len(piece)
        self.wfile.write(b"0\r\n\r\n")

handler = {"files-1.0": Files, "files-1.1": Files, "chunked": Chunked}[mode]
if mode == "files-1.1":
    handler.protocol_version = "HTTP/1.1"
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A running Python server, killed when dropped.
struct PythonServer {
    child: Child,
    base: String,
}

impl PythonServer {
    fn start(python: &str, mode: &str, root: &Path) -> PythonServer {
        let mut child = Command::new(python)
            .args(["-c", PYTHON_SERVER, mode])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        let stdout = child.stdout.take().expect("piped");
        let (send, port) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = send.send(line);
        });
        let port = match port.recv_timeout(DEADLINE) {
            Ok(line) => line.trim().to_string(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the python server did not print its port within {DEADLINE:?}");
            }
        };
        assert!(port.parse::<u16>().is_ok(), "not a port: {port:?}");
        PythonServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client {
    Client::with_config(ClientConfig {
        connect_timeout: IO_TIMEOUT,
        timeouts: TIMEOUTS,
        response_timeout: IO_TIMEOUT,
        ..ClientConfig::default()
    })
}

/// A served directory: a text file, a binary file, a subdirectory with an index.
fn site(test: &str) -> (TempDir, Vec<u8>) {
    let dir = TempDir::new(test);
    let binary = binary_body(300_000);
    dir.file("hello.txt", b"hello from python\n");
    dir.file("data.bin", &binary);
    dir.file("sub/inner.txt", b"inner\n");
    (dir, binary)
}

#[test]
fn our_client_reads_python_http10_file_server_one_connection_per_request() {
    let Some(python) =
        python("our_client_reads_python_http10_file_server_one_connection_per_request")
    else {
        return;
    };
    let (dir, binary) = site("py10");
    let server = PythonServer::start(python, "files-1.0", dir.path());
    let mut client = client();
    let hello = client
        .get(&format!("{}/hello.txt", server.base))
        .expect("GET");
    assert_eq!(
        (hello.status, hello.body.as_slice()),
        (200, &b"hello from python\n"[..])
    );
    assert_eq!(hello.version, sockstep::http::Version::Http10);
    let data = client
        .get(&format!("{}/data.bin", server.base))
        .expect("GET");
    assert_eq!(data.status, 200);
    assert!(data.body == binary, "the file came back changed");
    let missing = client.get(&format!("{}/nope", server.base)).expect("GET");
    assert_eq!(missing.status, 404);
    // HTTP/1.0 without keep-alive: every response ends its connection.
    assert_eq!(client.connections_opened(), 3);
}

#[test]
fn our_client_keeps_one_connection_to_python_http11_file_server() {
    let Some(python) = python("our_client_keeps_one_connection_to_python_http11_file_server")
    else {
        return;
    };
    let (dir, binary) = site("py11");
    let server = PythonServer::start(python, "files-1.1", dir.path());
    let mut client = client();
    for _ in 0..3 {
        let hello = client
            .get(&format!("{}/hello.txt", server.base))
            .expect("GET");
        assert_eq!(hello.body, b"hello from python\n");
    }
    let head = client
        .request(
            "HEAD",
            &format!("{}/data.bin", server.base),
            &Headers::new(),
            Vec::new(),
        )
        .expect("HEAD");
    assert_eq!(head.headers.get("content-length"), Some("300000"));
    assert!(head.body.is_empty());
    let data = client
        .get(&format!("{}/data.bin", server.base))
        .expect("GET");
    assert!(data.body == binary, "the file came back changed");
    assert_eq!(client.connections_opened(), 1);
}

#[test]
fn our_client_follows_python_directory_redirect_only_when_asked() {
    let Some(python) = python("our_client_follows_python_directory_redirect_only_when_asked")
    else {
        return;
    };
    let (dir, _) = site("pyredirect");
    let server = PythonServer::start(python, "files-1.1", dir.path());
    let url = format!("{}/sub", server.base);
    let moved = client().get(&url).expect("GET");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.headers.get("location"), Some("/sub/"));
    let mut following = Client::with_config(ClientConfig {
        follow_redirects: 2,
        connect_timeout: IO_TIMEOUT,
        timeouts: TIMEOUTS,
        response_timeout: IO_TIMEOUT,
        ..ClientConfig::default()
    });
    let listing = following.get(&url).expect("GET");
    assert_eq!(listing.status, 200);
    let html = String::from_utf8_lossy(&listing.body);
    assert!(html.contains("inner.txt"), "{html}");
}

#[test]
fn our_client_decodes_python_chunked_responses_in_odd_pieces() {
    let Some(python) = python("our_client_decodes_python_chunked_responses_in_odd_pieces") else {
        return;
    };
    let dir = TempDir::new("pychunked");
    let server = PythonServer::start(python, "chunked", dir.path());
    let mut client = client();
    for path in ["/a", "/bb?x=1", "/a"] {
        let response = client.get(&format!("{}{path}", server.base)).expect("GET");
        assert_eq!(response.status, 200);
        assert_eq!(response.headers.get("transfer-encoding"), Some("chunked"));
        assert_eq!(
            response.body,
            format!("path {path} ").repeat(300).as_bytes()
        );
    }
    assert_eq!(client.connections_opened(), 1);
}
