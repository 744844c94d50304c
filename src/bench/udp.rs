//! `sockstep bench udp`: datagrams per second one way, and the round trip,
//! through our sockets and server against raw std `UdpSocket`s.
//!
//! **One way.** A sender writes datagrams as fast as it can for a fixed time
//! while a receiver thread counts what arrives; the rate is datagrams
//! *received* per second, first send to last arrival. UDP has no flow
//! control, so when the receiver is the slower end the rest is lost to its
//! full receive buffer — that is counted and printed too (it is what a raw
//! UDP sender gets), but the figure compared is what got through. Ours:
//! [`socket`](crate::udp::socket::socket) → `bind` → `connect` → `send` on one
//! side, `bind` → `recv_from` on the other. Raw: `UdpSocket::bind`,
//! `connect`, `send`, `recv_from`.
//!
//! **Round trip.** A client sends 64 bytes and waits for them back from an
//! echo server: ours is [`UdpServer`](crate::udp::serve::UdpServer) with the
//! [`Echo`] handler and a connected client socket; raw is a std `recv_from`
//! → `send_to` loop on a thread and a connected std client. Round trips
//! depend on where the scheduler puts the ends, so within a pass ours and raw
//! alternate one round trip at a time, and every pass starts fresh servers
//! (a server thread that lives through the whole run keeps whatever core it
//! first got, and one unlucky placement would bias every pass).
//!
//! Every receive buffer is [`RECV_BUFFER`] bytes, the size the docs of
//! [`Bound::recv_from`] recommend, so no datagram can be truncated.
//!
//! [`Bound::recv_from`]: crate::udp::socket::Bound::recv_from

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bench::harness::{
    Bench, BenchOptions, Goal, Latency, Measurement, Report, Samples, Unit, Variant, alternate,
    bench_error,
};
use crate::error::{Error, ErrorKind};
use crate::readable::grouped;
use crate::step::{Side, Step};
use crate::trace::Trace;
use crate::udp::handlers::Echo;
use crate::udp::socket::{self, MAX_PAYLOAD_V4};

/// Every receive buffer: the largest IPv4 datagram's payload, so nothing is
/// ever truncated (what [`Bound::recv_from`](crate::udp::socket::Bound::recv_from)'s
/// docs tell a user to give).
pub const RECV_BUFFER: usize = MAX_PAYLOAD_V4;

/// Datagram sizes sent one way: a small message, and the most that fits one
/// Ethernet-sized packet (1,500 − 20 IPv4 − 8 UDP).
pub const ONE_WAY_SIZES: [usize; 2] = [64, 1_472];

/// The round trip's datagram.
pub const RR_DATAGRAM: usize = 64;

/// How long a receiver waits for the next datagram before it checks whether
/// the sender is done; also how long the quiet at the end of a pass lasts.
const RECV_POLL: Duration = Duration::from_millis(20);

/// The longest a round-trip client waits for its echo: loopback does not
/// lose a ping-pong's datagrams, so this only ends a broken run.
const RR_TIMEOUT: Duration = Duration::from_secs(2);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `sockstep bench udp`: see the [module docs](self).
///
/// # Errors
/// A socket step that fails in any pass.
pub fn datagrams(options: &BenchOptions) -> Result<Report, Error> {
    let mut bench = Bench::new(
        "udp",
        "datagrams one way and round trips, our sockets and UdpServer against raw std",
        options,
    );
    let duration = options.pick(Duration::from_millis(60), Duration::from_millis(20));
    let (warmup, reps) = options.pick((1, 15), (0, 2));
    let count = options.pick(1_000, 200);
    let rr_reps = options.pick(31, 2);
    bench.setup(format!(
        "one way: {reps} interleaved passes (+{warmup} warm-up) of {duration:?} of sending as fast \
         as one thread can, a new socket pair per pass, {} B receive buffers; \
         rate = datagrams received per second",
        grouped(RECV_BUFFER as u64)
    ));
    bench.setup(format!(
        "round trip: {rr_reps} passes (+{warmup} warm-up), fresh servers each, of {} timed \
         {RR_DATAGRAM}-byte round trips on each side after 100 untimed, alternating ours and raw \
         one by one; the table quotes the median over passes of each pass's p50 and p99",
        grouped(count as u64)
    ));
    let per_second = Unit::PerSecond("datagrams");
    for size in ONE_WAY_SIZES {
        let case = format!("{} B datagrams, one way", grouped(size as u64));
        let mut variants = [
            Variant::new("raw", move || raw_one_way(size, duration)),
            Variant::new("ours", move || our_one_way(size, duration)),
        ];
        let passes = bench.interleave(&case, warmup, reps, &mut variants, |r: &OneWay| {
            format!(
                "{} ({:.1}% lost)",
                per_second.format(r.rate),
                r.lost * 100.0
            )
        })?;
        let mut lost = Vec::new();
        for (name, values) in ["raw", "ours"].into_iter().zip(passes) {
            let rates = Samples::new(values.iter().map(|r| r.rate).collect());
            let losses = Samples::new(values.iter().map(|r| r.lost).collect());
            lost.push(format!("{name} {:.1}%", losses.median() * 100.0));
            let m = Measurement::new(&case, name, per_second, rates);
            bench.record(if name == "ours" {
                m.vs("raw").goal(Goal::AtLeast(0.95))
            } else {
                m
            });
        }
        bench.note(format!(
            "{case}: sent but lost to the receiver's full buffer (median of passes): {}",
            lost.join(", ")
        ));
    }

    let case = format!("{RR_DATAGRAM} B round trip");
    let mut server_trouble = Vec::new();
    let mut variants = [Variant::new("ours and raw, alternating", || {
        // Fresh servers every pass (see the module docs).
        let ours = socket::socket(loopback(), Side::Server, &Trace::off())
            .bind()?
            .serve(Echo)?;
        let raw = RawEcho::start()?;
        let found = alternating_ping_pong(ours.local_addr(), raw.addr, count);
        let stats = ours.shutdown();
        if stats.errors > 0 || stats.panics > 0 {
            server_trouble.push(format!("{} errors, {} panics", stats.errors, stats.panics));
        }
        found
    })];
    let passes = bench.interleave(&case, warmup, rr_reps, &mut variants, |(o, r)| {
        format!("ours {}  raw {}", o.show(), r.show())
    })?;
    let (ours_passes, raw_passes): (Vec<Latency>, Vec<Latency>) =
        passes.into_iter().flatten().unzip();
    bench.record_latency(
        &case,
        &["raw", "ours"],
        &[raw_passes, ours_passes],
        Some(Goal::AtMost(1.05)),
    );
    drop(variants);
    for trouble in server_trouble {
        bench.note(format!("our UDP server counted {trouble} in a pass"));
    }
    Ok(bench.finish())
}

/// What one one-way pass found.
#[derive(Debug, Clone, Copy)]
struct OneWay {
    /// Datagrams received per second.
    rate: f64,
    /// The fraction of those sent that never arrived.
    lost: f64,
}

/// Runs one pass: `send` as fast as it goes for `duration` on this thread,
/// `recv` on another until the sender is done and nothing more comes.
/// `recv` returns `Ok(false)` when its poll timeout passed without a datagram.
fn one_way(
    duration: Duration,
    mut send: impl FnMut() -> Result<(), Error>,
    mut recv: impl FnMut() -> Result<bool, Error> + Send,
) -> Result<OneWay, Error> {
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let receiver = thread::Builder::new()
            .name("bench-udp-recv".into())
            .spawn_scoped(scope, || {
                let mut got = 0u64;
                let mut last = None;
                loop {
                    if recv()? {
                        got += 1;
                        last = Some(Instant::now());
                    } else if done.load(Ordering::SeqCst) {
                        return Ok::<_, Error>((got, last));
                    }
                }
            })
            .map_err(|e| bench_error("start a thread", e))?;
        let started = Instant::now();
        let mut sent = 0u64;
        let sending = loop {
            if started.elapsed() >= duration {
                break Ok(());
            }
            if let Err(e) = send() {
                break Err(e);
            }
            sent += 1;
        };
        done.store(true, Ordering::SeqCst);
        let received = receiver
            .join()
            .map_err(|_| bench_error("receive", io::Error::other("the receiver panicked")))?;
        sending?;
        let (got, last) = received?;
        let seconds = last.map_or(0.0, |l| l.duration_since(started).as_secs_f64());
        Ok(OneWay {
            rate: if seconds > 0.0 {
                got as f64 / seconds
            } else {
                0.0
            },
            lost: 1.0 - got as f64 / sent.max(1) as f64,
        })
    })
}

/// One way through our sockets.
fn our_one_way(size: usize, duration: Duration) -> Result<OneWay, Error> {
    let receiver = socket::socket(loopback(), Side::Server, &Trace::off()).bind()?;
    receiver.set_read_timeout(Some(RECV_POLL))?;
    let sender = socket::socket(loopback(), Side::Client, &Trace::off())
        .bind()?
        .connect(receiver.local_addr())?;
    let payload = vec![0xA5u8; size];
    let mut buf = vec![0u8; RECV_BUFFER];
    one_way(
        duration,
        || sender.send(&payload),
        || match receiver.recv_from(&mut buf) {
            Ok(_) => Ok(true),
            Err(e) if *e.kind() == ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e),
        },
    )
}

/// One way through raw std sockets.
fn raw_one_way(size: usize, duration: Duration) -> Result<OneWay, Error> {
    let io = |step| move |e| Error::io(step, e);
    let receiver = UdpSocket::bind(loopback()).map_err(io(Step::Bind))?;
    receiver
        .set_read_timeout(Some(RECV_POLL))
        .map_err(io(Step::RecvFrom))?;
    let sender = UdpSocket::bind(loopback()).map_err(io(Step::Bind))?;
    sender
        .connect(receiver.local_addr().map_err(io(Step::Bind))?)
        .map_err(io(Step::Connect))?;
    let payload = vec![0xA5u8; size];
    let mut buf = vec![0u8; RECV_BUFFER];
    one_way(
        duration,
        || sender.send(&payload).map(drop).map_err(io(Step::SendTo)),
        || match receiver.recv_from(&mut buf) {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::io(Step::RecvFrom, e)),
        },
    )
}

/// One pass: our connected socket against our UdpServer and a std socket
/// against the raw echo, round trips alternating between them (ours first on
/// even turns); each side's latencies.
fn alternating_ping_pong(
    ours: SocketAddr,
    raw: SocketAddr,
    count: usize,
) -> Result<(Latency, Latency), Error> {
    let io = |step| move |e| Error::io(step, e);
    let our_client = socket::socket(loopback(), Side::Client, &Trace::off())
        .bind()?
        .connect(ours)?;
    our_client.set_read_timeout(Some(RR_TIMEOUT))?;
    let raw_client = UdpSocket::bind(loopback()).map_err(io(Step::Bind))?;
    raw_client.connect(raw).map_err(io(Step::Connect))?;
    raw_client
        .set_read_timeout(Some(RR_TIMEOUT))
        .map_err(io(Step::RecvFrom))?;
    let message = [0x42u8; RR_DATAGRAM];
    let mut buf = vec![0u8; RECV_BUFFER];
    let check = |n: usize| {
        if n == RR_DATAGRAM {
            Ok(())
        } else {
            Err(Error::new(
                Step::RecvFrom,
                ErrorKind::InvalidInput(format!("an echo of {n} bytes")),
            ))
        }
    };
    let mut raw_buf = buf.clone();
    let ours_rtt = || -> Result<f64, Error> {
        let started = Instant::now();
        our_client.send(&message)?;
        check(our_client.recv(&mut buf)?)?;
        Ok(started.elapsed().as_secs_f64())
    };
    let raw_rtt = || -> Result<f64, Error> {
        let started = Instant::now();
        raw_client.send(&message).map_err(io(Step::SendTo))?;
        check(raw_client.recv(&mut raw_buf).map_err(io(Step::RecvFrom))?)?;
        Ok(started.elapsed().as_secs_f64())
    };
    alternate(100, count, ours_rtt, raw_rtt)
}

/// The raw echo server: `recv_from` → `send_to` on a thread, checking a stop
/// flag between reads (a short read timeout). Stopped when dropped.
struct RawEcho {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawEcho {
    fn start() -> Result<RawEcho, Error> {
        let socket = UdpSocket::bind(loopback()).map_err(|e| Error::io(Step::Bind, e))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| Error::io(Step::RecvFrom, e))?;
        let addr = socket.local_addr().map_err(|e| Error::io(Step::Bind, e))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = thread::Builder::new()
            .name("bench-raw-udp-echo".into())
            .spawn(move || {
                let mut buf = vec![0u8; RECV_BUFFER];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            })
            .map_err(|e| bench_error("start a thread", e))?;
        Ok(RawEcho {
            addr,
            stopping,
            thread: Some(thread),
        })
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Cannot hang: the thread checks the flag at least every 100 ms.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
