//! # sockstep — socket communication, one step at a time
//!
//! A blocking, std-only reference implementation of what the seed document
//! ("소켓(Socket)") teaches: a socket is a protocol + IP address + port; a server
//! goes `socket()` → `bind()` → `listen()` → `accept()`; a client goes
//! `socket()` → `connect()` and then both `read()` and `write()`.
//!
//! Read it in this order:
//!
//! - [`endpoint`] — a socket's identity: protocol + IP + port ([`Endpoint`]).
//! - [`step`] — the lifecycle vocabulary: [`Side`] and [`Step`], numbered as in the seed.
//! - [`error`] — one [`Error`]: which step, which endpoint, what the OS said, a hint.
//! - [`trace`] — an [`Event`](trace::Event) per step, printed for people or recorded for tests.
//! - [`tcp`] — the stream socket: [`tcp::server`] (socket → bind → listen → accept,
//!   then thread-per-connection serving), [`tcp::client`] (socket → connect → read/write
//!   → shutdown/close), [`tcp::connection`] (the connected socket both sides hold),
//!   [`tcp::handlers`] (echo, sink, recorder) and [`tcp::framing`] (messages on a byte stream).
//! - [`walk`] — the step-by-step walkthroughs behind `sockstep walk …`.
//! - [`testkit`] — sockstep as a baseline in other people's tests: servers on demand
//!   (echo, sink, recorder, scripted, an HTTP mock), a fault-injecting TCP proxy, and
//!   two IP hosts on one machine ([`testkit::hosts`], root only).
//! - [`netns`] — a network namespace of our own: a second network stack on the machine,
//!   where the kernel can drop packets without touching anything else (root only).
//! - [`diagram`] — the seed's figure drawn from a real run: a walkthrough's trace as a
//!   sequence diagram (SVG or Mermaid), one lifeline per socket (`sockstep walk tcp --svg FILE`);
//!   the pictures of `docs/README.md`, the reader's path, and its syscall map.
//! - [`bench`](mod@bench) — measurements behind `sockstep bench …`: [`bench::loss`] puts raw UDP,
//!   the reliable channel and TCP through the same packet loss.
//! - [`http`] — the seed's "ask, answer, close": [`http::wire`] parses and emits messages
//!   (no I/O), [`http::server`] runs each connection's request/response loop (and
//!   HTTP/1.1 keep-alive), [`http::client`] resolves, connects, asks and reads.
//! - [`ws`] — WebSocket: a kept, two-way socket reached through an HTTP Upgrade.
//! - [`push`] — the seed's "kept connection, both ways, in real time": a hub that pushes
//!   every message to every subscriber, over TCP lines ([`push::serve`]) or WebSocket
//!   ([`push::websocket`]), cutting loose whoever reads too slowly.
//! - [`compare`] — `sockstep compare http-vs-socket`: the same updates by polling, long
//!   polling and push, with the connections, bytes and latency each cost.
//! - [`cli`] — the `sockstep` command line: words parsed into a [`cli::Command`], then run.
//!
//! ```
//! use sockstep::tcp::{client, server};
//! use sockstep::trace::Trace;
//! use std::io::{Read, Write};
//! use std::time::Duration;
//!
//! let trace = Trace::off();
//! let listening = server::socket("127.0.0.1:0".parse().unwrap(), &trace).bind()?.listen(8);
//! let mut conn = client::socket(listening.local_addr(), &trace).connect(Duration::from_secs(5))?;
//! let mut accepted = listening.accept()?;
//! conn.write_all(b"hello")?;
//! let mut buf = [0; 5];
//! accepted.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod compare;
pub mod diagram;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod netns;
pub mod push;
mod readable;
pub mod step;
pub mod tcp;
pub mod testkit;
pub mod trace;
pub mod udp;
pub mod walk;
pub mod ws;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use endpoint::{Endpoint, Host, Protocol};
pub use error::{Error, ErrorKind};
pub use step::{Side, Step};
