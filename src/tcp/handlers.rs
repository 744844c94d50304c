//! What a connection's thread runs: the [`Handler`] trait and three built-ins.
//!
//! A thread-per-connection server gives each accepted connection a thread and
//! runs a handler on it until the handler returns. Any
//! `Fn(&mut Connection) -> Result<(), Error>` closure is a handler. The built-ins
//! are the baselines people reach for in tests:
//!
//! - [`Echo`] writes back every byte it reads, until the client half-closes.
//! - [`Sink`] reads and throws away everything (the "discard" service), counting bytes.
//! - [`Recorder`] keeps what each connection sent, in order, for a test to inspect.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::step::Step;
use crate::tcp::connection::Connection;

/// Runs one connection, on that connection's own thread.
///
/// Return `Ok(())` when the conversation ended normally, or the error that ended
/// it; the server counts both. A panic is caught, counted and reported; the
/// server keeps serving.
pub trait Handler: Send + Sync + 'static {
    /// Talks to one client until done.
    ///
    /// # Errors
    /// Whatever ended the conversation abnormally.
    fn handle(&self, conn: &mut Connection) -> Result<(), Error>;
}

impl<F> Handler for F
where
    F: Fn(&mut Connection) -> Result<(), Error> + Send + Sync + 'static,
{
    fn handle(&self, conn: &mut Connection) -> Result<(), Error> {
        self(conn)
    }
}

/// The read size of the built-in handlers: 64 KiB, one loopback segment's worth
/// and few enough bytes to sit on every thread's stack without thought.
const CHUNK: usize = 64 * 1024;

/// Writes back every byte it reads, in order, until end of stream; then returns,
/// and the server closes the connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Handler for Echo {
    fn handle(&self, conn: &mut Connection) -> Result<(), Error> {
        let mut buf = vec![0; CHUNK];
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(()),
                n => conn.write_all(&buf[..n])?,
            }
        }
    }
}

/// Reads and discards everything until end of stream (RFC 863's discard service).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sink;

impl Handler for Sink {
    fn handle(&self, conn: &mut Connection) -> Result<(), Error> {
        let mut buf = vec![0; CHUNK];
        while conn.read(&mut buf)? > 0 {}
        Ok(())
    }
}

/// What a [`Recorder`] kept of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The client's address.
    pub peer: SocketAddr,
    /// Every byte it sent, in order.
    pub bytes: Vec<u8>,
    /// Whether the connection has ended (the client half-closed or went away).
    pub finished: bool,
}

/// Keeps what each connection sent, in arrival order of connections.
///
/// Clone it to keep a handle for the test while the server owns another; both
/// see the same recordings.
///
/// ```
/// use sockstep::tcp::{client, handlers::Recorder, serve::ServeConfig, server};
/// use sockstep::trace::Trace;
/// use std::time::Duration;
///
/// let recorder = Recorder::new();
/// let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(8);
/// let server = listening.serve(ServeConfig::default(), recorder.clone())?;
/// let mut conn = client::socket(server.local_addr(), &Trace::off()).connect(Duration::from_secs(5))?;
/// conn.write_all(b"hello")?;
/// conn.shutdown_write()?;
/// let got = recorder.wait_for(1, Duration::from_secs(5))?;
/// assert_eq!(got[0].bytes, b"hello");
/// # Ok::<(), sockstep::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Recorder {
    shared: Arc<(Mutex<Vec<Recording>>, Condvar)>,
    limit: usize,
}

/// The most a [`Recorder`] keeps of one connection unless told otherwise: 64 MiB,
/// far more than a test sends, and a bound on what a runaway peer can make us hold.
pub const DEFAULT_RECORD_LIMIT: usize = 64 << 20;

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            shared: Arc::default(),
            limit: DEFAULT_RECORD_LIMIT,
        }
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Keeps at most `limit` bytes per connection; a connection that sends more
    /// ends with [`ErrorKind::LimitExceeded`] (what came before stays recorded).
    pub fn with_limit(mut self, limit: usize) -> Recorder {
        self.limit = limit;
        self
    }

    /// Every recording so far.
    pub fn recordings(&self) -> Vec<Recording> {
        self.lock().clone()
    }

    /// Waits until `count` connections have finished, and returns all recordings.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if fewer than `count` finished within `timeout`.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Result<Vec<Recording>, Error> {
        let finished = |r: &Vec<Recording>| r.iter().filter(|r| r.finished).count();
        let (recordings, _) = self
            .shared
            .1
            .wait_timeout_while(self.lock(), timeout, |r| finished(r) < count)
            .unwrap_or_else(PoisonError::into_inner);
        if finished(&recordings) < count {
            return Err(Error::new(Step::Read, ErrorKind::TimedOut));
        }
        Ok(recordings.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Recording>> {
        // Recordings are only appended to; a poisoned lock still holds whole entries.
        self.shared.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Handler for Recorder {
    fn handle(&self, conn: &mut Connection) -> Result<(), Error> {
        let index = {
            let mut recordings = self.lock();
            recordings.push(Recording {
                peer: conn.peer_addr(),
                bytes: Vec::new(),
                finished: false,
            });
            recordings.len() - 1
        };
        let mut buf = vec![0; CHUNK];
        let result = loop {
            match conn.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    let mut recordings = self.lock();
                    let bytes = &mut recordings[index].bytes;
                    if bytes.len() + n > self.limit {
                        break Err(Error::new(
                            Step::Read,
                            ErrorKind::LimitExceeded {
                                what: "bytes recorded per connection",
                                limit: self.limit as u64,
                            },
                        )
                        .at(conn.peer_endpoint()));
                    }
                    bytes.extend_from_slice(&buf[..n]);
                }
                Err(e) => break Err(e),
            }
        };
        self.lock()[index].finished = true;
        self.shared.1.notify_all();
        result
    }
}
