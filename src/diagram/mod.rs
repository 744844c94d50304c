//! The seed's figure, drawn from a real run: sequence diagrams of a trace.
//!
//! The seed explains socket communication with a figure — a server column
//! and a client column, `socket()` → `bind()` → `listen()` → `accept()` on
//! one side, `socket()` → `connect()` on the other, arrows for what they say
//! to each other. This module draws that figure from what actually happened:
//! the [`Event`](crate::trace::Event)s a [`Recorder`](crate::trace::Recorder)
//! kept while real sockets ran. `sockstep walk tcp --svg FILE` (and `udp`,
//! `http`, `push`) writes it; `make docs` regenerates the pictures in
//! `docs/img/`, so they always match the code.
//!
//! - [`Sequence`] ([`sequence`]) is the model: one lifeline per socket (the
//!   listening socket, each socket `accept()` made, each client socket), one
//!   row per event in the order things happened, and arrows for what one
//!   socket's step did to another's. Its docs say exactly how writes are
//!   matched to reads — TCP keeps no message boundaries, so an arrow joins a
//!   write to each read that took some of its bytes — and why the rows are
//!   not simply sorted by timestamp.
//! - [`svg()`] draws it with our own small [SVG writer](mod@svg) (no
//!   dependencies; every piece of text escaped); [`mermaid()`] writes the
//!   same diagram as Mermaid `sequenceDiagram` text.
//! - [`walks`] holds each walkthrough's picture: its title, the names it gave
//!   its sockets, and for UDP a sample of the lossy link's datagrams, lost
//!   ones drawn as arrows that end in a cross.
//! - [`syscalls`] is the other figure: per walkthrough, each seed step, the
//!   function of ours that takes it, and the system calls `strace` saw it
//!   make (`make syscalls` writes `docs/syscalls.md`).
//!
//! ```
//! use sockstep::diagram::{self, Sequence};
//! use sockstep::udp::socket;
//! use sockstep::trace::Recorder;
//! use sockstep::Side;
//!
//! let recorder = Recorder::new();
//! let trace = recorder.trace();
//! let here = "127.0.0.1:0".parse()?;
//! let server = socket::socket(here, Side::Server, &trace).bind()?;
//! let client = socket::socket(here, Side::Client, &trace).bind()?;
//! client.send_to(b"hello", server.local_addr())?;
//! server.recv_from(&mut [0; 64])?;
//!
//! let picture = Sequence::from_events("one datagram", &recorder.events());
//! let svg = diagram::svg(&picture);
//! assert!(svg.contains("5 B"));
//! assert!(diagram::mermaid(&picture).contains("->>"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod mermaid;
mod render;
pub mod sequence;
pub mod svg;
pub mod syscalls;
pub mod walks;

pub use mermaid::mermaid;
pub use render::svg;
pub use sequence::{Arrow, Lifeline, Link, LossSample, Mark, Role, Row, Sequence};
