//! The trace: one event for every lifecycle step and every read and write.
//!
//! A socket's life is invisible from outside: the kernel does the work and a
//! program only sees calls return. sockstep makes it visible by emitting an
//! [`Event`] — which side, which step, which sockets, how many bytes, when — at
//! every step to a [`Tracer`]. Two tracers ship: [`Printer`] writes a line per
//! event for people (the walkthroughs are a printed trace), and [`Recorder`]
//! keeps the events for tests to check (for example that `accept()` never comes
//! before `listen()`).
//!
//! Tracing is off by default and free when off: a [`Trace`] that is off holds no
//! tracer, and [`Trace::emit`] takes a closure that builds the event only when a
//! tracer is there, so the cost of an off hook is one branch on a `None`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Protocol};
use crate::step::{Side, Step};

/// One thing that happened to one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened (monotonic clock, comparable across threads).
    pub at: Instant,
    /// Which socket: a number unique in this process, given at its `socket()`
    /// step (or at `accept()` for the socket accept makes) and kept for its whole
    /// life, so a reader can follow one socket from creation to close.
    pub socket: SocketId,
    /// Which role the socket plays.
    pub side: Side,
    /// Which step.
    pub step: Step,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// This socket's own address, once it has one.
    pub local: Option<SocketAddr>,
    /// The other end's address, once there is one.
    pub peer: Option<SocketAddr>,
    /// Bytes moved by a read or write (0 for a read means end of stream).
    pub bytes: Option<usize>,
    /// Anything else worth saying: a refusal's reason, an error, a backlog size.
    pub detail: Option<String>,
}

impl Event {
    /// An event for socket `socket` on `side` taking `step` now, with nothing
    /// else filled in yet.
    pub fn new(socket: SocketId, side: Side, step: Step, protocol: Protocol) -> Event {
        Event {
            at: Instant::now(),
            socket,
            side,
            step,
            protocol,
            local: None,
            peer: None,
            bytes: None,
            detail: None,
        }
    }

    /// Sets this socket's address.
    pub fn local(mut self, addr: SocketAddr) -> Event {
        self.local = Some(addr);
        self
    }

    /// Sets the other end's address.
    pub fn peer(mut self, addr: SocketAddr) -> Event {
        self.peer = Some(addr);
        self
    }

    /// Sets the byte count.
    pub fn bytes(mut self, n: usize) -> Event {
        self.bytes = Some(n);
        self
    }

    /// Sets the free-text detail.
    pub fn detail(mut self, text: impl Into<String>) -> Event {
        self.detail = Some(text.into());
        self
    }
}

/// A socket's identity in a trace. Addresses are not enough: a client socket
/// has none before `connect()`, and accepted sockets share the server's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

impl SocketId {
    /// A number no other socket of this process has had.
    pub fn next() -> SocketId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SocketId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for SocketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Something that receives events. Implement it to send the trace elsewhere.
pub trait Tracer: Send + Sync {
    /// Called once per event, from the thread that took the step.
    fn event(&self, event: &Event);
}

/// The hook a socket carries: either off (the default) or a shared tracer.
#[derive(Clone, Default)]
pub struct Trace {
    tracer: Option<Arc<dyn Tracer>>,
}

impl Trace {
    /// A trace that is off: events are never built.
    pub fn off() -> Trace {
        Trace::default()
    }

    /// A trace that sends every event to `tracer`.
    pub fn to(tracer: Arc<dyn Tracer>) -> Trace {
        Trace {
            tracer: Some(tracer),
        }
    }

    /// Whether a tracer is attached.
    pub fn is_on(&self) -> bool {
        self.tracer.is_some()
    }

    /// Builds the event with `make` and hands it to the tracer — only if there is one.
    #[inline]
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if let Some(tracer) = &self.tracer {
            tracer.event(&make());
        }
    }
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_on() {
            "Trace(on)"
        } else {
            "Trace(off)"
        })
    }
}

/// Keeps every event, for tests and for drawing pictures afterwards.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// An empty recorder, ready to share.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// A [`Trace`] that records into this recorder.
    pub fn trace(self: &Arc<Self>) -> Trace {
        Trace::to(self.clone())
    }

    /// Every event so far, in the order they happened.
    ///
    /// Events from different threads can reach the recorder in a different order
    /// than they happened; sorting by the monotonic timestamp restores real order.
    pub fn events(&self) -> Vec<Event> {
        let mut events = self.lock().clone();
        events.sort_by_key(|e| e.at);
        events
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        // A panicking tracer user cannot leave the Vec half-written; keep going.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tracer for Recorder {
    fn event(&self, event: &Event) {
        self.lock().push(event.clone());
    }
}

/// Sends every event to several tracers, in order: print it *and* record it.
pub struct Tee(pub Vec<Arc<dyn Tracer>>);

impl Tracer for Tee {
    fn event(&self, event: &Event) {
        for tracer in &self.0 {
            tracer.event(event);
        }
    }
}

/// Prints one line per event, numbered as in the seed, with the syscalls std made.
///
/// ```text
///    0.041 ms  server 2 bind()     tcp://127.0.0.1:40211  std: socket(SOCK_STREAM|SOCK_CLOEXEC) + ...
/// ```
pub struct Printer {
    start: Instant,
    pause: Duration,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Printer {
    /// A printer to standard output.
    pub fn stdout() -> Printer {
        Printer::to(Box::new(io::stdout()))
    }

    /// A printer to any writer (a file, a buffer in a test).
    pub fn to(out: Box<dyn Write + Send>) -> Printer {
        Printer {
            start: Instant::now(),
            pause: Duration::ZERO,
            out: Mutex::new(out),
        }
    }

    /// Sleeps this long after each event, so a person can follow along (`--slow`).
    pub fn pausing(mut self, pause: Duration) -> Printer {
        self.pause = pause;
        self
    }

    /// The line this printer writes for `event`, without the newline.
    pub fn line(&self, event: &Event) -> String {
        let millis = event.at.saturating_duration_since(self.start).as_secs_f64() * 1e3;
        let number = event
            .step
            .seed_number(event.side)
            .map_or(" ".to_string(), |n| n.to_string());
        let mut line = format!(
            "{millis:9.3} ms  {side} {number} {step:<11} {socket:<4}",
            side = event.side,
            socket = event.socket.to_string(),
            step = event.step.name()
        );
        if let Some(local) = event.local {
            let _ = write!(line, " {}", Endpoint::from_addr(event.protocol, local));
        }
        if let Some(peer) = event.peer {
            let _ = write!(line, " <-> {}", Endpoint::from_addr(event.protocol, peer));
        }
        if let Some(n) = event.bytes {
            let _ = write!(line, "  {n} bytes");
        }
        if let Some(detail) = &event.detail {
            let _ = write!(line, "  {detail}");
        }
        // A message is our code's view of bytes already read or about to be
        // written: no system call of its own to show.
        if event.step != Step::Message {
            let _ = write!(
                line,
                "\n{:18}std: {}",
                "",
                event.step.syscalls(event.protocol)
            );
        }
        line
    }
}

impl Tracer for Printer {
    fn event(&self, event: &Event) {
        let line = self.line(event);
        {
            let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
            // A closed stdout (`sockstep walk tcp | head`) must not kill a socket step.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if !self.pause.is_zero() {
            std::thread::sleep(self.pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn an_off_trace_never_builds_the_event() {
        let built = AtomicBool::new(false);
        Trace::off().emit(|| {
            built.store(true, Ordering::SeqCst);
            Event::new(SocketId(1), Side::Client, Step::Connect, Protocol::Tcp)
        });
        assert!(!built.load(Ordering::SeqCst));
    }

    #[test]
    fn a_recorder_keeps_events_in_time_order() {
        let rec = Recorder::new();
        let trace = rec.trace();
        let later = Event::new(SocketId(1), Side::Server, Step::Accept, Protocol::Tcp);
        let earlier = Event {
            at: later.at - Duration::from_millis(1),
            ..Event::new(SocketId(1), Side::Client, Step::Connect, Protocol::Tcp)
        };
        trace.emit(|| later.clone());
        trace.emit(|| earlier.clone());
        let steps: Vec<Step> = rec.events().iter().map(|e| e.step).collect();
        assert_eq!(steps, vec![Step::Connect, Step::Accept]);
    }

    #[test]
    fn a_printed_line_names_side_number_step_and_syscalls() {
        let printer = Printer::to(Box::new(io::sink()));
        let e = Event::new(SocketId(1), Side::Server, Step::Bind, Protocol::Tcp)
            .local("127.0.0.1:80".parse().unwrap());
        let line = printer.line(&e);
        assert!(
            line.contains("server 2 bind()") && line.contains(" #1 "),
            "{line}"
        );
        assert!(line.contains("tcp://127.0.0.1:80"), "{line}");
        assert!(line.contains("listen(128)"), "{line}");
    }
}
