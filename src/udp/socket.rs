//! The datagram socket (데이터그램 소켓): `socket()` → `bind()` → `send_to()`/`recv_from()`.
//!
//! UDP has no connection, so its lifecycle is shorter than TCP's and the same on
//! both sides: make a socket, bind it to an address, then send and receive
//! whole datagrams, each addressed on its own. There is no `listen()` (nobody
//! waits to be let in) and no `accept()` (there is no connection to hand out).
//!
//! ```text
//! udp::socket(addr, side) -> Socket --bind()--> Bound --send_to()/recv_from()...
//!                                                 └--connect(peer)--> Connected --send()/recv()...
//! ```
//!
//! What the seed says of UDP, and where it shows here:
//!
//! - **Connectionless** (비연결형): `Bound::send_to` names the destination on every
//!   datagram; `recv_from` says who each came from. [`Bound::connect`] exists, but
//!   it is no handshake — nothing is sent; the kernel just remembers a default
//!   peer and from then on drops datagrams from anyone else.
//! - **Size-limited** (데이터의 크기에 제한): one datagram carries at most
//!   [`MAX_PAYLOAD_V4`] bytes over IPv4 and [`MAX_PAYLOAD_V6`] over IPv6. One byte
//!   more is [`ErrorKind::DatagramTooLarge`], checked before the kernel is asked.
//!   A datagram bigger than the receive buffer is cut by the kernel; sockstep
//!   detects it and reports [`ErrorKind::DatagramTruncated`] instead of passing
//!   on a short message.
//! - **No delivery guarantee; a loss raises no error**: `send_to` returning `Ok`
//!   means the kernel took the datagram, nothing more. See `udp::relay` for loss
//!   you can control, and `udp::reliable` for what it takes to get TCP's promises back.
//! - **Message boundaries**: one send is one receive — never merged, never split.
//!
//! A socket cannot send before it is bound:
//!
//! ```compile_fail,E0599
//! use sockstep::{udp::socket, trace::Trace, Side};
//! let s = socket::socket("127.0.0.1:0".parse().unwrap(), Side::Client, &Trace::off());
//! s.send_to(b"hi", "127.0.0.1:9".parse().unwrap()); // no such method: bind() comes first
//! ```
//!
//! and a connected socket has no `send_to` (its peer is fixed):
//!
//! ```compile_fail,E0599
//! use sockstep::{udp::socket, trace::Trace, Side};
//! let s = socket::socket("127.0.0.1:0".parse().unwrap(), Side::Client, &Trace::off()).bind().unwrap();
//! let c = s.connect("127.0.0.1:9".parse().unwrap()).unwrap();
//! c.send_to(b"hi", "127.0.0.1:9".parse().unwrap());
//! ```

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::endpoint::{Endpoint, Protocol, family};
use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};
use crate::trace::{Event, SocketId, Trace};

/// The largest UDP payload over IPv4: 65,535 (the IPv4 total-length field) − 20
/// (IPv4 header) − 8 (UDP header).
pub const MAX_PAYLOAD_V4: usize = 65_507;

/// The largest UDP payload over IPv6 on Linux without jumbograms: 65,535 (the
/// IPv6 payload-length field, which does not count the 40-byte IPv6 header) − 8
/// (UDP header). Measured: 65,527 bytes go, 65,528 fail with EMSGSIZE.
pub const MAX_PAYLOAD_V6: usize = 65_527;

/// The largest payload one datagram can carry to or from `addr`'s family.
///
/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as IPv4: an IPv6
/// socket reaches it with IPv4 packets, so the IPv4 limit applies.
pub fn max_payload(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => MAX_PAYLOAD_V4,
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => MAX_PAYLOAD_V4,
        SocketAddr::V6(_) => MAX_PAYLOAD_V6,
    }
}

/// UDP step 1 — `socket()`: decide what kind of socket to make.
///
/// Underneath: **nothing yet**. std has no unbound UDP socket; socket(2) runs
/// inside [`Socket::bind`]. This step fixes what socket(2) will be given —
/// `SOCK_DGRAM` and the family of `addr` — and the socket's role in the trace.
pub fn socket(addr: SocketAddr, side: Side, trace: &Trace) -> Socket {
    let id = SocketId::next();
    trace.emit(|| {
        Event::new(id, side, Step::Socket, Protocol::Udp).detail(format!(
            "SOCK_DGRAM, {}, for {}",
            family(&addr),
            Endpoint::from_addr(Protocol::Udp, addr)
        ))
    });
    Socket {
        id,
        side,
        addr,
        trace: trace.clone(),
    }
}

/// A UDP socket decided on but not bound (after step 1).
#[derive(Debug)]
pub struct Socket {
    id: SocketId,
    side: Side,
    addr: SocketAddr,
    trace: Trace,
}

impl Socket {
    /// UDP step 2 — `bind()`: give the socket its IP address and port.
    ///
    /// A server binds a port clients know. A client binds too — every socket
    /// has a port, as the seed says — usually port 0, so the OS picks a free one;
    /// TCP clients get theirs implicitly at connect(), a UDP client here gets it
    /// explicitly, and [`Bound::local_addr`] shows it.
    ///
    /// Underneath: std's `UdpSocket::bind` — socket(AF_INET/AF_INET6,
    /// SOCK_DGRAM|SOCK_CLOEXEC) and bind(2). Unlike TCP's bind, no SO_REUSEADDR
    /// and, of course, no listen(2).
    ///
    /// # Errors
    /// [`ErrorKind::AddressInUse`] when another UDP socket holds the port (a TCP
    /// socket on the same number does not count: the protocol is part of the
    /// identity), and the other errors of TCP's bind.
    pub fn bind(self) -> Result<Bound, Error> {
        let endpoint = Endpoint::from_addr(Protocol::Udp, self.addr);
        let socket = UdpSocket::bind(self.addr)
            .map_err(|e| Error::io(Step::Bind, e).at(endpoint.clone()))?;
        let local = socket
            .local_addr()
            .map_err(|e| Error::io(Step::Bind, e).at(endpoint))?;
        self.trace.emit(|| {
            let event = Event::new(self.id, self.side, Step::Bind, Protocol::Udp).local(local);
            if self.addr.port() == 0 {
                event.detail(format!("port 0 asked; the OS chose {}", local.port()))
            } else {
                event
            }
        });
        Ok(Bound {
            inner: Datagrams {
                id: self.id,
                side: self.side,
                socket,
                local,
                peer: None,
                trace: self.trace,
            },
        })
    }
}

/// A bound UDP socket (after step 2): sends to anyone, receives from anyone.
#[derive(Debug)]
pub struct Bound {
    inner: Datagrams,
}

impl Bound {
    /// The address this socket holds (with the real port if port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// This socket's identity in the trace.
    pub fn id(&self) -> SocketId {
        self.inner.id
    }

    /// Adds a remark about this socket to the trace, such as why a loop stopped.
    pub(crate) fn note(&self, detail: &str) {
        let d = &self.inner;
        d.trace.emit(|| {
            Event::new(d.id, d.side, Step::Serve, Protocol::Udp)
                .local(d.local)
                .detail(detail)
        });
    }

    /// Sends `payload` as one datagram to `to`.
    ///
    /// `Ok` means the kernel took the datagram — not that it arrived. If it is
    /// lost on the way, nobody is told: that is UDP.
    ///
    /// Underneath: sendto(fd, buf, len, MSG_NOSIGNAL, &to, addrlen) — std passes
    /// MSG_NOSIGNAL on every socket send, UDP too.
    ///
    /// # Errors
    /// [`ErrorKind::DatagramTooLarge`] when `payload` is over [`max_payload`], before
    /// any system call; OS errors such as EPERM when a firewall rule on this host
    /// rejects outgoing packets.
    pub fn send_to(&self, payload: &[u8], to: SocketAddr) -> Result<(), Error> {
        self.inner.send(payload, Some(to))
    }

    /// Waits for one datagram and copies it into `buf`; returns its size and sender.
    ///
    /// Underneath: recvfrom(fd, buf, len, 0, &addr, &addrlen).
    ///
    /// # Errors
    /// [`ErrorKind::DatagramTruncated`] when the datagram was larger than `buf`
    /// (the datagram is gone; give a buffer of [`max_payload`] bytes to never see
    /// this); [`ErrorKind::TimedOut`] after the read timeout.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
        self.inner.recv(buf)
    }

    /// How long `recv_from` waits (setsockopt SO_RCVTIMEO); `None` waits forever.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a zero duration.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.inner.set_read_timeout(timeout)
    }

    /// A second handle on the same socket (dup(2)), e.g. to receive on one thread
    /// while sending on another.
    ///
    /// # Errors
    /// The OS error, for example EMFILE.
    pub fn try_clone(&self) -> Result<Bound, Error> {
        Ok(Bound {
            inner: self.inner.try_clone()?,
        })
    }

    /// Optional UDP step — `connect()`: fix the peer. No handshake, nothing sent.
    ///
    /// After it the kernel (1) sends `send()` datagrams to `peer` without being
    /// told each time, and (2) drops datagrams from anyone else. A side effect
    /// worth knowing: if `peer`'s host answers a datagram with ICMP "port
    /// unreachable" (nothing bound there), the *next* `recv()` or `send()` fails
    /// with [`ErrorKind::ConnectionRefused`] — the only time UDP tells you of a
    /// loss, and only on a connected socket.
    ///
    /// Underneath: connect(fd, &peer, addrlen), which returns at once.
    ///
    /// # Errors
    /// The OS error, for example when `peer`'s family differs from the socket's.
    pub fn connect(self, peer: SocketAddr) -> Result<Connected, Error> {
        let mut d = self.inner;
        d.socket.connect(peer).map_err(|e| {
            Error::io(Step::Connect, e).at(Endpoint::from_addr(Protocol::Udp, peer))
        })?;
        d.peer = Some(peer);
        d.trace.emit(|| {
            Event::new(d.id, d.side, Step::Connect, Protocol::Udp)
                .local(d.local)
                .peer(peer)
                .detail("no handshake: a default peer, and a filter on who may send to us")
        });
        Ok(Connected { inner: d, peer })
    }
}

/// A UDP socket with a fixed peer (after the optional `connect()`).
#[derive(Debug)]
pub struct Connected {
    inner: Datagrams,
    peer: SocketAddr,
}

impl Connected {
    /// This socket's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The fixed peer.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// This socket's identity in the trace.
    pub fn id(&self) -> SocketId {
        self.inner.id
    }

    /// Sends `payload` as one datagram to the peer (send(2), traced as `send_to()`).
    ///
    /// # Errors
    /// As for [`Bound::send_to`], plus [`ErrorKind::ConnectionRefused`] when an
    /// earlier datagram to the peer came back as ICMP "port unreachable".
    pub fn send(&self, payload: &[u8]) -> Result<(), Error> {
        self.inner.send(payload, None)
    }

    /// Waits for one datagram from the peer; returns its size.
    ///
    /// # Errors
    /// As for [`Bound::recv_from`], plus [`ErrorKind::ConnectionRefused`] after an
    /// ICMP "port unreachable" from the peer.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, Error> {
        self.inner.recv(buf).map(|(n, _)| n)
    }

    /// How long `recv` waits; `None` waits forever.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a zero duration.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.inner.set_read_timeout(timeout)
    }

    /// A second handle on the same socket (dup(2)).
    ///
    /// # Errors
    /// The OS error, for example EMFILE.
    pub fn try_clone(&self) -> Result<Connected, Error> {
        Ok(Connected {
            inner: self.inner.try_clone()?,
            peer: self.peer,
        })
    }
}

/// What `Bound` and `Connected` share: the socket, its identity and its trace.
#[derive(Debug)]
struct Datagrams {
    id: SocketId,
    side: Side,
    socket: UdpSocket,
    local: SocketAddr,
    /// The fixed peer once connected: what errors then name, since the hint of
    /// a refusal ("nothing is listening there") is about the peer, not us.
    peer: Option<SocketAddr>,
    trace: Trace,
}

impl Datagrams {
    fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        Endpoint::from_addr(Protocol::Udp, addr)
    }

    /// Sends one datagram, to `to` or (connected) to the fixed peer.
    fn send(&self, payload: &[u8], to: Option<SocketAddr>) -> Result<(), Error> {
        // The destination decides the limit: an IPv6 socket sending to an
        // IPv4-mapped address is held to IPv4's.
        let dest = to.or(self.peer).unwrap_or(self.local);
        let max = max_payload(&dest);
        let target = self.endpoint(dest);
        let too_large = |len| {
            Error::new(Step::SendTo, ErrorKind::DatagramTooLarge { len, max }).at(target.clone())
        };
        if payload.len() > max {
            return Err(too_large(payload.len()));
        }
        let sent = loop {
            let result = match to {
                Some(to) => self.socket.send_to(payload, to),
                None => self.socket.send(payload),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match sent {
            // A datagram goes whole or not at all; a short count would be a kernel bug.
            Ok(n) if n == payload.len() => {
                self.trace.emit(|| {
                    let event = Event::new(self.id, self.side, Step::SendTo, Protocol::Udp)
                        .local(self.local)
                        .bytes(n);
                    match to {
                        Some(to) => event.peer(to),
                        None => event.detail("send(): to the connected peer"),
                    }
                });
                Ok(())
            }
            Ok(n) => Err(Error::new(
                Step::SendTo,
                ErrorKind::InvalidInput(format!("the kernel sent {n} of {} bytes", payload.len())),
            )
            .at(target)),
            Err(e) if e.raw_os_error() == Some(EMSGSIZE) => {
                Err(too_large(payload.len()).with_io(e))
            }
            Err(e) => Err(Error::io(Step::SendTo, e).at(target)),
        }
    }

    /// Receives one datagram into `buf`, detecting truncation.
    ///
    /// std cannot report MSG_TRUNC, so the datagram is received into a buffer one
    /// byte larger than `buf` when `buf` is smaller than the largest possible
    /// datagram: if that extra byte fills, the datagram did not fit. A `buf` of
    /// the largest possible datagram or more needs no such check — nothing can
    /// be larger — and is received into directly. (`sockstep bench udp`
    /// measured the copy through a fresh 64 KiB buffer on every call: 10–15 %
    /// of the datagrams per second, for the very buffer size the docs advise.)
    fn recv(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
        let max = max_payload(&self.local);
        let (n, from) = if buf.len() >= max {
            self.recv_raw(buf)?
        } else {
            let mut scratch = vec![0u8; buf.len() + 1];
            let (n, from) = self.recv_raw(&mut scratch)?;
            if n > buf.len() {
                self.trace.emit(|| {
                    Event::new(self.id, self.side, Step::RecvFrom, Protocol::Udp)
                        .local(self.local)
                        .peer(from)
                        .detail(format!("truncated: did not fit {} bytes", buf.len()))
                });
                return Err(Error::new(
                    Step::RecvFrom,
                    ErrorKind::DatagramTruncated { buffer: buf.len() },
                )
                .at(self.endpoint(from)));
            }
            buf[..n].copy_from_slice(&scratch[..n]);
            (n, from)
        };
        self.trace.emit(|| {
            Event::new(self.id, self.side, Step::RecvFrom, Protocol::Udp)
                .local(self.local)
                .peer(from)
                .bytes(n)
        });
        Ok((n, from))
    }

    fn recv_raw(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
        loop {
            match self.socket.recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let error = Error::io(Step::RecvFrom, e);
                    return Err(error.at(self.endpoint(self.peer.unwrap_or(self.local))));
                }
                Ok(got) => return Ok(got),
            }
        }
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::new(
                Step::RecvFrom,
                ErrorKind::InvalidInput("a timeout of zero".into()),
            ));
        }
        self.socket
            .set_read_timeout(timeout)
            .map_err(|e| Error::io(Step::RecvFrom, e).at(self.endpoint(self.local)))
    }

    fn try_clone(&self) -> Result<Datagrams, Error> {
        Ok(Datagrams {
            id: self.id,
            side: self.side,
            socket: self
                .socket
                .try_clone()
                .map_err(|e| Error::io(Step::Socket, e).at(self.endpoint(self.local)))?,
            local: self.local,
            peer: self.peer,
            trace: self.trace.clone(),
        })
    }
}

impl Drop for Datagrams {
    fn drop(&mut self) {
        self.trace
            .emit(|| Event::new(self.id, self.side, Step::Close, Protocol::Udp).local(self.local));
    }
}

/// "Message too long" on Linux.
const EMSGSIZE: i32 = 90;
