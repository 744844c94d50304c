//! The server socket (서버 소켓): `socket()` → `bind()` → `listen()` → `accept()`.
//!
//! The seed's server waits for clients' connection requests and, when one comes,
//! makes a new socket for talking to that client. The four steps are four
//! functions here, in order, and each returns a different type, so the order is
//! enforced by the compiler rather than checked at run time:
//!
//! ```text
//! server::socket(addr) -> Socket --bind()--> Bound --listen(n)--> Listening --accept()--> Connection
//! ```
//!
//! What std does underneath is not what the seed's list suggests: std has no
//! "unbound socket" value, and `TcpListener::bind` makes four system calls at
//! once — socket(2), setsockopt(SO_REUSEADDR), bind(2) and listen(2) with a
//! fixed backlog of 128. So in sockstep the `bind` step is where all four happen,
//! and each step's doc says plainly what it does and does not do. The evidence
//! (strace) is in `docs/tcp.md`.
//!
//! A socket that is not bound cannot listen:
//!
//! ```compile_fail,E0599
//! use sockstep::{tcp::server, trace::Trace};
//! let socket = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off());
//! socket.listen(8); // no such method: bind() comes first
//! ```
//!
//! A socket that is not listening cannot accept:
//!
//! ```compile_fail,E0599
//! use sockstep::{tcp::server, trace::Trace};
//! let bound = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off()).bind().unwrap();
//! bound.accept(); // no such method: listen() comes first
//! ```
//!
//! And a socket cannot be bound twice, because `bind` consumes it:
//!
//! ```compile_fail,E0382
//! use sockstep::{tcp::server, trace::Trace};
//! let socket = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off());
//! let a = socket.bind();
//! let b = socket.bind(); // use of moved value
//! ```

use std::net::{SocketAddr, TcpListener};

use crate::endpoint::{Endpoint, Protocol, family};
use crate::error::Error;
use crate::step::{Side, Step};
use crate::tcp::connection::Connection;
use crate::trace::{Event, SocketId, Trace};

/// Server step 1 of 4 — `socket()`: decide what kind of socket to make.
///
/// In C, socket(2) creates a file descriptor that has a protocol (TCP:
/// `SOCK_STREAM`) and an address family (IPv4 or IPv6, from the address) but no
/// address yet. Underneath, in std: **nothing yet**. std offers no unbound TCP
/// socket, so the real socket(2) call happens inside [`Socket::bind`]. What this
/// step does: it fixes the two arguments socket(2) will get — TCP, and the family
/// of `addr` — and records the step in the trace.
///
/// # Examples
/// ```
/// use sockstep::{tcp::server, trace::Trace};
/// let socket = server::socket("127.0.0.1:0".parse().unwrap(), &Trace::off());
/// assert!(socket.addr().is_ipv4());
/// ```
pub fn socket(addr: SocketAddr, trace: &Trace) -> Socket {
    let id = SocketId::next();
    trace.emit(|| {
        Event::new(id, Side::Server, Step::Socket, Protocol::Tcp).detail(format!(
            "SOCK_STREAM, {}, for {}",
            family(&addr),
            Endpoint::from_addr(Protocol::Tcp, addr)
        ))
    });
    Socket {
        id,
        addr,
        trace: trace.clone(),
    }
}

/// A server socket that has been decided on but not bound (after step 1).
#[derive(Debug)]
pub struct Socket {
    id: SocketId,
    addr: SocketAddr,
    trace: Trace,
}

impl Socket {
    /// The address this socket will bind to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Server step 2 of 4 — `bind()`: give the socket its IP address and port.
    ///
    /// After this the socket *is* `tcp://IP:PORT` on this host, and no other socket
    /// on the host can hold the same protocol + IP + port: that is how a port names
    /// one process. Port 0 asks the OS to choose a free port;
    /// [`Bound::local_addr`] reports which one it chose.
    ///
    /// Underneath: std's `TcpListener::bind`, which makes four system calls —
    /// socket(AF_INET/AF_INET6, SOCK_STREAM|SOCK_CLOEXEC), setsockopt(SO_REUSEADDR, 1)
    /// (so a restarted server can rebind while old connections linger in
    /// TIME_WAIT), bind(2), and **listen(fd, 128)**. So when this returns, the
    /// kernel is already completing handshakes for clients and queueing up to 128
    /// of them, before our `listen()` step runs.
    ///
    /// # Errors
    /// [`ErrorKind::AddressInUse`](crate::ErrorKind::AddressInUse) when another socket
    /// holds the port; [`AddressNotAvailable`](crate::ErrorKind::AddressNotAvailable)
    /// when the IP is not this host's; [`PermissionDenied`](crate::ErrorKind::PermissionDenied)
    /// for ports below 1024 without privileges. Each names the endpoint.
    pub fn bind(self) -> Result<Bound, Error> {
        let endpoint = Endpoint::from_addr(Protocol::Tcp, self.addr);
        let listener = TcpListener::bind(self.addr).map_err(|e| {
            let error = Error::io(Step::Bind, e).at(endpoint.clone());
            self.trace.emit(|| {
                Event::new(self.id, Side::Server, Step::Bind, Protocol::Tcp)
                    .detail(format!("failed: {}", error.summary()))
            });
            error
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io(Step::Bind, e).at(endpoint))?;
        self.trace.emit(|| {
            let event = Event::new(self.id, Side::Server, Step::Bind, Protocol::Tcp).local(local);
            if self.addr.port() == 0 {
                event.detail(format!("port 0 asked; the OS chose {}", local.port()))
            } else {
                event
            }
        });
        Ok(Bound {
            id: self.id,
            listener,
            local,
            trace: self.trace,
        })
    }
}

/// A server socket with an address (after step 2).
#[derive(Debug)]
pub struct Bound {
    id: SocketId,
    listener: TcpListener,
    local: SocketAddr,
    trace: Trace,
}

impl Bound {
    /// The address the socket holds — with the real port if port 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The same, as `tcp://IP:PORT`.
    pub fn local_endpoint(&self) -> Endpoint {
        Endpoint::from_addr(Protocol::Tcp, self.local)
    }

    /// Server step 3 of 4 — `listen()`: open the waiting room (연결 대기열) and
    /// decide how many clients may wait in it.
    ///
    /// Underneath: **nothing new**. std already called listen(fd, 128) inside
    /// `bind`, and std has no way to change that number; the kernel's queue of
    /// completed handshakes is fixed at 128 (beyond it the kernel silently drops
    /// SYNs and clients' connects time out — it never refuses).
    ///
    /// What this step adds is the waiting room the seed describes, in our own
    /// server: when [`Listening::serve`] runs, connections beyond those being
    /// served wait in a queue of at most `backlog`, in arrival order, and a client
    /// that finds the queue full is told so and closed — counted, never dropped in
    /// silence. If you call [`Listening::accept`] yourself instead, you are the
    /// policy, and only the kernel's queue of 128 applies.
    pub fn listen(self, backlog: usize) -> Listening {
        self.trace.emit(|| {
            Event::new(self.id, Side::Server, Step::Listen, Protocol::Tcp)
                .local(self.local)
                .detail(format!(
                    "waiting room for {backlog} (the kernel's own queue is fixed at 128)"
                ))
        });
        Listening {
            id: self.id,
            listener: self.listener,
            local: self.local,
            backlog,
            trace: self.trace,
        }
    }
}

/// A listening server socket (after step 3): ready to accept.
#[derive(Debug)]
pub struct Listening {
    pub(crate) id: SocketId,
    pub(crate) listener: TcpListener,
    pub(crate) local: SocketAddr,
    pub(crate) backlog: usize,
    pub(crate) trace: Trace,
}

impl Listening {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The same, as `tcp://IP:PORT`.
    pub fn local_endpoint(&self) -> Endpoint {
        Endpoint::from_addr(Protocol::Tcp, self.local)
    }

    /// How many accepted clients may wait while all serving threads are busy.
    pub fn backlog(&self) -> usize {
        self.backlog
    }

    /// Server step 4 of 4 (the client's step 3) — `accept()`: wait for a client
    /// and return a connection to it.
    ///
    /// The handshake already happened in the kernel; `accept` takes the oldest
    /// completed connection from the kernel's queue, blocking until there is one.
    /// The listening socket stays as it is and goes on listening; the
    /// [`Connection`] is a new socket — the same local IP and port, told apart
    /// from the others by the client's IP and port.
    ///
    /// Underneath: accept4(fd, &addr, SOCK_CLOEXEC). The new socket's own
    /// address is the listener's — unless the listener took every address of
    /// the host (`0.0.0.0`, `[::]`), and then one more call, getsockname,
    /// asks which of them the client reached.
    ///
    /// # Errors
    /// The OS error, for example EMFILE when the process is out of file
    /// descriptors; the listening socket remains usable.
    pub fn accept(&self) -> Result<Connection, Error> {
        let (stream, peer) = self
            .listener
            .accept()
            .map_err(|e| Error::io(Step::Accept, e).at(self.local_endpoint()))?;
        let local = (!self.local.ip().is_unspecified()).then_some(self.local);
        let conn = Connection::new(
            SocketId::next(),
            stream,
            Side::Server,
            local,
            peer,
            self.trace.clone(),
        )?;
        self.trace.emit(|| {
            Event::new(self.id, Side::Server, Step::Accept, Protocol::Tcp)
                .local(self.local)
                .peer(peer)
                .detail(format!("a new socket for this client: {}", conn.id()))
        });
        Ok(conn)
    }
}
