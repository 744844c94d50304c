//! One error type for every step: which step, which endpoint, what the OS said, what to do.
//!
//! A socket error on its own ("Connection refused (os error 111)") tells a reader
//! what happened but not where or why. sockstep's [`Error`] carries the lifecycle
//! [`Step`] that failed, the [`Endpoint`] it was talking to or holding, the OS
//! error when there was one, and a hint, so its `Display` reads as a sentence a
//! person can act on:
//!
//! ```text
//! bind() tcp://127.0.0.1:7878 failed: address already in use (os error 98)
//!   hint: another socket on this host holds this port; stop it, choose another port, or use port 0
//! ```
//!
//! [`ErrorKind`] is what a program matches on. It is `non_exhaustive`: later parts
//! (UDP, HTTP) add kinds of their own.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::endpoint::Endpoint;
use crate::step::Step;

/// What went wrong, in terms a program can match on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An endpoint written by a person could not be read.
    BadEndpoint {
        /// The whole text that was given.
        input: String,
        /// Which part is wrong: `"scheme"`, `"host"` or `"port"`.
        part: &'static str,
        /// Why, in words.
        reason: &'static str,
    },
    /// The resolver knows no address for this name.
    NameNotResolved,
    /// Another socket on this host already holds this protocol + IP + port (EADDRINUSE).
    AddressInUse,
    /// The IP address does not belong to this host (EADDRNOTAVAIL).
    AddressNotAvailable,
    /// The OS forbids it, for example a port below 1024 without privileges (EACCES/EPERM).
    PermissionDenied,
    /// Nothing is listening at that address (ECONNREFUSED: the peer's kernel answered with RST).
    ConnectionRefused,
    /// The step did not finish within its timeout.
    TimedOut,
    /// The peer aborted the connection (ECONNRESET).
    ConnectionReset,
    /// We wrote to a connection the peer had already closed (EPIPE).
    BrokenPipe,
    /// The server accepted the connection and then turned it away, with this reason.
    RefusedByServer(String),
    /// A frame announced or reached more bytes than the agreed maximum.
    FrameTooLarge {
        /// The size the frame announced, or how far it got before we stopped reading.
        len: u64,
        /// The maximum frame size in force.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    TruncatedFrame {
        /// Bytes of the frame that did arrive.
        got: usize,
    },
    /// A message cannot be framed as asked (for example a newline inside a line frame).
    InvalidFrame(&'static str),
    /// A peer sent more than a configured limit allows.
    LimitExceeded {
        /// What is limited, e.g. "bytes recorded per connection".
        what: &'static str,
        /// The limit in force.
        limit: u64,
    },
    /// An HTTP message broke the protocol's rules or our limits; a server
    /// answers it with `status` and closes the connection.
    Http {
        /// The status code the offending message earns (400, 413, 414, 431, 501, 505…).
        status: u16,
        /// What was wrong with it.
        reason: String,
    },
    /// A WebSocket connection ended, or was ended, with this close code (RFC 6455
    /// §7.4): a violation one side found (1002, 1007, 1009 …), a finished close
    /// handshake (1000), or 1006 when TCP ended without a close frame.
    WebSocket {
        /// The close code.
        code: u16,
        /// What happened, in words.
        reason: String,
    },
    /// A datagram larger than one UDP datagram can carry (or than a limit we set).
    DatagramTooLarge {
        /// The payload size that was asked for.
        len: usize,
        /// The largest payload allowed.
        max: usize,
    },
    /// A datagram did not fit the receive buffer; the kernel cut it and threw the
    /// rest away, so what was received is not the message that was sent.
    DatagramTruncated {
        /// The size of the buffer it did not fit in.
        buffer: usize,
    },
    /// An argument or setting is out of range.
    InvalidInput(String),
    /// A connection handler panicked; the server caught it and kept serving.
    HandlerPanicked(String),
    /// Any other OS error; its text is in the attached I/O error.
    Os,
}

/// An error from a sockstep step. See the [module docs](self).
#[derive(Debug)]
pub struct Error {
    step: Step,
    kind: ErrorKind,
    endpoint: Option<Endpoint>,
    io: Option<io::Error>,
}

impl Error {
    /// An error of `kind` at `step`, with no endpoint or OS error yet.
    pub fn new(step: Step, kind: ErrorKind) -> Error {
        Error {
            step,
            kind,
            endpoint: None,
            io: None,
        }
    }

    /// Classifies an OS error that happened at `step`.
    ///
    /// If `e` already carries a sockstep [`Error`] (because it went through an
    /// [`io::Read`]/[`io::Write`] impl of ours), that error comes back unchanged,
    /// so the original step and endpoint are kept.
    pub fn io(step: Step, e: io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            // The check above proves the payload is ours.
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        Error::new(step, classify(step, &e)).with_io(e)
    }

    /// Names the endpoint the step was holding or talking to.
    pub fn at(mut self, endpoint: Endpoint) -> Error {
        if self.endpoint.is_none() {
            self.endpoint = Some(endpoint);
        }
        self
    }

    /// Attaches the OS error underneath.
    pub fn with_io(mut self, e: io::Error) -> Error {
        self.io = Some(e);
        self
    }

    /// The step that failed.
    pub fn step(&self) -> Step {
        self.step
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The endpoint involved, if known.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref()
    }

    /// The OS error underneath, if there was one.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.io.as_ref()
    }

    /// What a person can do about it.
    pub fn hint(&self) -> &'static str {
        match (&self.kind, self.step) {
            (ErrorKind::BadEndpoint { .. }, _) => {
                "write PROTOCOL://HOST:PORT, e.g. tcp://127.0.0.1:7878 or udp://[::1]:9000"
            }
            (ErrorKind::NameNotResolved, _) => {
                "check the spelling, /etc/hosts and DNS, or use an IP address"
            }
            (ErrorKind::AddressInUse, _) => {
                "another socket on this host holds this port; stop it, choose another port, or use port 0"
            }
            (ErrorKind::AddressNotAvailable, _) => {
                "this IP is not one of this host's addresses; use 127.0.0.1, ::1 or 0.0.0.0"
            }
            (ErrorKind::PermissionDenied, _) => {
                "ports below 1024 need privileges; use a higher port or port 0"
            }
            (ErrorKind::ConnectionRefused, _) => {
                "nothing is listening there; start the server first, or check the address and port"
            }
            (ErrorKind::TimedOut, Step::Connect) => {
                "no answer: the host may be down, a firewall may drop packets, or the server's queue is full"
            }
            (ErrorKind::TimedOut, _) => {
                "the peer went silent; raise the timeout if it is slow, or check that it is still there"
            }
            (ErrorKind::ConnectionReset, _) => {
                "the peer aborted the connection (crashed, or closed with unread data); reconnect"
            }
            (ErrorKind::BrokenPipe, _) => {
                "the peer closed its side; stop writing and close, or reconnect"
            }
            (ErrorKind::RefusedByServer(_), _) => {
                "the server is at its connection limit; retry later or raise --max-connections/--backlog"
            }
            (ErrorKind::FrameTooLarge { .. }, _) => {
                "the peer sent more than the maximum frame size; raise the limit if that is legitimate"
            }
            (ErrorKind::TruncatedFrame { .. }, _) => {
                "the peer closed in the middle of a message; it may have crashed or been cut off"
            }
            (ErrorKind::InvalidFrame(_), _) => {
                "use length-prefixed framing for messages that may contain newlines"
            }
            (ErrorKind::LimitExceeded { .. }, _) => {
                "the peer sent more than this limit allows; raise the limit if that is legitimate"
            }
            (ErrorKind::Http { .. }, Step::Upgrade) => {
                "the upgrade to WebSocket was refused (RFC 6455 §4); check the path and the upgrade headers"
            }
            (ErrorKind::Http { .. }, _) => {
                "the peer's HTTP message is malformed or over a limit; it gets this status and the connection closes"
            }
            (
                ErrorKind::WebSocket {
                    code: 1000 | 1001, ..
                },
                _,
            ) => "the WebSocket conversation is over; connect again to talk more",
            (ErrorKind::WebSocket { code: 1006, .. }, _) => {
                "the peer vanished without a close frame: it crashed, or the connection was cut"
            }
            (ErrorKind::WebSocket { code: 1009, .. }, _) => {
                "a message was over the size limit; raise max_frame/max_message if that is legitimate"
            }
            (ErrorKind::WebSocket { .. }, _) => {
                "one side broke RFC 6455 (see the reason); the connection was closed with this code"
            }
            (ErrorKind::DatagramTooLarge { .. }, _) => {
                "split the message, or use TCP, which carries a stream of any length"
            }
            (ErrorKind::DatagramTruncated { .. }, _) => {
                "receive into a buffer as large as the largest datagram (65,527 bytes covers every one)"
            }
            (ErrorKind::InvalidInput(_), _) => "see --help for the accepted values",
            (ErrorKind::HandlerPanicked(_), _) => {
                "a bug in the connection handler; the server kept serving the others"
            }
            (ErrorKind::Os, _) => "see the OS error above",
        }
    }

    /// What went wrong, in a few words, without step, endpoint or hint.
    pub fn summary(&self) -> String {
        match &self.kind {
            ErrorKind::BadEndpoint {
                input,
                part,
                reason,
            } => format!("the {part} of {input:?} is wrong: {reason}"),
            ErrorKind::NameNotResolved => "the name has no address".into(),
            ErrorKind::AddressInUse => "address already in use".into(),
            ErrorKind::AddressNotAvailable => "address not available on this host".into(),
            ErrorKind::PermissionDenied => "permission denied".into(),
            ErrorKind::ConnectionRefused => "connection refused".into(),
            ErrorKind::TimedOut => "timed out".into(),
            ErrorKind::ConnectionReset => "connection reset by peer".into(),
            ErrorKind::BrokenPipe => "the peer has closed the connection".into(),
            ErrorKind::RefusedByServer(reason) => format!("the server refused us: {reason}"),
            ErrorKind::FrameTooLarge { len, max } => {
                format!("frame of {len} bytes exceeds the maximum of {max}")
            }
            ErrorKind::TruncatedFrame { got } => {
                format!("stream ended inside a frame after {got} bytes")
            }
            ErrorKind::InvalidFrame(why) => format!("cannot frame this message: {why}"),
            ErrorKind::LimitExceeded { what, limit } => format!("over the limit of {limit} {what}"),
            ErrorKind::Http { status, reason } => format!("HTTP {status}: {reason}"),
            ErrorKind::WebSocket { code, reason } => {
                format!("WebSocket closed with code {code}: {reason}")
            }
            ErrorKind::DatagramTooLarge { len, max } => {
                format!("a datagram of {len} bytes is over the limit of {max}")
            }
            ErrorKind::DatagramTruncated { buffer } => {
                format!("a datagram larger than the {buffer}-byte buffer arrived and was cut")
            }
            ErrorKind::InvalidInput(why) => why.clone(),
            ErrorKind::HandlerPanicked(msg) => format!("handler panicked: {msg}"),
            ErrorKind::Os => "the OS reported an error".into(),
        }
    }
}

/// "Message too long" on Linux.
const EMSGSIZE: i32 = 90;

/// Maps an OS error to a kind. EMSGSIZE and friends that std leaves
/// uncategorized are matched by number, so they get names too.
fn classify(step: Step, e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::AddrInUse => ErrorKind::AddressInUse,
        io::ErrorKind::AddrNotAvailable => ErrorKind::AddressNotAvailable,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::ConnectionRefused => ErrorKind::ConnectionRefused,
        io::ErrorKind::TimedOut => ErrorKind::TimedOut,
        // A socket read/write timeout (SO_RCVTIMEO/SO_SNDTIMEO) surfaces as EAGAIN,
        // which std calls WouldBlock; on a blocking socket it can only mean "timed out".
        io::ErrorKind::WouldBlock
            if matches!(
                step,
                Step::Read | Step::Write | Step::Frame | Step::RecvFrom | Step::SendTo
            ) =>
        {
            ErrorKind::TimedOut
        }
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            ErrorKind::ConnectionReset
        }
        io::ErrorKind::BrokenPipe => ErrorKind::BrokenPipe,
        io::ErrorKind::InvalidInput => ErrorKind::InvalidInput(e.to_string()),
        // std leaves EMSGSIZE uncategorized; name it by number. The sizes are
        // filled in by the caller, which knows them.
        _ if e.raw_os_error() == Some(EMSGSIZE) => ErrorKind::DatagramTooLarge { len: 0, max: 0 },
        _ => ErrorKind::Os,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.step)?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " {endpoint}")?;
        }
        write!(f, " failed: {}", self.summary())?;
        match (&self.kind, &self.io) {
            (ErrorKind::Os, Some(io)) => write!(f, ": {io}")?,
            (ErrorKind::InvalidInput(_), _) | (_, None) => {}
            (_, Some(io)) => match io.raw_os_error() {
                Some(code) => write!(f, " (os error {code})")?,
                None => write!(f, " ({io})")?,
            },
        }
        write!(f, "\n  hint: {}", self.hint())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.io.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// Lets our errors travel through [`io::Read`]/[`io::Write`]: the `io::Error`
/// keeps a matching kind and carries the whole sockstep error as its payload,
/// which [`Error::io`] unwraps again.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e.kind {
            ErrorKind::AddressInUse => io::ErrorKind::AddrInUse,
            ErrorKind::AddressNotAvailable => io::ErrorKind::AddrNotAvailable,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::ConnectionRefused | ErrorKind::RefusedByServer(_) => {
                io::ErrorKind::ConnectionRefused
            }
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::ConnectionReset => io::ErrorKind::ConnectionReset,
            ErrorKind::BrokenPipe => io::ErrorKind::BrokenPipe,
            ErrorKind::TruncatedFrame { .. } => io::ErrorKind::UnexpectedEof,
            ErrorKind::FrameTooLarge { .. }
            | ErrorKind::InvalidFrame(_)
            | ErrorKind::LimitExceeded { .. }
            | ErrorKind::DatagramTooLarge { .. }
            | ErrorKind::DatagramTruncated { .. }
            | ErrorKind::Http { .. }
            | ErrorKind::WebSocket { .. } => io::ErrorKind::InvalidData,
            ErrorKind::BadEndpoint { .. } | ErrorKind::InvalidInput(_) => {
                io::ErrorKind::InvalidInput
            }
            _ => e.io.as_ref().map_or(io::ErrorKind::Other, io::Error::kind),
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_step_endpoint_os_error_and_hint() {
        let endpoint: Endpoint = "tcp://127.0.0.1:7878".parse().unwrap();
        let e = Error::io(Step::Bind, io::Error::from(io::ErrorKind::AddrInUse)).at(endpoint);
        let text = e.to_string();
        assert!(text.starts_with("bind() tcp://127.0.0.1:7878 failed: address already in use"));
        assert!(text.contains("hint: another socket"), "{text}");
    }

    #[test]
    fn a_read_timeout_is_called_a_timeout() {
        let e = Error::io(Step::Read, io::Error::from(io::ErrorKind::WouldBlock));
        assert_eq!(e.kind(), &ErrorKind::TimedOut);
    }

    #[test]
    fn round_trip_through_io_error_keeps_step_and_endpoint() {
        let endpoint: Endpoint = "tcp://[::1]:9".parse().unwrap();
        let original =
            Error::new(Step::Frame, ErrorKind::TruncatedFrame { got: 3 }).at(endpoint.clone());
        let through: io::Error = original.into();
        assert_eq!(through.kind(), io::ErrorKind::UnexpectedEof);
        let back = Error::io(Step::Read, through);
        assert_eq!(back.step(), Step::Frame);
        assert_eq!(back.endpoint(), Some(&endpoint));
        assert_eq!(back.kind(), &ErrorKind::TruncatedFrame { got: 3 });
    }
}
