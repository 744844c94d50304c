//! A UDP server: one socket, one thread, every client's datagrams in turn.
//!
//! TCP's server needs a thread per connection because each connection is a
//! separate socket with its own stream. A UDP server has one socket for
//! everyone: each `recv_from()` returns the next datagram from whichever client
//! sent it, and the answer goes back with `send_to()` to that client's address.
//! So [`Bound::serve`] runs one thread that loops receive → handle → reply.
//!
//! Shutdown ([`UdpServer::shutdown`], or dropping the server) sets a stop flag and
//! sends the server an empty datagram to wake its `recv_from()`; a read timeout
//! of [`POLL`] backs that up, because a wake-up datagram, being UDP, may itself be
//! lost (for example to a full receive buffer).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::step::Step;
use crate::udp::handlers::DatagramHandler;
use crate::udp::socket::{Bound, max_payload};

/// The longest the server thread goes without checking whether it should stop.
pub const POLL: Duration = Duration::from_millis(100);

/// What a UDP server did, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams received whole and handed to the handler.
    pub received: u64,
    /// Replies sent.
    pub replied: u64,
    /// Receive or send errors (including replies too large to send).
    pub errors: u64,
    /// Handler panics, caught; the server kept serving.
    pub panics: u64,
}

/// A running UDP server. Dropping it shuts it down.
#[derive(Debug)]
pub struct UdpServer {
    local: SocketAddr,
    stopping: Arc<AtomicBool>,
    stats: Arc<Mutex<UdpStats>>,
    thread: Option<JoinHandle<()>>,
}

impl Bound {
    /// Serves datagrams on this socket with `handler`, on a thread of its own.
    /// Returns at once.
    ///
    /// # Errors
    /// The OS error if the read timeout cannot be set or the thread cannot start.
    pub fn serve(self, handler: impl DatagramHandler) -> Result<UdpServer, Error> {
        self.set_read_timeout(Some(POLL))?;
        let local = self.local_addr();
        let stopping = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(UdpStats::default()));
        let thread = {
            let (stopping, stats) = (stopping.clone(), stats.clone());
            thread::Builder::new()
                .name(format!("sockstep-udp-{}", local.port()))
                .spawn(move || serve_loop(&self, &handler, &stopping, &stats))
                .map_err(|e| Error::io(Step::Serve, e))?
        };
        Ok(UdpServer {
            local,
            stopping,
            stats,
            thread: Some(thread),
        })
    }
}

fn serve_loop(
    socket: &Bound,
    handler: &dyn DatagramHandler,
    stopping: &AtomicBool,
    stats: &Mutex<UdpStats>,
) {
    let count = |update: &dyn Fn(&mut UdpStats)| {
        update(&mut stats.lock().unwrap_or_else(PoisonError::into_inner))
    };
    // One byte more than the largest datagram, so nothing can ever be truncated.
    let mut buf = vec![0u8; max_payload(&socket.local_addr()) + 1];
    while !stopping.load(Ordering::SeqCst) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut) => continue,
            Err(_) => {
                count(&|s| s.errors += 1);
                continue;
            }
        };
        if stopping.load(Ordering::SeqCst) {
            socket.note("stopping: that was shutdown's wake-up datagram (or the last before it)");
            break;
        }
        count(&|s| s.received += 1);
        match panic::catch_unwind(AssertUnwindSafe(|| handler.handle(from, &buf[..n]))) {
            Ok(Some(reply)) => match socket.send_to(&reply, from) {
                Ok(()) => count(&|s| s.replied += 1),
                Err(_) => count(&|s| s.errors += 1),
            },
            Ok(None) => {}
            Err(_) => count(&|s| s.panics += 1),
        }
    }
}

impl UdpServer {
    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The counts so far.
    pub fn stats(&self) -> UdpStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the server, joins its thread, and reports what it did.
    pub fn shutdown(mut self) -> UdpStats {
        self.stop()
    }

    fn stop(&mut self) -> UdpStats {
        if let Some(thread) = self.thread.take() {
            self.stopping.store(true, Ordering::SeqCst);
            self.wake();
            // Cannot hang: the thread checks the flag at least every POLL.
            let _ = thread.join();
        }
        self.stats()
    }

    /// Sends an empty datagram to the server so its recv_from returns now.
    fn wake(&self) {
        let mut target = self.local;
        if target.ip().is_unspecified() {
            target.set_ip(match target {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        let any: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        if let Ok(socket) = UdpSocket::bind(any) {
            let _ = socket.send_to(&[], target);
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
