//! sockstep as a baseline in other people's tests: servers on demand and a
//! fault-injecting proxy.
//!
//! A test of networking code needs a peer, and the interesting tests need a
//! peer that misbehaves on cue: resets the connection, answers in pieces,
//! answers late, loses a datagram. A mock object cannot do that — it is not a
//! socket — and a real server will not do it on purpose. The testkit starts
//! real servers on loopback whose behaviour the test chooses, and which report
//! afterwards what they saw:
//!
//! - [`servers`] — echo, sink, fixed-reply and recording servers, TCP and UDP,
//!   each started by one call and stopped by dropping its guard; the
//!   recorders' `wait_until` lets a test wait for bytes instead of sleeping.
//! - [`script`] — a server that plays a script on each connection (expect,
//!   send, wait, half-close, close, reset) and tells, per connection, whether
//!   the client played its part, with a diff of the bytes where it did not.
//! - [`http_mock`] — canned HTTP answers per method and path, answer
//!   sequences for retry tests, and every request recorded.
//! - [`proxy`] — a TCP proxy between a client and any server that injects
//!   faults into a real conversation.
//! - [`hosts`] — two computers on one machine (two network namespaces joined
//!   by a virtual cable), for tests that need a server on another host.
//!
//! Everything here is built on the public API the rest of sockstep documents
//! (`tcp::serve`, `udp::serve`, `http::server`), so a reader can check what a
//! test server does by reading the server it wraps. `docs/testing-with-sockstep.md`
//! has five complete recipes; they are compiled and run as doctests.

pub mod hosts;
pub mod http_mock;
pub mod proxy;
pub mod script;
pub mod servers;

/// The recipes of `docs/testing-with-sockstep.md`, compiled and run as
/// doctests so they cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../../docs/testing-with-sockstep.md")]
pub struct TestingGuideDoctests;
