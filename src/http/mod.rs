//! HTTP/1.1 on top of a TCP byte stream: the wire format, a server and a client.
//!
//! # The idea
//!
//! HTTP/1.1 is text framing on a TCP connection ([`tcp::framing`](crate::tcp::framing)
//! solves the same problem with lines or length prefixes). A message is
//!
//! ```text
//! GET /hello HTTP/1.1\r\n          ← request line (a response has a status line)
//! Host: example.com\r\n            ← header lines, "name: value"
//! Content-Length: 5\r\n
//! \r\n                             ← a blank line ends the head
//! hello                            ← the body
//! ```
//!
//! The body has no end marker of its own; its length is told by the head:
//! by `Content-Length`, by the chunked transfer coding (the body is sent as
//! size-prefixed chunks ending with a zero-size chunk), or — for responses only —
//! by the server closing the connection. Getting that length exactly right is
//! what keeps one request from leaking into the next, so [`wire`] refuses every
//! message whose length could be read two ways (see its docs on request smuggling).
//!
//! [`wire`] is the format alone: pure functions over bytes, no sockets, threads
//! or clocks, as smoltcp separates `wire/` from `socket/`. The parts that do I/O
//! are built on it:
//!
//! - [`server`] — each connection's life (read request → respond → write
//!   response → close or keep), a [`Router`] of method + path → route, the limits
//!   and deadlines that keep slow or hostile clients from pinning threads.
//! - [`files`] — static files from a directory, refusing every path that leaves it.
//! - [`client`] — resolve → connect → write request → read response → close or reuse.

pub mod client;
pub mod files;
pub mod server;
pub mod wire;

pub use server::{Action, HttpConfig, Route, Router};

pub use wire::{
    Headers, HttpError, Limits, Parsed, Request, RequestProgress, Response, ResponseProgress,
    Version, parse_request, parse_request_head, parse_request_resuming, parse_response,
    parse_response_at_eof, parse_response_resuming, status_text, write_chunked,
};
