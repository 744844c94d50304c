//! Helpers shared by the integration tests: servers and clients on loopback
//! with a timeout on everything, and bounded waits.
//!
//! Every blocking call in these tests has a timeout, so a bug fails the test
//! in seconds instead of hanging `cargo test`.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

pub mod process;
pub mod python;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use sockstep::tcp::client;
use sockstep::tcp::handlers::Handler;
use sockstep::tcp::serve::{ServeConfig, Server};
use sockstep::tcp::server;
use sockstep::tcp::{Connection, Timeouts};
use sockstep::trace::Trace;

/// The longest any socket call in the tests may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Read and write timeouts of [`IO_TIMEOUT`] each.
pub const TIMEOUTS: Timeouts = Timeouts {
    read: Some(IO_TIMEOUT),
    write: Some(IO_TIMEOUT),
};

/// The IPv4 loopback with port 0: "any free port, chosen by the OS".
pub fn any_port_v4() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server config for tests: short timeouts, a short grace period.
pub fn config(max_connections: usize) -> ServeConfig {
    ServeConfig {
        max_connections,
        timeouts: TIMEOUTS,
        grace: Duration::from_secs(2),
        ..ServeConfig::default()
    }
}

/// Starts a server on an ephemeral IPv4 loopback port: socket → bind → listen → serve.
pub fn serve(backlog: usize, config: ServeConfig, handler: impl Handler, trace: &Trace) -> Server {
    server::socket(any_port_v4(), trace)
        .bind()
        .expect("bind 127.0.0.1:0")
        .listen(backlog)
        .serve(config, handler)
        .expect("serve")
}

/// Connects a client with [`TIMEOUTS`], panicking (failing the test) on error.
pub fn connect(addr: SocketAddr, trace: &Trace) -> Connection {
    client::socket(addr, trace)
        .timeouts(TIMEOUTS)
        .connect(IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// A port on 127.0.0.1 where nothing listens (right now): bind port 0, note
/// the port, close the listener. Another process could take the port in
/// between; on a test machine that race is negligible.
pub fn free_port_v4() -> SocketAddr {
    let listener = TcpListener::bind(any_port_v4()).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// Reads until end of stream; every read is bounded by the reader's own timeout.
///
/// # Errors
/// The first read error, with what was read before it.
pub fn read_to_eof(reader: &mut impl Read) -> Result<Vec<u8>, (Vec<u8>, io::Error)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((got, e)),
        }
    }
}

/// Polls `condition` every few milliseconds until it holds or `within` passes.
/// Returns whether it held. For conditions nobody can wait on directly (server
/// counters, thread counts).
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
}
