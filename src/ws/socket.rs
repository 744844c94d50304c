//! The WebSocket over a TCP [`Connection`]: handshake, messages, pings, and the close handshake.
//!
//! # The idea
//!
//! After the handshake ([`handshake`]) both sides hold the
//! same thing, a [`WebSocket`], and either may send a message at any time:
//! unlike HTTP, where the client asks and the server answers, the server can
//! *push*. Underneath it is still the TCP connection the handshake ran on,
//! read and written with the [`Connection`] of [`tcp`](crate::tcp), so every
//! read and write has its timeout and shows up in the trace — beside an event
//! for the upgrade ([`Step::Upgrade`]) and for each message ([`Step::Message`]).
//!
//! ```text
//! server: accept() → read the GET head → write 101 → WebSocket { recv / send … }
//! client: connect() → write the GET → read 101      → WebSocket { recv / send … }
//! ```
//!
//! [`WebSocket::recv`] returns the next message and does the protocol's chores
//! on the way: it answers a ping with a pong, puts fragments back together, and
//! checks every rule of [`frame`](super::frame) and [`message`](super::message).
//!
//! # Closing: a handshake of its own
//!
//! TCP's FIN says "no more bytes"; it cannot say whether the application got
//! to the end of its conversation. So WebSocket closes with a handshake on top:
//!
//! ```text
//! client: close() sends Close(1000) ──►  server: recv() → Message::Close(1000);
//!                                          it answers Close(1000) and sends FIN
//! client: reads the Close(1000)     ◄──
//!         and the FIN, then closes TCP
//! ```
//!
//! Either side may start; whoever receives a close frame answers it. The
//! server closes TCP first (§7.1.1), so TIME_WAIT — the 2×MSL wait after an
//! active close — stays with the server, where a new connection from the same
//! client port may reuse it at once, and not with the client, which could not
//! reconnect from that port until it ends.
//!
//! [`WebSocket::close`] does A's part, waiting at most
//! [`Config::close_timeout`]; [`WebSocket::recv`] does B's part by itself.
//!
//! # When the peer breaks a rule
//!
//! RFC 6455 §7.1.7 calls it "failing the connection": we send a close frame with
//! the code the violation earned (1002, 1007, 1009), stop writing, read and
//! discard until the peer closes or `close_timeout` passes — so that our close
//! frame is not destroyed by a reset, which is what closing a socket with
//! unread bytes would send — and return an [`ErrorKind::WebSocket`] error
//! naming the code, the rule and the peer.
//!
//! # Two threads: [`WebSocket::split`]
//!
//! A hub pushes to a browser while reading what the browser says. A blocking
//! `recv` would hold the socket, so [`split`](WebSocket::split) gives a
//! [`Reader`] for one thread and a [`Writer`] that any number of threads may
//! clone and use. The writer is a mutex around a second handle on the same
//! socket ([`Connection::try_clone`]); each message is written whole under the
//! lock, so two senders never interleave their frames. The reader answers pings
//! and closes through the same writer.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind};
use crate::http::{
    HttpError, Limits, Parsed, Request, Response, parse_request, parse_response,
    parse_response_at_eof,
};
use crate::step::{Side, Step};
use crate::tcp::client;
use crate::tcp::connection::{Connection, Timeouts};
use crate::tcp::handlers::Handler;
use crate::trace::Trace;
use crate::ws::frame::{CloseCode, Frame, MAX_CONTROL_PAYLOAD, Opcode, ProtocolError};
use crate::ws::handshake;
use crate::ws::message::{Decoder, Message};

/// The default largest message (and frame): 1 MiB, the same as
/// [`tcp::framing::DEFAULT_MAX_FRAME`](crate::tcp::framing::DEFAULT_MAX_FRAME) and
/// the default of Python's `websockets`. A thread-per-connection server can
/// afford it for every connection at once.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// How many bytes one `read()` asks for: 8 KiB, as `tcp::framing` and std's `BufReader`.
const READ_CHUNK: usize = 8 * 1024;

/// The longest close reason: a control payload of 125 bytes less the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Limits and timeouts of a [`WebSocket`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The largest payload of one frame; a peer's frame that announces more is
    /// refused with 1009 before its payload is read.
    pub max_frame: usize,
    /// The largest message after reassembly; more is refused with 1009.
    pub max_message: usize,
    /// Read and write timeouts of a client's connection ([`WebSocket::connect`]).
    /// A server's connection keeps the timeouts its server gave it.
    pub timeouts: Timeouts,
    /// The longest wait for TCP's connect ([`WebSocket::connect`]).
    pub connect_timeout: Duration,
    /// The longest the HTTP head of the handshake may take to arrive, however it
    /// trickles in.
    pub handshake_timeout: Duration,
    /// The longest wait for the peer's close frame (and, for a client, the
    /// server's FIN) in [`WebSocket::close`], and for the peer to close after
    /// we failed the connection.
    pub close_timeout: Duration,
    /// Limits on the handshake's HTTP head. An upgrade request may carry no
    /// body, so `max_body` only bounds the body of a server's refusal.
    pub http_limits: Limits,
}

impl Default for Config {
    /// 1 MiB frames and messages; 30 s read and write timeouts; 10 s to
    /// connect and to finish the handshake; 5 s to close.
    fn default() -> Config {
        Config {
            max_frame: DEFAULT_MAX_MESSAGE,
            max_message: DEFAULT_MAX_MESSAGE,
            timeouts: Timeouts::default(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            http_limits: Limits::default(),
        }
    }
}

/// A WebSocket connection, on either side. See the [module docs](self).
///
/// # Examples
/// ```
/// use sockstep::tcp::server;
/// use sockstep::trace::Trace;
/// use sockstep::ws::{Config, Message, WebSocket, CloseCode};
/// use std::thread;
///
/// let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(8);
/// let addr = listening.local_addr();
/// let server = thread::spawn(move || -> Result<(), sockstep::Error> {
///     let mut ws = WebSocket::accept(listening.accept()?, &Config::default())?;
///     while let Message::Text(text) = ws.recv()? {
///         ws.send_text(&text.to_uppercase())?;
///     }
///     Ok(()) // recv returned the client's Close and answered it
/// });
///
/// let mut ws = WebSocket::connect(addr, "/shout", &Config::default(), &Trace::off())?;
/// ws.send_text("hello")?;
/// assert_eq!(ws.recv()?, Message::Text("HELLO".into()));
/// let (code, _reason) = ws.close(CloseCode::NORMAL, "done")?;
/// assert_eq!(code, CloseCode::NORMAL);
/// server.join().unwrap()?;
/// # Ok::<(), sockstep::Error>(())
/// ```
#[derive(Debug)]
pub struct WebSocket {
    reader: Reader,
    writer: Writer,
}

/// The receiving half of a [`WebSocket`], for one thread. See [`WebSocket::split`].
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
    decoder: Decoder,
    scratch: Vec<u8>,
    /// Answers pings and closes.
    writer: Writer,
    close_timeout: Duration,
    ended: Option<Ended>,
}

/// Why a reader will return no more messages.
#[derive(Debug, Clone)]
enum Ended {
    /// The peer sent its close frame (and it was answered).
    PeerClosed { code: CloseCode, reason: String },
    /// A violation, or the connection ended without a close frame (1006).
    Failed { code: CloseCode, reason: String },
}

/// The sending half of a [`WebSocket`]: clone it for every thread that sends.
///
/// Each message is written whole while holding a lock, so messages from
/// different threads never interleave. A write blocks at most the connection's
/// write timeout per `write()` call.
#[derive(Debug, Clone)]
pub struct Writer {
    shared: Arc<Mutex<WriteHalf>>,
}

#[derive(Debug)]
struct WriteHalf {
    conn: Connection,
    /// The code of the close frame we sent; nothing may be sent after it.
    close_sent: Option<CloseCode>,
}

// ---------------------------------------------------------------------------
// Opening: the handshake, then the WebSocket.
// ---------------------------------------------------------------------------

impl WebSocket {
    /// Client: connects to `addr` and upgrades to a WebSocket at `path`.
    ///
    /// Client step 1 `socket()` and step 2 `connect()` of [`tcp::client`](crate::tcp::client)
    /// with `config.timeouts`, then [`handshake`](WebSocket::handshake). The
    /// `Host` header is the address, `IP:PORT`.
    ///
    /// # Errors
    /// The connect errors of [`ClientSocket::connect`](crate::tcp::client::ClientSocket::connect),
    /// and those of [`handshake`](WebSocket::handshake).
    pub fn connect(
        addr: SocketAddr,
        path: &str,
        config: &Config,
        trace: &Trace,
    ) -> Result<WebSocket, Error> {
        let conn = client::socket(addr, trace)
            .timeouts(config.timeouts)
            .connect(config.connect_timeout)?;
        WebSocket::handshake(conn, path, config)
    }

    /// Client: upgrades an open connection. Writes the `GET` with a fresh key,
    /// reads the answer within `config.handshake_timeout`, and checks it.
    ///
    /// # Errors
    /// [`ErrorKind::Http`] at [`Step::Upgrade`] when the server refuses (its
    /// status, and its body in the reason) or answers a `101` that fails the
    /// checks of [`handshake::check_response`];
    /// [`ErrorKind::InvalidInput`] for a `path` that cannot be a request target;
    /// [`ErrorKind::TimedOut`] and the connection's errors otherwise.
    pub fn handshake(
        mut conn: Connection,
        path: &str,
        config: &Config,
    ) -> Result<WebSocket, Error> {
        let peer = conn.peer_endpoint();
        let key = handshake::new_key();
        let request = handshake::request(&conn.peer_addr().to_string(), path, &key);
        let bytes = request.to_bytes().map_err(|e| {
            Error::new(
                Step::Upgrade,
                ErrorKind::InvalidInput(format!("cannot send an upgrade to {path:?}: {e}")),
            )
            .at(peer.clone())
        })?;
        conn.write_all(&bytes)?;
        let limits = config.http_limits;
        let parse = |buf: &[u8], eof: bool| {
            if eof {
                parse_response_at_eof(buf, "GET", &limits)
            } else {
                parse_response(buf, "GET", &limits)
            }
        };
        let (response, leftover) = match read_head(&mut conn, config.handshake_timeout, parse) {
            Ok(head) => head,
            Err(HeadError::Io(e)) => return Err(e),
            Err(HeadError::Http(e)) => return Err(upgrade_error(e.status(), e.reason(), &peer)),
        };
        handshake::check_response(&response, &key).map_err(|e| e.at(peer))?;
        conn.note(Step::Upgrade, || {
            format!("101 Switching Protocols for GET {path}: now speaking WebSocket")
        });
        WebSocket::from_upgraded(conn, &leftover, config)
    }

    /// Server: reads the upgrade request from an accepted connection and
    /// answers it (within `config.handshake_timeout`).
    ///
    /// For a connection that a server hands to a [`Handler`] as `&mut`, pass
    /// `conn.try_clone()?`, or use [`Upgrade`] or [`Echo`], which do.
    ///
    /// # Errors
    /// [`ErrorKind::Http`] at [`Step::Upgrade`] when the request is malformed or
    /// not a valid upgrade; the client was sent that status, with the reason as
    /// the body. [`ErrorKind::TimedOut`] and the connection's errors otherwise.
    pub fn accept(mut conn: Connection, config: &Config) -> Result<WebSocket, Error> {
        // An upgrade has no body; a request that announces one is refused.
        let limits = Limits {
            max_body: 0,
            ..config.http_limits
        };
        let parse = |buf: &[u8], _eof: bool| parse_request(buf, &limits);
        match read_head(&mut conn, config.handshake_timeout, parse) {
            Ok((request, leftover)) => WebSocket::accept_request(conn, &request, &leftover, config),
            Err(HeadError::Io(e)) => Err(e),
            Err(HeadError::Http(e)) => {
                refuse(&mut conn, e.status(), e.reason())?;
                Err(upgrade_error(e.status(), e.reason(), &conn.peer_endpoint()))
            }
        }
    }

    /// Server: answers a request that was already read (by an HTTP server that
    /// routes some paths to WebSocket). `leftover` is what was read after the
    /// request's head: the client may have sent its first frames already.
    ///
    /// # Errors
    /// As [`accept`](WebSocket::accept).
    pub fn accept_request(
        mut conn: Connection,
        request: &Request,
        leftover: &[u8],
        config: &Config,
    ) -> Result<WebSocket, Error> {
        match handshake::accept(request) {
            Ok(response) => {
                conn.write_all(&response_bytes(&response, &conn)?)?;
                conn.note(Step::Upgrade, || {
                    format!(
                        "101 Switching Protocols for GET {}: now speaking WebSocket",
                        request.target
                    )
                });
                WebSocket::from_upgraded(conn, leftover, config)
            }
            Err(response) => {
                let reason = String::from_utf8_lossy(&response.body).trim().to_string();
                conn.note(Step::Upgrade, || {
                    format!("refused with {}: {reason}", response.status)
                });
                let _ = conn.write_all(&response_bytes(&response, &conn)?);
                let _ = conn.shutdown_write();
                Err(upgrade_error(
                    response.status,
                    &reason,
                    &conn.peer_endpoint(),
                ))
            }
        }
    }

    /// Either side: a WebSocket over a connection whose handshake is done.
    /// `leftover` is what was read after the handshake's HTTP head. The
    /// connection's [`side`](Connection::side) says which rules apply (a server
    /// reads masked frames and writes unmasked ones, a client the reverse).
    ///
    /// # Errors
    /// The OS error when the connection cannot be duplicated for the writer
    /// ([`Connection::try_clone`]).
    pub fn from_upgraded(
        conn: Connection,
        leftover: &[u8],
        config: &Config,
    ) -> Result<WebSocket, Error> {
        let writer = Writer {
            shared: Arc::new(Mutex::new(WriteHalf {
                conn: conn.try_clone()?,
                close_sent: None,
            })),
        };
        let mut decoder = Decoder::new(conn.side(), config.max_frame, config.max_message);
        decoder.feed(leftover);
        Ok(WebSocket {
            reader: Reader {
                conn,
                decoder,
                scratch: vec![0; READ_CHUNK],
                writer: writer.clone(),
                close_timeout: config.close_timeout,
                ended: None,
            },
            writer,
        })
    }

    // -----------------------------------------------------------------------
    // Talking.
    // -----------------------------------------------------------------------

    /// The next message from the peer. See [`Reader::recv`].
    ///
    /// # Errors
    /// As [`Reader::recv`].
    pub fn recv(&mut self) -> Result<Message, Error> {
        self.reader.recv()
    }

    /// Sends a text message as one frame. See [`Writer::send_text`].
    ///
    /// # Errors
    /// As [`Writer::send`].
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.writer.send_text(text)
    }

    /// Sends a binary message as one frame. See [`Writer::send_binary`].
    ///
    /// # Errors
    /// As [`Writer::send`].
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.writer.send_binary(data)
    }

    /// Sends any message as one frame. See [`Writer::send`].
    ///
    /// # Errors
    /// As [`Writer::send`].
    pub fn send(&self, message: &Message) -> Result<(), Error> {
        self.writer.send(message)
    }

    /// Sends a message in frames of at most `frame_size` bytes. See [`Writer::send_fragmented`].
    ///
    /// # Errors
    /// As [`Writer::send`].
    pub fn send_fragmented(&self, message: &Message, frame_size: usize) -> Result<(), Error> {
        self.writer.send_fragmented(message, frame_size)
    }

    /// Sends a ping; the peer's pong comes back from [`recv`](WebSocket::recv)
    /// as [`Message::Pong`]. See [`Writer::ping`].
    ///
    /// # Errors
    /// As [`Writer::send`].
    pub fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.writer.ping(payload)
    }

    /// The close handshake: sends a close frame with `code` and `reason` (unless
    /// one was sent already), reads and drops messages until the peer's close
    /// frame arrives, then — on the client, which should let the server close
    /// TCP first — waits for the server's FIN; then closes the connection.
    /// Everything within [`Config::close_timeout`].
    ///
    /// Returns the code and reason of the peer's close frame. If the peer had
    /// already closed (a [`recv`](WebSocket::recv) returned its close), returns
    /// that one at once.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a code that may not be sent or a reason
    /// over [`MAX_CLOSE_REASON`] bytes; [`ErrorKind::TimedOut`] at
    /// [`Step::Close`] when the peer did not answer in time; the error that
    /// ended the connection if it had already failed.
    pub fn close(self, code: CloseCode, reason: &str) -> Result<(CloseCode, String), Error> {
        let WebSocket { reader, writer } = self;
        writer.close(code, reason)?;
        reader.finish_close()
    }

    /// A sending handle to give to other threads, while this `WebSocket` keeps receiving.
    pub fn writer(&self) -> Writer {
        self.writer.clone()
    }

    /// Splits into a receiving half for one thread and a sending half that any
    /// number of threads may clone.
    ///
    /// To close after a split: [`Writer::close`] sends the close frame, and the
    /// reader's next [`recv`](Reader::recv) returns the peer's answer.
    ///
    /// ```
    /// use sockstep::tcp::server;
    /// use sockstep::trace::Trace;
    /// use sockstep::ws::{CloseCode, Config, Message, WebSocket};
    /// use std::thread;
    ///
    /// let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(8);
    /// let addr = listening.local_addr();
    /// let hub = thread::spawn(move || -> Result<Vec<Message>, sockstep::Error> {
    ///     let ws = WebSocket::accept(listening.accept()?, &Config::default())?;
    ///     let (mut reader, writer) = ws.split();
    ///     let pusher = thread::spawn(move || -> Result<(), sockstep::Error> {
    ///         for tick in 0..3 {
    ///             writer.send_text(&format!("tick {tick}"))?;
    ///         }
    ///         writer.close(CloseCode::GOING_AWAY, "that is all")
    ///     });
    ///     let mut heard = Vec::new();
    ///     loop {
    ///         let message = reader.recv()?;
    ///         let done = matches!(message, Message::Close { .. });
    ///         heard.push(message);
    ///         if done {
    ///             break;
    ///         }
    ///     }
    ///     pusher.join().unwrap()?;
    ///     Ok(heard)
    /// });
    ///
    /// let mut ws = WebSocket::connect(addr, "/", &Config::default(), &Trace::off())?;
    /// ws.send_text("hi from the browser")?;
    /// for tick in 0..3 {
    ///     assert_eq!(ws.recv()?, Message::Text(format!("tick {tick}")));
    /// }
    /// assert!(matches!(ws.recv()?, Message::Close { code: CloseCode::GOING_AWAY, .. }));
    /// let heard = hub.join().unwrap()?;
    /// assert_eq!(heard[0], Message::Text("hi from the browser".into()));
    /// # Ok::<(), sockstep::Error>(())
    /// ```
    pub fn split(self) -> (Reader, Writer) {
        (self.reader, self.writer)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.reader.conn.peer_addr()
    }

    /// This socket's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.reader.conn.local_addr()
    }

    /// Which side of the conversation this is.
    pub fn side(&self) -> Side {
        self.reader.conn.side()
    }
}

/// A message in a few words, for the trace: "text of 5 bytes", "close 1000 (normal closure)".
fn describe(message: &Message) -> String {
    match message {
        Message::Text(text) => format!("text of {} bytes", text.len()),
        Message::Binary(data) => format!("binary of {} bytes", data.len()),
        Message::Ping(data) => format!("ping of {} bytes", data.len()),
        Message::Pong(data) => format!("pong of {} bytes", data.len()),
        Message::Close { code, .. } => format!("close {code}"),
    }
}

/// Why [`read_head`] stopped.
enum HeadError {
    /// The head is malformed or over a limit: answer (or report) this status.
    Http(HttpError),
    /// The connection failed, timed out, or ended first.
    Io(Error),
}

/// Reads one HTTP head (and body, if any) with `parse`, at most `timeout` in
/// all, and returns it with the bytes read after it.
///
/// The buffer is bounded by the parser: it answers an error, never `Partial`,
/// once a limit is crossed.
fn read_head<T>(
    conn: &mut Connection,
    timeout: Duration,
    parse: impl Fn(&[u8], bool) -> Result<Parsed<T>, HttpError>,
) -> Result<(T, Vec<u8>), HeadError> {
    // The deadline shortens the socket's read timeout as it nears; put the
    // connection's own timeout back afterwards.
    let saved = conn.stream().read_timeout().ok().flatten();
    conn.set_deadline(Some(Instant::now() + timeout));
    let mut buf = Vec::new();
    let mut chunk = vec![0; READ_CHUNK];
    let result = loop {
        match parse(&buf, false) {
            Ok(Parsed::Complete { message, consumed }) => {
                break Ok((message, buf.split_off(consumed)));
            }
            Ok(Parsed::Partial) => {}
            Err(e) => break Err(HeadError::Http(e)),
        }
        match conn.read(&mut chunk) {
            Ok(0) => {
                // Only a response whose body runs to the close can end here.
                break match parse(&buf, true) {
                    Ok(Parsed::Complete { message, consumed }) => {
                        Ok((message, buf.split_off(consumed)))
                    }
                    _ => Err(HeadError::Io(
                        Error::new(Step::Upgrade, ErrorKind::TruncatedFrame { got: buf.len() })
                            .at(conn.peer_endpoint()),
                    )),
                };
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(HeadError::Io(e)),
        }
    };
    conn.set_deadline(None);
    if let Err(e) = conn.stream().set_read_timeout(saved) {
        return Err(HeadError::Io(
            Error::io(Step::Upgrade, e).at(conn.peer_endpoint()),
        ));
    }
    result
}

fn upgrade_error(status: u16, reason: &str, peer: &Endpoint) -> Error {
    Error::new(
        Step::Upgrade,
        ErrorKind::Http {
            status,
            reason: reason.to_string(),
        },
    )
    .at(peer.clone())
}

fn response_bytes(response: &Response, conn: &Connection) -> Result<Vec<u8>, Error> {
    // Our own answers always serialise; should one not, say so instead of panicking.
    response
        .to_bytes()
        .map_err(|e| Error::from(e).at(conn.peer_endpoint()))
}

/// Answers a malformed request with its status and stops writing.
fn refuse(conn: &mut Connection, status: u16, why: &str) -> Result<(), Error> {
    let response = handshake::refusal(status, why, &[]);
    let _ = conn.write_all(&response_bytes(&response, conn)?);
    let _ = conn.shutdown_write();
    Ok(())
}

// ---------------------------------------------------------------------------
// Receiving.
// ---------------------------------------------------------------------------

impl Reader {
    /// The next message from the peer: text, binary, a pong, or the peer's close.
    ///
    /// On the way it answers every ping with a pong (pings are never returned),
    /// and reassembles fragmented messages. When the peer's close arrives it
    /// answers with a close frame echoing the code (unless we sent ours
    /// first), a server then shuts down its writing (sends FIN), and the close
    /// is returned; after it, `recv` returns an error.
    ///
    /// Each `read()` underneath waits at most the connection's read timeout.
    ///
    /// # Errors
    /// - [`ErrorKind::TimedOut`]: nothing arrived within the read timeout. Nothing
    ///   is lost: call `recv` again to keep waiting.
    /// - [`ErrorKind::WebSocket`] with the close code: the peer broke a rule (1002,
    ///   1007, 1009: we sent that close frame and ended the connection, see the
    ///   [module docs](self)); the connection ended without a close frame (1006); or
    ///   the conversation was already over.
    /// - [`ErrorKind::TruncatedFrame`]: the connection ended inside a frame.
    /// - The connection's errors, e.g. [`ErrorKind::ConnectionReset`].
    pub fn recv(&mut self) -> Result<Message, Error> {
        if let Some(ended) = &self.ended {
            return Err(self.ended_error(Step::Read, ended.clone()));
        }
        loop {
            match self.decoder.next_message() {
                Ok(Some(Message::Ping(payload))) => {
                    self.conn.note(Step::Message, || {
                        format!("ping of {} bytes: answering with a pong", payload.len())
                    });
                    self.writer.answer_ping(payload)?;
                }
                Ok(Some(Message::Close { code, reason })) => {
                    self.conn.note(Step::Message, || {
                        format!("close {code} {reason:?} received: answering, then ending")
                    });
                    self.writer.answer_close(code);
                    self.ended = Some(Ended::PeerClosed {
                        code,
                        reason: reason.clone(),
                    });
                    return Ok(Message::Close { code, reason });
                }
                Ok(Some(message)) => {
                    self.conn
                        .note(Step::Message, || format!("received {}", describe(&message)));
                    return Ok(message);
                }
                Ok(None) => self.fill()?,
                Err(violation) => return Err(self.fail(violation)),
            }
        }
    }

    /// Reads once more into the decoder.
    fn fill(&mut self) -> Result<(), Error> {
        let n = match self.conn.read(&mut self.scratch) {
            Ok(n) => n,
            Err(e) => {
                // A timeout loses nothing; anything else ends the connection.
                if !matches!(e.kind(), ErrorKind::TimedOut) {
                    self.ended = Some(Ended::Failed {
                        code: CloseCode::ABNORMAL,
                        reason: format!("the connection failed: {}", e.summary()),
                    });
                }
                return Err(e);
            }
        };
        if n == 0 {
            let got = self.decoder.buffered();
            let reason = "the connection ended without a close frame".to_string();
            self.ended = Some(Ended::Failed {
                code: CloseCode::ABNORMAL,
                reason: reason.clone(),
            });
            if got > 0 {
                return Err(self.error(Step::Frame, ErrorKind::TruncatedFrame { got }));
            }
            return Err(self.error(
                Step::Read,
                ErrorKind::WebSocket {
                    code: CloseCode::ABNORMAL.0,
                    reason,
                },
            ));
        }
        self.decoder.feed(&self.scratch[..n]);
        Ok(())
    }

    /// Fails the connection (RFC 6455 §7.1.7): close frame with the violation's
    /// code, FIN, then read and drop until the peer closes or `close_timeout`.
    fn fail(&mut self, violation: ProtocolError) -> Error {
        self.conn.note(Step::Message, || {
            format!("protocol violation ({violation}): sending that close code")
        });
        self.writer.fail(violation.code(), violation.reason());
        self.conn
            .set_deadline(Some(Instant::now() + self.close_timeout));
        while matches!(self.conn.read(&mut self.scratch), Ok(n) if n > 0) {}
        self.conn.set_deadline(None);
        self.ended = Some(Ended::Failed {
            code: violation.code(),
            reason: violation.reason().to_string(),
        });
        Error::from(violation).at(self.conn.peer_endpoint())
    }

    /// After our close frame went out: waits for the peer's, then (client) for
    /// the server's FIN, all within `close_timeout`; then drops the connection.
    fn finish_close(mut self) -> Result<(CloseCode, String), Error> {
        let deadline = Instant::now() + self.close_timeout;
        self.conn.set_deadline(Some(deadline));
        let result = loop {
            if let Some(ended) = &self.ended {
                break match ended.clone() {
                    Ended::PeerClosed { code, reason } => Ok((code, reason)),
                    failed => Err(self.ended_error(Step::Close, failed)),
                };
            }
            match self.recv() {
                // Messages the peer sent before it saw our close: nobody wants them now.
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut) => {
                    break Err(self.error(Step::Close, ErrorKind::TimedOut));
                }
                Err(e) => break Err(e),
            }
        };
        if result.is_ok() && self.conn.side() == Side::Client {
            // The server closes TCP first (see the module docs): read until its
            // FIN, or until the deadline.
            while matches!(self.conn.read(&mut self.scratch), Ok(n) if n > 0) {}
        }
        result
    }

    fn ended_error(&self, step: Step, ended: Ended) -> Error {
        let (code, reason) = match ended {
            Ended::PeerClosed { code, .. } => (
                code,
                "the peer closed the WebSocket; nothing more will arrive".to_string(),
            ),
            Ended::Failed { code, reason } => (code, reason),
        };
        self.error(
            step,
            ErrorKind::WebSocket {
                code: code.0,
                reason,
            },
        )
    }

    fn error(&self, step: Step, kind: ErrorKind) -> Error {
        Error::new(step, kind).at(self.conn.peer_endpoint())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer_addr()
    }

    /// A sending handle on the same connection.
    pub fn writer(&self) -> Writer {
        self.writer.clone()
    }
}

// ---------------------------------------------------------------------------
// Sending.
// ---------------------------------------------------------------------------

impl Writer {
    /// Sends a text message as one frame.
    ///
    /// # Errors
    /// As [`send`](Writer::send).
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.send(&Message::Text(text.to_string()))
    }

    /// Sends a binary message as one frame.
    ///
    /// # Errors
    /// As [`send`](Writer::send).
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        self.send(&Message::Binary(data.to_vec()))
    }

    /// Sends any message as one frame: data, a ping, an unasked pong, or a
    /// close frame (as [`close`](Writer::close), but an error if one was sent already).
    ///
    /// # Errors
    /// [`ErrorKind::WebSocket`] once a close frame has been sent (by us, or in
    /// answer to the peer's, or after a violation): nothing may follow it.
    /// [`ErrorKind::InvalidInput`] for a ping or pong payload over 125 bytes, or a
    /// close code that may not be sent or a reason over [`MAX_CLOSE_REASON`] bytes.
    /// The connection's errors, e.g. [`ErrorKind::BrokenPipe`] when the peer is gone.
    pub fn send(&self, message: &Message) -> Result<(), Error> {
        self.send_fragmented(message, usize::MAX)
    }

    /// Sends a text or binary message in frames of at most `frame_size`
    /// payload bytes (0 counts as 1); a control message always goes as one frame.
    /// The frames are written together, so no other sender's frames come between.
    ///
    /// # Errors
    /// As [`send`](Writer::send).
    pub fn send_fragmented(&self, message: &Message, frame_size: usize) -> Result<(), Error> {
        let mut half = self.lock();
        half.check(message)?;
        if let Some(code) = half.close_sent {
            return Err(half.error(
                Step::Write,
                ErrorKind::WebSocket {
                    code: code.0,
                    reason: "a close frame was sent; nothing may follow it".into(),
                },
            ));
        }
        let frames = message.to_frames(frame_size);
        let count = frames.len();
        half.conn.note(Step::Message, || {
            format!("sending {} in {count} frame(s)", describe(message))
        });
        half.write_frames(frames)?;
        if let Message::Close { code, .. } = message {
            half.close_sent = Some(*code);
        }
        Ok(())
    }

    /// Sends a ping with up to 125 bytes of payload; the peer answers with a pong
    /// carrying the same bytes, which the reader returns as [`Message::Pong`].
    ///
    /// # Errors
    /// As [`send`](Writer::send).
    pub fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        self.send(&Message::Ping(payload.to_vec()))
    }

    /// Starts the close handshake: sends a close frame with `code` and `reason`.
    /// Does nothing if a close frame was sent already. The peer's answer comes
    /// from the reader's [`recv`](Reader::recv) as [`Message::Close`].
    ///
    /// [`CloseCode::NO_STATUS`] sends a close frame without a code (the reason
    /// must then be empty).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a code that may not be sent or a reason over
    /// [`MAX_CLOSE_REASON`] bytes; the connection's errors.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let message = Message::Close {
            code,
            reason: reason.to_string(),
        };
        let mut half = self.lock();
        half.check(&message)?;
        if half.close_sent.is_some() {
            return Ok(());
        }
        half.conn
            .note(Step::Message, || format!("sending {}", describe(&message)));
        half.write_frames(message.to_frames(0))?;
        half.close_sent = Some(code);
        Ok(())
    }

    /// The reader got a ping: answer with its payload, unless we are closing.
    fn answer_ping(&self, payload: Vec<u8>) -> Result<(), Error> {
        let mut half = self.lock();
        if half.close_sent.is_some() {
            return Ok(());
        }
        half.write_frames(vec![Frame::new(Opcode::Pong, payload)])
    }

    /// The reader got the peer's close: answer it (echoing the code) unless we
    /// sent ours first; a server then sends FIN. Failures are not reported: the
    /// peer may already be gone, and the conversation is over either way.
    fn answer_close(&self, code: CloseCode) {
        let mut half = self.lock();
        if half.close_sent.is_none() {
            let _ = half.write_frames(vec![Frame::close(code, "")]);
            half.close_sent = Some(code);
        }
        if half.conn.side() == Side::Server {
            let _ = half.conn.shutdown_write();
        }
    }

    /// The reader found a violation: send its close frame (unless one went out
    /// already) and FIN. Failures are not reported: the connection is failing anyway.
    fn fail(&self, code: CloseCode, reason: &str) {
        let mut half = self.lock();
        if half.close_sent.is_none() {
            let _ = half.write_frames(vec![Frame::close(code, reason)]);
            half.close_sent = Some(code);
        }
        let _ = half.conn.shutdown_write();
    }

    fn lock(&self) -> MutexGuard<'_, WriteHalf> {
        // A panic while the lock was held can only have come from outside our
        // code (we do not panic while writing); the state is two plain fields.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WriteHalf {
    /// Refuses messages that would break the rules on the wire.
    fn check(&self, message: &Message) -> Result<(), Error> {
        let invalid = |why: String| Err(self.error(Step::Write, ErrorKind::InvalidInput(why)));
        match message {
            Message::Ping(p) | Message::Pong(p) if p.len() > MAX_CONTROL_PAYLOAD => {
                invalid(format!(
                    "a ping or pong carries at most {MAX_CONTROL_PAYLOAD} bytes, not {}",
                    p.len()
                ))
            }
            Message::Close { code, reason } => {
                if *code == CloseCode::NO_STATUS && !reason.is_empty() {
                    invalid("a close frame without a code cannot carry a reason".into())
                } else if *code != CloseCode::NO_STATUS && !code.is_allowed_on_wire() {
                    invalid(format!("close code {code} may not be sent"))
                } else if reason.len() > MAX_CLOSE_REASON {
                    invalid(format!(
                        "a close reason is at most {MAX_CLOSE_REASON} bytes, not {}",
                        reason.len()
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Masks (on the client, with a fresh key per frame) and writes the frames in one go.
    fn write_frames(&mut self, frames: Vec<Frame>) -> Result<(), Error> {
        let client = self.conn.side() == Side::Client;
        let mut wire = Vec::with_capacity(frames.iter().map(|f| f.payload.len() + 14).sum());
        for frame in frames {
            let frame = if client {
                frame.masked((handshake::fresh_bits() as u32).to_ne_bytes())
            } else {
                frame
            };
            frame.write_to(&mut wire);
        }
        self.conn.write_all(&wire)
    }

    fn error(&self, step: Step, kind: ErrorKind) -> Error {
        Error::new(step, kind).at(self.conn.peer_endpoint())
    }
}

// ---------------------------------------------------------------------------
// Serving: WebSocket handlers for `tcp::serve`.
// ---------------------------------------------------------------------------

/// A [`Handler`] for [`Listening::serve`](crate::tcp::server::Listening::serve)
/// that upgrades every connection and gives the [`WebSocket`] to `on_open`,
/// on the connection's own thread.
///
/// ```
/// use sockstep::tcp::{serve::ServeConfig, server};
/// use sockstep::trace::Trace;
/// use sockstep::ws::{Config, Message, Upgrade, WebSocket};
///
/// let greeter = Upgrade::new(Config::default(), |ws: WebSocket| {
///     ws.send_text("welcome")?;
///     ws.close(sockstep::ws::CloseCode::NORMAL, "bye").map(|_| ())
/// });
/// let listening = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind()?.listen(8);
/// let server = listening.serve(ServeConfig::default(), greeter)?;
/// let mut ws = WebSocket::connect(server.local_addr(), "/", &Config::default(), &Trace::off())?;
/// assert_eq!(ws.recv()?, Message::Text("welcome".into()));
/// assert!(matches!(ws.recv()?, Message::Close { .. }));
/// server.shutdown();
/// # Ok::<(), sockstep::Error>(())
/// ```
pub struct Upgrade<F> {
    config: Config,
    on_open: F,
}

impl<F> Upgrade<F>
where
    F: Fn(WebSocket) -> Result<(), Error> + Send + Sync + 'static,
{
    /// A handler that upgrades with `config` and then runs `on_open`.
    pub fn new(config: Config, on_open: F) -> Upgrade<F> {
        Upgrade { config, on_open }
    }
}

impl<F> fmt::Debug for Upgrade<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrade")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<F> Handler for Upgrade<F>
where
    F: Fn(WebSocket) -> Result<(), Error> + Send + Sync + 'static,
{
    fn handle(&self, conn: &mut Connection) -> Result<(), Error> {
        let ws = WebSocket::accept(conn.try_clone()?, &self.config)?;
        (self.on_open)(ws)
    }
}

/// A WebSocket echo server's [`Handler`]: upgrades, then sends every text and
/// binary message back as it came (as one frame), until the client closes.
///
/// The baseline to test a WebSocket client against, as
/// [`tcp::handlers::Echo`](crate::tcp::handlers::Echo) is for TCP.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    /// Limits and timeouts for every connection.
    pub config: Config,
}

impl Handler for Echo {
    fn handle(&self, conn: &mut Connection) -> Result<(), Error> {
        let mut ws = WebSocket::accept(conn.try_clone()?, &self.config)?;
        loop {
            match ws.recv()? {
                Message::Text(text) => ws.send_text(&text)?,
                Message::Binary(data) => ws.send_binary(&data)?,
                Message::Close { .. } => return Ok(()),
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    }
}
