//! Side-by-side comparisons a reader can run: `sockstep compare …`.
//!
//! [`http_vs_socket`] delivers the same stream of updates by HTTP polling, HTTP
//! long polling and push over a kept socket, and counts what each cost.

pub mod http_vs_socket;
