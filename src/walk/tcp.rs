//! `sockstep walk tcp`: a TCP server and client on loopback, every step printed.
//!
//! The run follows the seed's figure from top to bottom: the server makes its
//! socket, binds, listens and starts accepting; the client makes its socket and
//! connects; the server's `accept()` hands out a connection; the two exchange a
//! few line-framed messages (the server echoes); the client half-closes, the
//! server sees end of stream and closes; the server shuts down and reports.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::tcp::framing::{DEFAULT_MAX_FRAME, FrameReader, Framing, encode};
use crate::tcp::handlers::Echo;
use crate::tcp::serve::{ServeConfig, Stats};
use crate::tcp::{client, server};
use crate::trace::{Event, Printer, Recorder, Tee, Trace, Tracer};
use crate::walk::{SharedOut, WalkOptions};

/// The messages the client sends; the third shows that a message need not be short.
const MESSAGES: [&str; 3] = ["hello", "안녕하세요 (hello in Korean)", "bye"];

/// What a walkthrough did: every event, in order, and the server's counts.
#[derive(Debug, Clone)]
pub struct WalkReport {
    /// The trace of the run, sorted by time.
    pub events: Vec<Event>,
    /// The server's counts at shutdown.
    pub stats: Stats,
}

/// Runs the TCP walkthrough, printing to `out`.
///
/// # Errors
/// Any step's error, for example if loopback is unavailable.
pub fn run(options: &WalkOptions, out: Box<dyn Write + Send>) -> Result<WalkReport, Error> {
    let out = SharedOut::new(out);
    let recorder = Recorder::new();
    let printer = Printer::to(Box::new(out.clone())).pausing(options.pause);
    let tracers: Vec<Arc<dyn Tracer>> = vec![Arc::new(printer), recorder.clone()];
    let trace = Trace::to(Arc::new(Tee(tracers)));

    out.line("sockstep walk tcp — the seed's socket flow, for real, on loopback");
    out.line("Each step prints as it happens: time, side, the seed's step number, the");
    out.line("step, the sockets involved; below it, what std asked the kernel to do.");
    out.line("Server and client run on different threads: a line can print a few");
    out.line("microseconds after the line below it happened.");
    out.line("");
    out.line("== Server: 1 socket() → 2 bind() → 3 listen() → 4 accept() ==");
    let listening = server::socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &trace)
        .bind()?
        .listen(4);
    let config = ServeConfig {
        max_connections: 2,
        ..ServeConfig::default()
    };
    let server = listening.serve(config, Echo)?;
    out.line(&format!(
        "   (port 0 asked, so the OS chose one: clients reach us at tcp://{})",
        server.local_addr()
    ));
    out.line("");
    out.line("== Client: 1 socket() → 2 connect() → 3 the server's accept() → 4 read()/write() ==");
    let conn = client::socket(server.local_addr(), &trace).connect(Duration::from_secs(5))?;
    out.line("");
    out.line("== Both: read() and write(), over and over (the server echoes each line) ==");
    // One reader for the whole conversation: bytes it has read past one line
    // belong to the next, so it must not be thrown away between messages.
    let mut reader = FrameReader::new(conn, Framing::Lines);
    for message in MESSAGES {
        let frame = encode(Framing::Lines, message.as_bytes(), DEFAULT_MAX_FRAME)?;
        reader.get_mut().write_all(&frame)?;
        let reply = reader.read_frame()?;
        let reply = reply.map(|r| String::from_utf8_lossy(&r).into_owned());
        out.line(&format!(
            "   client sent {message:?}, server echoed {reply:?}"
        ));
    }
    out.line("");
    out.line("== The end: the client half-closes, the server sees end of stream and closes ==");
    let mut conn = reader.into_inner();
    conn.shutdown_write()?;
    let mut rest = [0u8; 64];
    let after = conn.read(&mut rest)?;
    out.line(&format!(
        "   client read {after} bytes: end of stream, the server has closed too"
    ));
    conn.close();
    out.line("");
    out.line("== Server shutdown: stop accepting (a wake-up connection unblocks accept()), join threads ==");
    let stats = server.shutdown();
    out.line("");
    out.line(&format!(
        "== Server shut down: accepted {}, served {}, refused {}, errors {}; {} of {} threads joined ==",
        stats.accepted, stats.served, stats.refused, stats.errors, stats.threads_joined, stats.threads_started
    ));
    Ok(WalkReport {
        events: recorder.events(),
        stats,
    })
}
