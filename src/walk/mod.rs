//! Walkthroughs: the seed's flow run for real on loopback, printed step by step.
//!
//! A walkthrough is a printed [trace](crate::trace): it starts real sockets in
//! one process, attaches a [`Printer`](crate::trace::Printer), and lets every
//! step announce itself as it happens — numbered as in the seed, with the system
//! calls std made for it. `sockstep walk tcp` (and `make run`) runs [`tcp`];
//! `sockstep walk udp` runs [`udp`]: the datagram socket's steps, then a link
//! that loses datagrams without a word; `sockstep walk http` runs [`http`]:
//! requests that each open and close a connection, then HTTP/1.1 keep-alive;
//! `sockstep walk push` runs [`push`]: two clients that connect once, and
//! messages both ways on the kept connections, the server speaking unasked.
//! `sockstep walk hosts` runs [`hosts`]: two hosts on one machine (network
//! namespaces, as root), where an address names a host and a port a process in it.

pub mod hosts;
pub mod http;
pub mod push;
pub mod tcp;
pub mod udp;

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How a walkthrough runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkOptions {
    /// Pause after each step so a person can follow (`--slow`).
    pub pause: Duration,
}

impl Default for WalkOptions {
    fn default() -> WalkOptions {
        WalkOptions {
            pause: Duration::ZERO,
        }
    }
}

/// The pause `--slow` asks for: long enough to read a line, short enough to stay watchable.
pub const SLOW_PAUSE: Duration = Duration::from_millis(700);

/// One output shared by the printer (from any thread) and the walkthrough's own
/// headings, so their lines never interleave mid-line.
#[derive(Clone)]
pub(crate) struct SharedOut(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedOut {
    pub(crate) fn new(out: Box<dyn Write + Send>) -> SharedOut {
        SharedOut(Arc::new(Mutex::new(out)))
    }

    /// Writes a whole line; a closed output (`| head`) is not the walkthrough's failure.
    pub(crate) fn line(&self, text: &str) {
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}
