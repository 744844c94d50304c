//! Measurements: what the protocols cost and what they buy, in numbers.
//!
//! A benchmark here answers one question with a table a reader can check.
//! Each one runs real sockets through the public API (no private shortcuts,
//! so what is measured is what a user gets), repeats itself, and quotes
//! medians: these machines are shared, and a single pass can swing by 2×.
//!
//! - [`loss`] — `sockstep bench loss`: raw UDP, the reliable channel
//!   ([`crate::udp::reliable`]) and TCP through the same packet loss, from 0 %
//!   to 20 %. What does TCP's overhead buy?

pub mod loss;
