//! WebSocket (RFC 6455): a kept, two-way socket that starts as an HTTP request.
//!
//! # The idea
//!
//! HTTP is one question, one answer: the server speaks only when asked. A page
//! that wants to be told the moment something happens (a chat line, a price,
//! a build finishing) needs the connection the seed describes — a socket both
//! sides keep open and either side writes to at any time. WebSocket is that
//! socket, reached through HTTP so that it passes wherever the web passes:
//!
//! 1. **Upgrade** ([`handshake`]): the client sends an HTTP `GET` asking to
//!    switch to `websocket`; the server answers `101 Switching Protocols`. The
//!    TCP connection stays; from the next byte on, HTTP is over.
//! 2. **Frames** ([`frame`]): each side cuts the byte stream into frames — a
//!    small header (final?, what kind, masked?, length) and a payload. Frames
//!    from the client are *masked* with a fresh key, so that a script in a
//!    browser cannot choose the bytes that go on the wire.
//! 3. **Messages** ([`message`]): a message is text (UTF-8) or binary, sent as
//!    one frame or *fragmented* into several. Control frames — ping, pong,
//!    close — may come between fragments.
//! 4. **Closing**: a close frame with a code (1000 normal, 1002 protocol error,
//!    1009 too big, …) is answered with a close frame; then TCP closes.
//!
//! [`WebSocket`] ([`socket`]) puts these together over a
//! [`tcp::Connection`](crate::tcp::Connection): [`WebSocket::connect`] and
//! [`WebSocket::accept`] do the handshake, [`recv`](WebSocket::recv) and the
//! `send_*` methods talk, [`split`](WebSocket::split) hands the two
//! directions to two threads, [`close`](WebSocket::close) says goodbye.
//! [`Echo`] and [`Upgrade`] plug it into [`tcp::serve`](crate::tcp::serve).
//!
//! The wire format ([`frame`], [`message`], [`handshake`]) is pure functions
//! and state machines over bytes, tested against the RFC's examples; only
//! [`socket`] does I/O. [`sha1`] and [`base64`] exist for the handshake's
//! `Sec-WebSocket-Accept`, because sockstep has no dependencies.
//!
//! ```
//! use sockstep::tcp::{serve::ServeConfig, server};
//! use sockstep::trace::Trace;
//! use sockstep::ws::{CloseCode, Config, Echo, Message, WebSocket};
//!
//! let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(8);
//! let server = listening.serve(ServeConfig::default(), Echo::default())?;
//! let mut ws = WebSocket::connect(server.local_addr(), "/echo", &Config::default(), &Trace::off())?;
//! ws.send_text("hello")?;
//! assert_eq!(ws.recv()?, Message::Text("hello".into()));
//! ws.close(CloseCode::NORMAL, "bye")?;
//! server.shutdown();
//! # Ok::<(), sockstep::Error>(())
//! ```
//!
//! `docs/websocket.md` tells the same story at more length, with the table of
//! close codes and what we refuse.

pub mod base64;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod sha1;
pub mod socket;

pub use frame::{CloseCode, Frame, Opcode, ProtocolError};
pub use message::{Decoder, Message};
pub use socket::{Config, DEFAULT_MAX_MESSAGE, Echo, Reader, Upgrade, WebSocket, Writer};
