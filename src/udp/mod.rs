//! UDP, the datagram socket (데이터그램 소켓): connectionless, size-limited
//! messages with no delivery guarantee.
//!
//! - [`socket`] — the lifecycle: `socket()` → `bind()` → `send_to()`/`recv_from()`,
//!   and the optional `connect()`.
//! - [`serve`] — a UDP server: one socket, one thread, every client's datagrams in turn.
//! - [`handlers`] — what it does with each datagram: [`handlers::Echo`], [`handlers::Recorder`], or yours.
//! - [`faults`] — loss, duplication, reordering and delay, decided by a seeded random source (pure, no I/O).
//! - [`relay`] — loss you control: a relay that applies those faults, both ways, between clients and one upstream.
//! - [`reliable`] — what TCP buys, rebuilt over UDP: sequence numbers, ACKs, retransmission, a sliding window, a give-up timeout.

pub mod faults;
pub mod handlers;
pub mod relay;
pub mod reliable;
pub mod serve;
pub mod socket;
