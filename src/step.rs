//! The lifecycle vocabulary: which side of a conversation acts, and which step it takes.
//!
//! The seed numbers the steps — the server goes `socket()` → `bind()` → `listen()`
//! → `accept()`, the client goes `socket()` → `connect()` → (the server's
//! `accept()` returns) → `read()`/`write()`. Every trace event and every error in
//! sockstep names one of these steps, so a reader can always answer "where in the
//! sequence did this happen?". [`Step::syscalls`] says what std really asks the
//! kernel to do at each step on Linux, as seen with `strace -f -e trace=network`.

use std::fmt;

use crate::endpoint::Protocol;

/// Which role a socket plays: the seed's 서버 소켓 (server socket) or 클라이언트 소켓 (client socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Waits for connections and answers them.
    Server,
    /// Starts the conversation.
    Client,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Server => "server",
            Side::Client => "client",
        })
    }
}

/// One step of a socket's life, named as in the seed.
///
/// The first six are the seed's numbered steps; the rest are what happens around
/// them in a real program (turning a name into an address, refusing a client the
/// server has no room for, decoding a frame) and are named so errors can say
/// where they happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Turning a host name into IP addresses (getaddrinfo). Not in the seed's list,
    /// but it happens before `connect()` whenever a name is used instead of an IP.
    Resolve,
    /// Server 1 / client 1: create the socket.
    Socket,
    /// Server 2: give the socket its IP address and port.
    Bind,
    /// Server 3: open the waiting room (연결 대기열) for clients.
    Listen,
    /// Server 4: take one waiting client and get a connection for it.
    Accept,
    /// Client 2: reach the server's IP and port.
    Connect,
    /// Client 3: the handshake is done and `connect()` returned. The seed's client
    /// step 3 is the server's `accept()` handing out a socket for this client; the
    /// client itself observes only that its connect finished.
    Established,
    /// Client 4 / server, repeatedly: take bytes that arrived.
    Read,
    /// Client 4 / server, repeatedly: hand bytes to the kernel to send.
    Write,
    /// UDP: send one datagram (`send_to()`, or `send()` on a connected socket).
    SendTo,
    /// UDP: receive one datagram (`recv_from()`, or `recv()` on a connected socket).
    RecvFrom,
    /// Half-close: "I will send nothing more", while still reading.
    Shutdown,
    /// Release the socket.
    Close,
    /// The server turned a client away because its waiting room was full.
    Refuse,
    /// Cutting a byte stream into messages (newline or length prefix).
    Frame,
    /// A protocol above TCP made a whole message of the bytes, or is about to
    /// write one: an HTTP request or response, a hub line. No system call: the
    /// reads and writes that carried it are steps of their own.
    Message,
    /// Reading an endpoint or a command line written by a person.
    Parse,
    /// Running the thread-per-connection server: spawning, admitting, shutting down.
    Serve,
    /// Turning an HTTP connection into another protocol: the WebSocket handshake
    /// (`Upgrade: websocket`, answered by `101 Switching Protocols`).
    Upgrade,
}

impl Step {
    /// Every step, in the order they are declared.
    pub const ALL: [Step; 19] = [
        Step::Resolve,
        Step::Socket,
        Step::Bind,
        Step::Listen,
        Step::Accept,
        Step::Connect,
        Step::Established,
        Step::Read,
        Step::Write,
        Step::SendTo,
        Step::RecvFrom,
        Step::Shutdown,
        Step::Close,
        Step::Refuse,
        Step::Frame,
        Step::Message,
        Step::Parse,
        Step::Serve,
        Step::Upgrade,
    ];

    /// The step a printed [`name`](Step::name) stands for: reading a trace
    /// line back.
    pub fn named(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The step as the seed writes it, for example `"bind()"`.
    pub fn name(self) -> &'static str {
        match self {
            Step::Resolve => "resolve",
            Step::Socket => "socket()",
            Step::Bind => "bind()",
            Step::Listen => "listen()",
            Step::Accept => "accept()",
            Step::Connect => "connect()",
            Step::Established => "connected",
            Step::Read => "read()",
            Step::Write => "write()",
            Step::SendTo => "send_to()",
            Step::RecvFrom => "recv_from()",
            Step::Shutdown => "shutdown()",
            Step::Close => "close()",
            Step::Refuse => "refuse",
            Step::Frame => "frame",
            Step::Message => "message",
            Step::Parse => "parse",
            Step::Serve => "serve",
            Step::Upgrade => "upgrade",
        }
    }

    /// The step's number in the seed's list for this side (1–4), if it has one.
    ///
    /// The client's step 3 is the server's `accept()` returning; what the client
    /// sees of it is its own `connect()` finishing, [`Step::Established`].
    pub fn seed_number(self, side: Side) -> Option<u8> {
        match (side, self) {
            (_, Step::Socket) => Some(1),
            (Side::Server, Step::Bind) => Some(2),
            (Side::Server, Step::Listen) => Some(3),
            (Side::Server, Step::Accept) => Some(4),
            (Side::Client, Step::Connect) => Some(2),
            (Side::Client, Step::Established) => Some(3),
            (Side::Client, Step::Read | Step::Write | Step::SendTo | Step::RecvFrom) => Some(4),
            _ => None,
        }
    }

    /// What Rust's std asks the Linux kernel to do at this step, as `strace -f
    /// -e trace=network` shows it (Rust 1.95). The evidence is in `docs/tcp.md`.
    pub fn syscalls(self, protocol: Protocol) -> &'static str {
        match (protocol, self) {
            (_, Step::Resolve) => "getaddrinfo (a library call; no syscall for an IP literal)",
            (Protocol::Tcp, Step::Socket) => "none yet: std creates the socket inside bind/connect",
            (Protocol::Tcp, Step::Bind) => {
                "socket(SOCK_STREAM|SOCK_CLOEXEC) + setsockopt(SO_REUSEADDR) + bind + listen(128)"
            }
            (Protocol::Tcp, Step::Listen) => "none: listen(128) already ran inside bind",
            (Protocol::Tcp, Step::Accept) => "accept4(SOCK_CLOEXEC)",
            (Protocol::Tcp, Step::Connect) => {
                "socket(SOCK_STREAM|SOCK_CLOEXEC) + ioctl(FIONBIO) + connect (EINPROGRESS) + poll(POLLOUT)"
            }
            (Protocol::Tcp, Step::Established) => {
                "none: connect returned; the server's accept4 may come later"
            }
            (Protocol::Tcp, Step::Read) => "recvfrom",
            (Protocol::Tcp, Step::Write) => "sendto(MSG_NOSIGNAL)",
            (Protocol::Tcp, Step::Shutdown) => "shutdown(SHUT_WR)",
            (_, Step::Close) => "close",
            (Protocol::Tcp, Step::Refuse) => "sendto (the reason) + close",
            (Protocol::Udp, Step::Socket) => "none yet: std creates the socket inside bind",
            (Protocol::Udp, Step::Bind) => "socket(SOCK_DGRAM|SOCK_CLOEXEC) + bind",
            (Protocol::Udp, Step::Connect) => "connect (no handshake: sets a default peer)",
            (Protocol::Udp, Step::RecvFrom) => "recvfrom(fd, buf, len, 0, &addr, &addrlen)",
            (Protocol::Udp, Step::SendTo) => {
                "sendto(fd, buf, len, MSG_NOSIGNAL, &addr, addrlen) (NULL, 0 once connected)"
            }
            _ => "none",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_listed_once_and_reads_back_from_its_name() {
        for step in Step::ALL {
            // No wildcard: a new step fails to compile here until it is listed.
            match step {
                Step::Resolve
                | Step::Socket
                | Step::Bind
                | Step::Listen
                | Step::Accept
                | Step::Connect
                | Step::Established
                | Step::Read
                | Step::Write
                | Step::SendTo
                | Step::RecvFrom
                | Step::Shutdown
                | Step::Close
                | Step::Refuse
                | Step::Frame
                | Step::Message
                | Step::Parse
                | Step::Serve
                | Step::Upgrade => {}
            }
            assert_eq!(Step::named(step.name()), Some(step), "{step:?}");
            assert_eq!(Step::ALL.iter().filter(|&&s| s == step).count(), 1);
        }
        assert_eq!(Step::named("nope()"), None);
    }
}
