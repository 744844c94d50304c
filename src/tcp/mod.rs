//! TCP, the stream socket (스트림 소켓): a two-way, ordered, reliable byte stream
//! over a connection.
//!
//! The files follow the seed's flow:
//!
//! - [`server`] — server steps 1–4: [`server::socket`] → [`Socket::bind`](server::Socket::bind)
//!   → [`Bound::listen`](server::Bound::listen) → [`Listening::accept`](server::Listening::accept).
//! - [`serve`] — what a real server does after `listen()`: accept in a loop, one
//!   thread per connection, a bounded waiting room, refusals, graceful shutdown.
//! - [`handlers`] — what a connection's thread runs: echo, sink, recorder, or yours.
//! - [`client`] — client steps 1–2: [`client::socket`] → [`ClientSocket::connect`](client::ClientSocket::connect).
//! - [`connection`] — the connected socket both sides hold: step 4's `read()` and
//!   `write()`, half-close, close.
//! - [`framing`] — TCP carries bytes, not messages: newline and length-prefix framing.

pub mod client;
pub mod connection;
pub mod framing;
pub mod handlers;
pub mod serve;
pub mod server;

pub use connection::{Connection, Timeouts};
