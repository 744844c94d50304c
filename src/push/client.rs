//! A client of the line protocol, for tests and for `sockstep push connect`:
//! connect, subscribe, publish, and take what the server pushes, with a
//! timeout on every wait.
//!
//! A kept connection can bring anything at any time: the answer to a command
//! may come after a dozen messages pushed meanwhile. So the client reads
//! whole lines into [`ServerLine`]s; a method that waits for one particular
//! answer ([`Client::subscribe`]) keeps whatever came before it, and
//! [`Client::next`] hands those out first, in the order they arrived.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::push::line::{Command, MAX_LINE, ServerLine};
use crate::step::Step;
use crate::tcp::client;
use crate::tcp::connection::{Connection, Timeouts};
use crate::tcp::framing::{FrameReader, Framing};
use crate::trace::Trace;

/// One client connection to a push hub. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    id: u64,
    reader: FrameReader<Connection>,
    writer: Publisher,
    // Lines read while waiting for a particular answer, not yet handed out.
    pending: VecDeque<ServerLine>,
    // The read timeout set on the socket now, so it is set only when it changes.
    read_timeout: Option<Duration>,
    peer: crate::Endpoint,
}

/// The sending half of a [`Client`], for a thread of its own: commands go out
/// while the client's owner waits for what comes in. Clones share one lock, so
/// two threads' lines never interleave on the socket.
#[derive(Debug, Clone)]
pub struct Publisher {
    conn: Arc<Mutex<Connection>>,
}

impl Client {
    /// Connects to the hub at `server` (client steps 1–2, with `timeout` for
    /// the connect and for every write) and reads its `HELLO`.
    ///
    /// # Errors
    /// As [`ClientSocket::connect`](crate::tcp::client::ClientSocket::connect);
    /// and as [`Client::over`].
    pub fn connect(server: SocketAddr, timeout: Duration) -> Result<Client, Error> {
        let conn = client::socket(server, &Trace::off())
            .timeouts(Timeouts {
                read: Some(timeout),
                write: Some(timeout),
            })
            .connect(timeout)?;
        Client::over(conn, timeout)
    }

    /// Speaks the protocol over a connection you made (your own trace and
    /// timeouts), waiting up to `timeout` for the server's `HELLO`.
    ///
    /// # Errors
    /// [`ErrorKind::RefusedByServer`] with the server's reason when it answers
    /// `BYE` (`hub full: …`); [`ErrorKind::InvalidInput`] when the first line
    /// is no `HELLO` (not a push hub) or never comes; a read error as such.
    pub fn over(conn: Connection, timeout: Duration) -> Result<Client, Error> {
        let peer = conn.peer_endpoint();
        let writer = Publisher {
            conn: Arc::new(Mutex::new(conn.try_clone()?)),
        };
        let mut client = Client {
            id: 0,
            reader: FrameReader::new(conn, Framing::Lines).with_max(MAX_LINE),
            writer,
            pending: VecDeque::new(),
            read_timeout: None,
            peer,
        };
        let not_a_hub = |what: String, peer: crate::Endpoint| {
            Error::new(
                Step::Read,
                ErrorKind::InvalidInput(format!("expected HELLO from a push hub, {what}")),
            )
            .at(peer)
        };
        match client.read_line(timeout)? {
            Some(ServerLine::Hello(id)) => {
                client.id = id;
                Ok(client)
            }
            Some(ServerLine::Bye(reason)) => {
                Err(Error::new(Step::Read, ErrorKind::RefusedByServer(reason))
                    .at(client.peer.clone()))
            }
            Some(other) => Err(not_a_hub(
                format!("got {:?}", other.to_string()),
                client.peer,
            )),
            None => Err(not_a_hub("but the server closed".into(), client.peer)),
        }
    }

    /// This client's member number in the hub, from `HELLO`.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A handle for sending from another thread (see [`Publisher`]).
    pub fn publisher(&self) -> Publisher {
        self.writer.clone()
    }

    /// Sends `SUB` and waits up to `timeout` for `OK SUB`: from then on every
    /// published message comes to this client.
    ///
    /// # Errors
    /// As [`Client::expect`].
    pub fn subscribe(&mut self, timeout: Duration) -> Result<(), Error> {
        self.writer.send(&Command::Sub)?;
        self.expect(&ServerLine::Ok("SUB".into()), timeout)
    }

    /// Sends `UNSUB` and waits up to `timeout` for `OK UNSUB`.
    ///
    /// # Errors
    /// As [`Client::expect`].
    pub fn unsubscribe(&mut self, timeout: Duration) -> Result<(), Error> {
        self.writer.send(&Command::Unsub)?;
        self.expect(&ServerLine::Ok("UNSUB".into()), timeout)
    }

    /// Sends `PUB text`, without waiting: its `OK PUB <seq>` (and, if
    /// subscribed, its `MSG`) come through [`next`](Client::next).
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    pub fn publish(&mut self, text: &str) -> Result<(), Error> {
        self.writer.publish(text)
    }

    /// Sends one raw line, as a person at `nc` would type it.
    ///
    /// # Errors
    /// As [`Publisher::send_line`].
    pub fn send_line(&mut self, line: &str) -> Result<(), Error> {
        self.writer.send_line(line)
    }

    /// The next line from the server, waiting at most `timeout` for each read.
    /// `Ok(None)` when the server has closed the connection.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] when nothing came in time (what did arrive of a
    /// line is kept for the next call); [`ErrorKind::FrameTooLarge`] for a line
    /// over [`MAX_LINE`]; [`ErrorKind::TruncatedFrame`] when the stream ended
    /// inside a line; any other read error.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<ServerLine>, Error> {
        if let Some(line) = self.pending.pop_front() {
            return Ok(Some(line));
        }
        self.read_line(timeout)
    }

    /// The next published message (`MSG`, `TICK` or `SYS`), skipping answers
    /// (`OK`, `PONG`, `ERR`), within `timeout` in all. `Ok(None)` when the
    /// server closed; a `BYE` before that is skipped too.
    ///
    /// # Errors
    /// As [`Client::next`]; [`ErrorKind::TimedOut`] when the whole wait ran out.
    pub fn next_published(&mut self, timeout: Duration) -> Result<Option<ServerLine>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(self.left_until(deadline)?)? {
                Some(line) if line.seq().is_some() => return Ok(Some(line)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Waits up to `timeout` in all for exactly `wanted`, keeping the lines
    /// that come before it for [`next`](Client::next).
    ///
    /// # Errors
    /// [`ErrorKind::RefusedByServer`] if the server says `BYE` first (the
    /// reason inside); [`ErrorKind::TimedOut`] when time runs out; a read
    /// error; [`ErrorKind::BrokenPipe`] if the server closes first.
    pub fn expect(&mut self, wanted: &ServerLine, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        let outcome = loop {
            let wait = match self.left_until(deadline) {
                Ok(wait) => wait,
                Err(e) => break Err(e),
            };
            match self.read_line(wait) {
                Ok(Some(line)) if &line == wanted => break Ok(()),
                Ok(Some(ServerLine::Bye(reason))) => {
                    break Err(Error::new(Step::Read, ErrorKind::RefusedByServer(reason))
                        .at(self.peer.clone()));
                }
                Ok(Some(line)) => before.push(line),
                Ok(None) => {
                    break Err(Error::new(Step::Read, ErrorKind::BrokenPipe).at(self.peer.clone()));
                }
                Err(e) => break Err(e),
            }
        };
        self.pending.extend(before);
        outcome
    }

    /// Sends `QUIT` and reads until the server closes, within `timeout` in
    /// all; returns every line not yet handed out — the last is normally
    /// `BYE quit`.
    ///
    /// # Errors
    /// As [`Client::next`], and [`ErrorKind::TimedOut`] if the server does not
    /// close in time.
    pub fn quit(mut self, timeout: Duration) -> Result<Vec<ServerLine>, Error> {
        self.writer.send(&Command::Quit)?;
        let deadline = Instant::now() + timeout;
        let mut lines: Vec<ServerLine> = self.pending.drain(..).collect();
        while let Some(line) = self.read_line(self.left_until(deadline)?)? {
            lines.push(line);
        }
        Ok(lines)
    }

    /// The connection underneath, for what this type does not offer (a
    /// half-close, a look at the socket).
    pub fn connection(&self) -> &Connection {
        self.reader.get_ref()
    }

    fn left_until(&self, deadline: Instant) -> Result<Duration, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::new(Step::Read, ErrorKind::TimedOut).at(self.peer.clone()));
        }
        Ok(left)
    }

    /// One line off the socket, waiting up to `timeout` for each read.
    fn read_line(&mut self, timeout: Duration) -> Result<Option<ServerLine>, Error> {
        // SO_RCVTIMEO of zero means "forever"; the shortest real wait is 1 µs.
        let timeout = Some(timeout.max(Duration::from_micros(1)));
        if self.read_timeout != timeout {
            self.reader
                .get_ref()
                .stream()
                .set_read_timeout(timeout)
                .map_err(|e| Error::io(Step::Read, e).at(self.peer.clone()))?;
            self.read_timeout = timeout;
        }
        let line = self
            .reader
            .read_frame()
            .map_err(|e| e.at(self.peer.clone()))?;
        Ok(line.map(|bytes| ServerLine::parse(&String::from_utf8_lossy(&bytes))))
    }
}

impl Publisher {
    /// Sends `PUB text`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidFrame`] if `text` holds a line break, or is empty
    /// (the server would answer `ERR`); a write error as such.
    pub fn publish(&self, text: &str) -> Result<(), Error> {
        if text.is_empty() {
            return Err(Error::new(
                Step::Frame,
                ErrorKind::InvalidFrame("PUB needs a text"),
            ));
        }
        self.send(&Command::Pub(text.to_string()))
    }

    /// Sends `command`.
    ///
    /// # Errors
    /// As [`Publisher::send_line`].
    pub fn send(&self, command: &Command) -> Result<(), Error> {
        self.send_line(&command.to_string())
    }

    /// Sends one raw line; the line ending is added here.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidFrame`] if `line` holds `'\n'` or `'\r'` (it would
    /// be two lines, or lose its end); [`ErrorKind::FrameTooLarge`] over
    /// [`MAX_LINE`] bytes; a write error ([`ErrorKind::BrokenPipe`] once the
    /// server has closed; [`ErrorKind::TimedOut`] if it stopped reading).
    pub fn send_line(&self, line: &str) -> Result<(), Error> {
        if line.contains(['\n', '\r']) {
            return Err(Error::new(
                Step::Frame,
                ErrorKind::InvalidFrame("a line cannot contain a line break"),
            ));
        }
        if line.len() > MAX_LINE {
            return Err(Error::new(
                Step::Frame,
                ErrorKind::FrameTooLarge {
                    len: line.len() as u64,
                    max: MAX_LINE,
                },
            ));
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        // A poisoned lock means another sender panicked between two whole
        // writes; the connection is still in step.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.write_all(&bytes)
    }

    /// Half-closes: "nothing more from me" (the server answers with what was
    /// queued, `BYE end of stream`, and closes).
    ///
    /// # Errors
    /// As [`Connection::shutdown_write`].
    pub fn shutdown_write(&self) -> Result<(), Error> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .shutdown_write()
    }
}
