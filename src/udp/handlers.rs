//! What a UDP server does with each datagram: the [`DatagramHandler`] trait and
//! two built-ins, [`Echo`] and [`Recorder`].
//!
//! A UDP server has no connections to hand to threads: one socket receives
//! every client's datagrams, each labelled with its sender. So a handler sees one
//! datagram at a time and may answer it with one datagram back to its sender.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::step::Step;

/// Answers one datagram. Any `Fn(SocketAddr, &[u8]) -> Option<Vec<u8>>` is one.
pub trait DatagramHandler: Send + Sync + 'static {
    /// Called with each datagram and its sender; `Some(reply)` is sent back to
    /// the sender as one datagram, `None` sends nothing.
    fn handle(&self, from: SocketAddr, payload: &[u8]) -> Option<Vec<u8>>;
}

impl<F> DatagramHandler for F
where
    F: Fn(SocketAddr, &[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    fn handle(&self, from: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        self(from, payload)
    }
}

/// Sends every datagram back to its sender, unchanged (RFC 862's echo over UDP).
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl DatagramHandler for Echo {
    fn handle(&self, _from: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        Some(payload.to_vec())
    }
}

/// One datagram a [`Recorder`] kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Who sent it.
    pub from: SocketAddr,
    /// Its payload, whole.
    pub payload: Vec<u8>,
}

/// The most datagrams a [`Recorder`] keeps unless told otherwise. At the largest
/// datagram size that is up to 4 GiB, so tests that send big ones should set
/// their own limit; past it, datagrams are counted but not kept.
pub const DEFAULT_RECORD_LIMIT: usize = 65_536;

/// Keeps every datagram it receives, in arrival order, and answers none.
///
/// Clone it to keep a handle for the test while the server owns another.
#[derive(Debug, Clone)]
pub struct Recorder {
    shared: Arc<(Mutex<Recorded>, Condvar)>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Recorded {
    kept: Vec<Received>,
    not_kept: u64,
}

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

    /// Keeps at most `limit` datagrams; later ones are only counted.
    pub fn with_limit(mut self, limit: usize) -> Recorder {
        self.limit = limit;
        self
    }

    /// Every datagram kept so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().kept.clone()
    }

    /// Datagrams that arrived after the limit was reached.
    pub fn not_kept(&self) -> u64 {
        self.lock().not_kept
    }

    /// Waits until at least `count` datagrams have been kept, and returns them.
    ///
    /// # Errors
    /// [`ErrorKind::TimedOut`] if fewer arrived within `timeout` — with UDP that
    /// may simply mean some were lost.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Result<Vec<Received>, Error> {
        let (recorded, _) = self
            .shared
            .1
            .wait_timeout_while(self.lock(), timeout, |r| r.kept.len() < count)
            .unwrap_or_else(PoisonError::into_inner);
        if recorded.kept.len() < count {
            return Err(Error::new(Step::RecvFrom, ErrorKind::TimedOut));
        }
        Ok(recorded.kept.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // Entries are pushed whole; a poisoned lock still holds whole entries.
        self.shared.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl DatagramHandler for Recorder {
    fn handle(&self, from: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        {
            let mut recorded = self.lock();
            if recorded.kept.len() < self.limit {
                recorded.kept.push(Received {
                    from,
                    payload: payload.to_vec(),
                });
            } else {
                recorded.not_kept += 1;
            }
        }
        self.shared.1.notify_all();
        None
    }
}
