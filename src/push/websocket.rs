//! The hub over WebSocket: a browser joins it like any `nc` session.
//!
//! # The idea
//!
//! A browser cannot open a plain TCP socket, but it can open a WebSocket: an
//! HTTP request that the server answers with `101 Switching Protocols`, after
//! which the same TCP connection carries frames both ways ([`crate::ws`]). So
//! the hub gets a second transport with the same protocol: **each WebSocket
//! text message is one line** of the [line protocol](super::line) — `SUB`,
//! `PUB hello`, `QUIT` from the browser; `HELLO 3`, `MSG 7 2 hello`, `TICK …`,
//! `BYE …` from the hub — without the newline, since a message has its own end.
//!
//! The connection's life is the TCP transport's ([`super::serve`]) with
//! WebSocket's frames around it:
//!
//! - The HTTP server's [`Router`] routes `GET /hub` to [`route`], which checks the
//!   upgrade request ([`ws::handshake::accept`]) and answers `101`, or `400`/`426`.
//! - The connection's thread then reads messages and acts on them
//!   ([`super::serve`]'s `act`, shared with the TCP transport); a writer thread
//!   takes the member's queue and sends each message as a text message.
//! - Leaving: a close frame from the browser is `QUIT`; the hub cutting the
//!   member (too slow, shutting down) sends a close frame with a code that says
//!   why — 1008 (policy) for too slow, 1001 (going away) for shutdown, 1000
//!   otherwise — its reason the `BYE` text.
//!
//! [`router`] puts it together with a page that uses it: `GET /` serves a small
//! HTML page whose script connects to `/hub`, subscribes, shows what arrives and
//! publishes what is typed. `sockstep push serve ADDR --web WEBADDR` serves it.

use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::http::server::{Action, Router};
use crate::http::wire::{Request, Response};
use crate::push::hub::{Hub, Leave, Member, Next};
use crate::push::line;
use crate::push::serve::{Acted, act};
use crate::step::Step;
use crate::tcp::connection::Connection;
use crate::ws::{self, CloseCode, Message, WebSocket};

/// The page `GET /` serves: connects to `/hub`, shows every line, publishes what
/// is typed. With `?probe=TOKEN` it also runs the check the browser test uses.
pub const PAGE: &str = include_str!("page.html");

/// Writer threads only render short lines; 64 KiB of stack is plenty.
const WRITER_STACK: usize = 64 * 1024;

/// How long a writer waits on an empty queue before looking again; leaving
/// always wakes it at once, so nothing depends on this.
const WRITER_WAIT: Duration = Duration::from_secs(60);

/// The HTTP routes of the hub's web side: `GET /` (the page) and `GET /hub`
/// (the WebSocket), with `config` for every WebSocket.
pub fn router(hub: Hub, config: ws::Config) -> Router {
    Router::new()
        .route("GET", "/", |_: &Request| {
            Response::new(200)
                .with_body("text/html; charset=utf-8", PAGE.as_bytes().to_vec())
                .with_header("Cache-Control", "no-store")
        })
        .route("GET", "/hub", route(hub, config))
}

/// The route that upgrades a request to WebSocket and makes the connection a
/// member of `hub`.
pub fn route(hub: Hub, config: ws::Config) -> impl Fn(&Request) -> Action + Send + Sync + 'static {
    move |request: &Request| match ws::handshake::accept(request) {
        Err(refusal) => Action::Respond(refusal),
        Ok(switching) => {
            let (hub, config) = (hub.clone(), config.clone());
            Action::Switch(
                switching,
                Box::new(move |conn: &mut Connection, leftover: Vec<u8>| {
                    conn.note(Step::Upgrade, || "now a WebSocket member of the hub".into());
                    serve_member(&hub, conn, &leftover, &config)
                }),
            )
        }
    }
}

/// One browser's membership: join, read messages as commands, leave.
fn serve_member(
    hub: &Hub,
    conn: &mut Connection,
    leftover: &[u8],
    config: &ws::Config,
) -> Result<(), Error> {
    // A member that only listens sends nothing but the page's PINGs: the read
    // timeout is the hub's idle timeout, not the HTTP server's.
    conn.set_timeouts(config.timeouts)?;
    let socket = WebSocket::from_upgraded(conn.try_clone()?, leftover, config)?;
    let (mut reader, writer) = socket.split();
    let member = match hub.join(&conn.peer_endpoint().to_string()) {
        Ok(member) => member,
        Err(e) => {
            let reason = match e.kind() {
                ErrorKind::RefusedByServer(reason) => reason.clone(),
                _ => e.summary(),
            };
            // 1013 "try again later" is registered but not in RFC 6455's list;
            // 1008 says "not now, by policy" to every client.
            let _ = writer.close(CloseCode::POLICY_VIOLATION, &bye(&reason));
            return Ok(());
        }
    };
    let stream = conn.shared_stream();
    member.on_close(move |_| {
        // Wakes the reader below: its recv() sees end of stream.
        let _ = stream.shutdown(Shutdown::Read);
    });
    let pushes = {
        let (member, writer) = (member.clone(), writer.clone());
        thread::Builder::new()
            .name(format!("push-ws-{}", member.id()))
            .stack_size(WRITER_STACK)
            .spawn(move || write_pushes(&member, &writer))
            .map_err(|e| Error::io(Step::Serve, e).at(conn.peer_endpoint()))?
    };
    member.reply(&format!("HELLO {}", member.id()));
    let room_wait = config.timeouts.write.unwrap_or(Duration::MAX);
    let reason = loop {
        if let Some(reason) = member.left() {
            break reason;
        }
        match reader.recv() {
            Ok(Message::Text(text)) => {
                if act(&member, text.as_bytes(), room_wait) == Acted::Quit {
                    break Leave::Quit;
                }
            }
            Ok(Message::Binary(_)) => {
                member.reply("ERR the hub speaks text messages, one command each");
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(Message::Close { .. }) => break Leave::Quit,
            Err(e) => {
                break member.left().unwrap_or(match e.kind() {
                    ErrorKind::TimedOut => Leave::Timeout,
                    ErrorKind::ConnectionReset => Leave::Reset,
                    _ => Leave::Eof,
                });
            }
        }
    };
    member.leave(reason);
    // The writer sees the closed queue, says goodbye with a close frame and
    // ends; a writer stuck on a peer that does not read is ended by the write
    // timeout of the connection it writes on.
    let _ = pushes.join();
    Ok(())
}

/// The writer: the member's queue out as text messages, until the queue closes.
fn write_pushes(member: &Member, writer: &ws::socket::Writer) {
    let mut line = Vec::new();
    loop {
        match member.next(WRITER_WAIT) {
            Next::Idle => {}
            Next::Message(message) => {
                line.clear();
                line::render(&message, &mut line);
                line.pop(); // the newline: a WebSocket message has its own end
                // render() writes the hub's own text, which is UTF-8 (it came in
                // as &str); a lossy conversion never changes it.
                if writer.send_text(&String::from_utf8_lossy(&line)).is_err() {
                    member.leave(Leave::Error("the browser stopped taking messages".into()));
                }
            }
            Next::Closed(reason) => {
                let code = match reason {
                    Leave::Slow { .. } => CloseCode::POLICY_VIOLATION,
                    Leave::Shutdown => CloseCode::GOING_AWAY,
                    _ => CloseCode::NORMAL,
                };
                let _ = writer.close(code, &bye(&reason.to_string()));
                return;
            }
        }
    }
}

/// `BYE <reason>`, cut to fit a close frame's reason (123 bytes, at a char boundary).
fn bye(reason: &str) -> String {
    let mut text = format!("BYE {reason}");
    let mut end = text.len().min(ws::socket::MAX_CLOSE_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}
