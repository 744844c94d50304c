//! UDP, the datagram socket (데이터그램 소켓): connectionless, size-limited
//! messages with no delivery guarantee.
//!
//! - [`socket`] — the lifecycle: `socket()` → `bind()` → `send_to()`/`recv_from()`,
//!   and the optional `connect()`.
//! - [`serve`] — a UDP server: one socket, one thread, every client's datagrams in turn.
//! - [`handlers`] — what it does with each datagram: [`handlers::Echo`], [`handlers::Recorder`], or yours.

pub mod handlers;
pub mod serve;
pub mod socket;
