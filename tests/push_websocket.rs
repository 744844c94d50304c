//! The hub over WebSocket: a browser, a Python client and our own WebSocket
//! client are members like any line-protocol client, and see the same messages.
//!
//! Real peers: Python's `websockets` (see `common::python`) and headless
//! Chromium (`chromium` on PATH; `.ci/run` installs it). A test whose peer is
//! missing prints `SKIPPED: …` and passes.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sockstep::push::client::Client as LineClient;
use sockstep::push::hub::{Hub, HubConfig};
use sockstep::push::line::ServerLine;
use sockstep::push::serve::{self, PushServer};
use sockstep::push::websocket;
use sockstep::tcp::serve::Server;
use sockstep::trace::Trace;
use sockstep::ws::{CloseCode, Config, Message, WebSocket};

use common::process::wait_or_kill;
use common::python::{python_or_skip, run_script};
use common::{IO_TIMEOUT, TIMEOUTS, any_port_v4, config};

fn ws_config() -> Config {
    Config {
        timeouts: TIMEOUTS,
        connect_timeout: IO_TIMEOUT,
        handshake_timeout: IO_TIMEOUT,
        close_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// A hub served twice: the line protocol on one port, HTTP + WebSocket on another.
struct Hubs {
    hub: Hub,
    lines: PushServer,
    web: Server,
}

impl Hubs {
    fn start(hub: HubConfig) -> Hubs {
        let hub = Hub::new(hub).expect("a hub");
        let listening = sockstep::tcp::server::socket(any_port_v4(), &Trace::off())
            .bind()
            .expect("bind")
            .listen(16);
        let lines = serve::serve(listening, hub.clone(), TIMEOUTS).expect("serve lines");
        let web = common::serve(
            16,
            config(32),
            websocket::router(hub.clone(), ws_config()),
            &Trace::off(),
        );
        Hubs { hub, lines, web }
    }

    fn web_addr(&self) -> SocketAddr {
        self.web.local_addr()
    }

    fn line_client(&self) -> LineClient {
        let mut client = LineClient::connect(self.lines.local_addr(), IO_TIMEOUT).expect("connect");
        client.subscribe(IO_TIMEOUT).expect("SUB");
        client
    }

    fn stop(self) {
        self.lines.shutdown();
        self.web.shutdown();
    }
}

fn ws_member(addr: SocketAddr) -> WebSocket {
    WebSocket::connect(addr, "/hub", &ws_config(), &Trace::off()).expect("WebSocket to /hub")
}

/// Text messages until one satisfies `wanted`; panics past 10,000 or a timeout.
fn recv_until(ws: &mut WebSocket, wanted: impl Fn(&str) -> bool) -> String {
    for _ in 0..10_000 {
        match ws.recv().expect("a message within the read timeout") {
            Message::Text(text) if wanted(&text) => return text,
            Message::Text(_) | Message::Pong(_) | Message::Ping(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
    panic!("10,000 messages without the one wanted");
}

/// The line client's published lines until one's text is `text`.
fn line_until(client: &mut LineClient, text: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match client.next_published(deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(ServerLine::Msg { text: got, .. })) if got == text => return,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the hub closed the line client"),
            Err(e) => panic!("waiting for {text:?}: {e}"),
        }
    }
    panic!("{text:?} did not arrive within {within:?}");
}

#[test]
fn a_websocket_member_and_a_line_member_hear_each_other() {
    let hubs = Hubs::start(HubConfig::default());
    let mut ws = ws_member(hubs.web_addr());
    assert!(recv_until(&mut ws, |_| true).starts_with("HELLO "));
    ws.send_text("SUB").unwrap();
    recv_until(&mut ws, |t| t == "OK SUB");
    let mut line = hubs.line_client();

    line.publish("from the line client").unwrap();
    let got = recv_until(&mut ws, |t| t.starts_with("MSG "));
    assert!(got.ends_with(" from the line client"), "{got}");

    ws.send_text("PUB from the browser side").unwrap();
    line_until(&mut line, "from the browser side", IO_TIMEOUT);
    recv_until(&mut ws, |t| t.starts_with("OK PUB "));

    ws.send_text("PING x").unwrap();
    recv_until(&mut ws, |t| t == "PONG x");
    ws.send_text("NONSENSE").unwrap();
    recv_until(&mut ws, |t| t.starts_with("ERR "));

    let (code, _) = ws.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(code, CloseCode::NORMAL);
    let deadline = Instant::now() + IO_TIMEOUT;
    while hubs.hub.stats().members > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(hubs.hub.stats().members, 1, "{:?}", hubs.hub.stats());
    assert_eq!(hubs.hub.stats().left.quit, 1, "{:?}", hubs.hub.stats());
    hubs.stop();
}

#[test]
fn a_websocket_member_that_stops_reading_is_cut_with_1008() {
    let hubs = Hubs::start(HubConfig {
        queue: 8,
        ..HubConfig::default()
    });
    let mut ws = ws_member(hubs.web_addr());
    recv_until(&mut ws, |t| t.starts_with("HELLO "));
    ws.send_text("SUB").unwrap();
    recv_until(&mut ws, |t| t == "OK SUB");
    // 4 KiB announcements, 8 MB in all: more than the kernel's buffers hold, so
    // the writer blocks, the queue of 8 fills, and the hub cuts the member.
    let text = "x".repeat(4000);
    for _ in 0..2_000 {
        hubs.hub.announce(&text);
        if hubs.hub.stats().left.slow > 0 {
            break;
        }
    }
    assert_eq!(hubs.hub.stats().left.slow, 1, "{:?}", hubs.hub.stats());
    // What was already on its way still arrives, then the close frame says why.
    let mut messages = 0;
    let close = loop {
        match ws.recv() {
            Ok(Message::Text(_)) if messages < 10_000 => messages += 1,
            Ok(Message::Close { code, reason }) => break (code, reason),
            other => panic!("after {messages} messages: {other:?}"),
        }
    };
    assert_eq!(close.0, CloseCode::POLICY_VIOLATION, "{close:?}");
    assert!(close.1.starts_with("BYE too slow"), "{close:?}");
    hubs.stop();
}

#[test]
fn shutting_the_hub_down_closes_websocket_members_with_1001() {
    let hubs = Hubs::start(HubConfig::default());
    let mut ws = ws_member(hubs.web_addr());
    recv_until(&mut ws, |t| t.starts_with("HELLO "));
    let Hubs { lines, web, .. } = hubs;
    lines.shutdown();
    let close = loop {
        if let Message::Close { code, reason } = ws.recv().expect("the close frame") {
            break (code, reason);
        }
    };
    assert_eq!(close.0, CloseCode::GOING_AWAY, "{close:?}");
    web.shutdown();
}

#[test]
fn a_plain_get_of_the_hub_is_told_to_upgrade() {
    let hubs = Hubs::start(HubConfig::default());
    let url = format!("http://{}/hub", hubs.web_addr());
    let response = sockstep::http::client::get(&url).unwrap();
    assert_eq!(response.status, 426, "{response:?}");
    assert_eq!(response.headers.get("sec-websocket-version"), Some("13"));
    let page = sockstep::http::client::get(&format!("http://{}/", hubs.web_addr())).unwrap();
    assert!(String::from_utf8_lossy(&page.body).contains("new WebSocket("));
    hubs.stop();
}

#[test]
fn a_python_websockets_client_is_a_member() {
    let Some(python) = python_or_skip("a_python_websockets_client_is_a_member") else {
        return;
    };
    let hubs = Hubs::start(HubConfig::default());
    let mut line = hubs.line_client();
    let script = r#"
import sys
from websockets.sync.client import connect
with connect(sys.argv[1], open_timeout=5, close_timeout=5) as ws:
    assert ws.recv(timeout=5).startswith("HELLO ")
    ws.send("SUB")
    assert ws.recv(timeout=5) == "OK SUB"
    ws.send("PUB hello from python")
    while True:
        line = ws.recv(timeout=5)
        if line.startswith("MSG ") and line.endswith(" from the test"):
            break
print("OK")
"#;
    let url = format!("ws://{}/hub", hubs.web_addr());
    let runner = std::thread::spawn(move || run_script(&python, script, &[&url]));
    line_until(&mut line, "hello from python", IO_TIMEOUT * 3);
    line.publish("from the test").unwrap();
    let (status, out, err) = runner.join().unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "stdout {out}\nstderr {err}"
    );
    assert_eq!(out.trim(), "OK");
    hubs.stop();
}

/// A Chromium binary on PATH, or `None` with a loud skip.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if found.is_some() {
            return found;
        }
    }
    eprintln!(
        "SKIPPED: {test} because no chromium, chromium-browser or google-chrome is on PATH \
         (apt-get install chromium; .ci/run does)"
    );
    None
}

#[test]
fn headless_chromium_on_the_hub_page_is_a_member_both_ways() {
    let test = "headless_chromium_on_the_hub_page_is_a_member_both_ways";
    let Some(chromium) = chromium_or_skip(test) else {
        return;
    };
    let hubs = Hubs::start(HubConfig::default());
    let mut line = hubs.line_client();
    let token = format!("t{}", std::process::id());
    let profile = std::env::temp_dir().join(format!("sockstep-chromium-{token}"));
    let url = format!("http://{}/?probe={token}", hubs.web_addr());
    // As FACTS.md says: --no-sandbox as root, and no background networking, which
    // would otherwise knock on addresses this closed network does not have.
    let mut browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    // Browser → hub: the page subscribes, then publishes. A cold Chromium can
    // take seconds to start, hence the long first wait.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        line_until(
            &mut line,
            &format!("chromium says {token}"),
            Duration::from_secs(60),
        );
        // Hub → browser: the page answers only after it received this.
        line.publish(&format!("echo {token}")).unwrap();
        line_until(
            &mut line,
            &format!("chromium got echo {token}"),
            Duration::from_secs(20),
        );
    }));
    let _ = browser.kill();
    wait_or_kill(&mut browser, IO_TIMEOUT);
    let _ = std::fs::remove_dir_all(&profile);
    hubs.stop();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
