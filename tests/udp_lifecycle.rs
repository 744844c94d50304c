//! The UDP lifecycle, step by step, against the real loopback.
//!
//! A UDP socket goes socket → bind → send_to/recv_from, the same on both sides,
//! with an optional connect. Each test pins down one thing the seed says of the
//! datagram socket (데이터그램 소켓) or one promise `src/udp/` makes: the steps
//! work on IPv4 and IPv6 and never listen or accept; the protocol is part of a
//! socket's identity, so a TCP and a UDP socket share a port number; a
//! datagram's size has a hard limit, checked before the kernel is asked; a
//! datagram too large for the receive buffer is an error, never a short
//! message; connect() sends nothing and filters; a loss raises no error — except
//! the ICMP "port unreachable" a connected socket is told of; and the one-thread
//! UDP server answers the right client, keeps order, survives a panicking
//! handler and stops promptly, freeing its port.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, any_port_v4, wait_until};
use sockstep::trace::{Recorder, Trace};
use sockstep::udp::handlers::{self, DatagramHandler, Echo};
use sockstep::udp::serve::{POLL, UdpServer, UdpStats};
use sockstep::udp::socket::{self, Bound, MAX_PAYLOAD_V4, MAX_PAYLOAD_V6};
use sockstep::{ErrorKind, Side, Step};

/// How long a test waits to be sure that nothing arrives. On loopback a
/// datagram that is coming arrives within microseconds.
const NOTHING_ARRIVES: Duration = Duration::from_millis(300);

/// The IPv6 loopback with port 0.
fn any_port_v6() -> SocketAddr {
    "[::1]:0".parse().expect("literal")
}

/// Whether `[::1]` can be bound here; says SKIPPED loudly when not.
fn ipv6_available(test: &str) -> bool {
    match UdpSocket::bind(any_port_v6()) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED {test}: IPv6 loopback [::1] is unavailable here ({e})");
            false
        }
    }
}

/// socket → bind on `addr`, with a read timeout so no test can hang.
fn bound(addr: SocketAddr, side: Side, trace: &Trace) -> Bound {
    let bound = socket::socket(addr, side, trace)
        .bind()
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    bound
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    bound
}

/// A UDP address on 127.0.0.1 where nothing is bound (right now): bind port 0,
/// note the port, close the socket.
fn unbound_port_v4() -> SocketAddr {
    let socket = UdpSocket::bind(any_port_v4()).expect("bind 127.0.0.1:0");
    socket.local_addr().expect("local_addr")
}

/// A payload of `len` bytes whose every position is recognisable, so a
/// datagram cut short or shifted cannot compare equal.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// --- the steps ----------------------------------------------------------------

/// One exchange through every step on `addr` (port 0): a client's datagram to
/// the server and the server's answer back to where it came from.
fn steps_in_order(addr: SocketAddr) {
    let recorder = Recorder::new();
    let trace = recorder.trace();

    let server = bound(addr, Side::Server, &trace);
    let client = bound(addr, Side::Client, &trace);
    let server_addr = server.local_addr();
    assert_eq!(server_addr.ip(), addr.ip());

    client
        .send_to(b"ping", server_addr)
        .expect("client send_to");
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).expect("server recv_from");
    assert_eq!(&buf[..n], b"ping");
    // Connectionless: every datagram carries its sender, and that is where the
    // answer goes.
    assert_eq!(from, client.local_addr());
    server.send_to(b"pong", from).expect("server send_to");
    let (n, from) = client.recv_from(&mut buf).expect("client recv_from");
    assert_eq!((&buf[..n], from), (&b"pong"[..], server_addr));

    let (server_id, client_id) = (server.id(), client.id());
    drop((server, client));
    let events = recorder.events();
    let steps_of = |id| -> Vec<Step> {
        events
            .iter()
            .filter(|e| e.socket == id)
            .map(|e| e.step)
            .collect()
    };
    assert_eq!(
        steps_of(server_id),
        [
            Step::Socket,
            Step::Bind,
            Step::RecvFrom,
            Step::SendTo,
            Step::Close
        ]
    );
    assert_eq!(
        steps_of(client_id),
        [
            Step::Socket,
            Step::Bind,
            Step::SendTo,
            Step::RecvFrom,
            Step::Close
        ]
    );
    // No connection, so nobody waits to be let in and nothing is handed out.
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.step, Step::Listen | Step::Accept)),
        "UDP never listens or accepts: {events:?}"
    );
}

#[test]
fn udp_steps_work_in_order_on_ipv4() {
    steps_in_order(any_port_v4());
}

#[test]
fn udp_steps_work_in_order_on_ipv6() {
    if ipv6_available("udp_steps_work_in_order_on_ipv6") {
        steps_in_order(any_port_v6());
    }
}

#[test]
fn port_zero_is_reported_back_as_the_real_port_after_bind() {
    let recorder = Recorder::new();
    let server = bound(any_port_v4(), Side::Server, &recorder.trace());
    let port = server.local_addr().port();
    assert_ne!(port, 0, "bind must report the port the OS chose");

    let bind_event = recorder
        .events()
        .into_iter()
        .find(|e| e.step == Step::Bind)
        .expect("a bind event");
    assert_eq!(bind_event.local.map(|a| a.port()), Some(port));
    assert_eq!(
        bind_event.detail.as_deref(),
        Some(format!("port 0 asked; the OS chose {port}").as_str())
    );

    // It is the real port: a datagram sent there arrives.
    let client = bound(any_port_v4(), Side::Client, &Trace::off());
    client
        .send_to(b"here?", SocketAddr::from(([127, 0, 0, 1], port)))
        .expect("send_to");
    let mut buf = [0u8; 8];
    let (n, _) = server.recv_from(&mut buf).expect("recv_from");
    assert_eq!(&buf[..n], b"here?");
}

#[test]
fn second_bind_on_a_held_udp_port_is_address_in_use_and_names_the_endpoint() {
    let held = bound(any_port_v4(), Side::Server, &Trace::off());
    let port = held.local_addr().port();

    let err = socket::socket(held.local_addr(), Side::Server, &Trace::off())
        .bind()
        .expect_err("a second bind on a held UDP port must fail");

    assert_eq!(err.kind(), &ErrorKind::AddressInUse);
    assert_eq!(err.step(), Step::Bind);
    let endpoint = format!("udp://127.0.0.1:{port}");
    assert_eq!(
        err.endpoint().map(ToString::to_string),
        Some(endpoint.clone())
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("bind() {endpoint} failed: address already in use")),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");
}

#[test]
fn a_tcp_listener_and_a_udp_socket_hold_the_same_port_number_at_once() {
    // The seed: a socket is protocol + IP + port. Same IP and port, different
    // protocol: two different sockets, and the kernel lets both exist.
    // Another process may hold the TCP side of the port the OS gave us for
    // UDP; then try another. If sharing were impossible every attempt would fail.
    let (udp, tcp) = (0..10)
        .find_map(|_| {
            let udp = bound(any_port_v4(), Side::Server, &Trace::off());
            TcpListener::bind(udp.local_addr())
                .ok()
                .map(|tcp| (udp, tcp))
        })
        .expect("a TCP listener on the port a UDP socket holds: 10 attempts failed");
    let addr = udp.local_addr();
    assert_eq!(tcp.local_addr().expect("local_addr"), addr);

    // Both are live on that number: a datagram reaches one, a connection the other.
    let client = bound(any_port_v4(), Side::Client, &Trace::off());
    client.send_to(b"udp", addr).expect("send_to");
    let mut buf = [0u8; 8];
    let (n, _) = udp.recv_from(&mut buf).expect("recv_from");
    assert_eq!(&buf[..n], b"udp");
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("TCP connect");
    let (_, peer) = tcp.accept().expect("accept");
    assert_eq!(peer, stream.local_addr().expect("local_addr"));
}

// --- 데이터의 크기에 제한이 있음: the size limit ----------------------------------

/// The largest payload goes whole; one byte more is refused before the kernel
/// is asked, and the kernel itself would have refused it too.
fn largest_payload_goes_whole_and_one_more_is_too_large(addr: SocketAddr, max: usize) {
    let receiver = bound(addr, Side::Server, &Trace::off());
    let sender = bound(addr, Side::Client, &Trace::off());
    let to = receiver.local_addr();

    let largest = pattern(max);
    sender.send_to(&largest, to).expect("the largest datagram");
    // A buffer of exactly `max` bytes: the largest datagram fits it exactly.
    let mut buf = vec![0u8; max];
    let (n, _) = receiver.recv_from(&mut buf).expect("recv the largest");
    assert_eq!(n, max);
    assert!(buf == largest, "the largest datagram arrived changed");

    let err = sender
        .send_to(&pattern(max + 1), to)
        .expect_err("one byte over the limit");
    assert_eq!(
        err.kind(),
        &ErrorKind::DatagramTooLarge { len: max + 1, max }
    );
    assert_eq!(err.step(), Step::SendTo);
    let text = err.to_string();
    assert!(text.contains(&format!("limit of {max}")), "{text}");
    assert!(
        err.io_error().is_none(),
        "refused before any system call: {text}"
    );

    // The same through a connected socket.
    let connected = bound(addr, Side::Client, &Trace::off())
        .connect(to)
        .expect("connect");
    let err = connected
        .send(&pattern(max + 1))
        .expect_err("one byte over, connected");
    assert_eq!(
        err.kind(),
        &ErrorKind::DatagramTooLarge { len: max + 1, max }
    );

    // The limit is the kernel's, not ours: raw std is refused with EMSGSIZE.
    let raw = UdpSocket::bind(addr).expect("raw bind");
    let raw_err = raw
        .send_to(&pattern(max + 1), to)
        .expect_err("the kernel refuses it too");
    assert_eq!(raw_err.raw_os_error(), Some(90), "EMSGSIZE: {raw_err}");

    // Nothing over the limit left the host.
    receiver
        .set_read_timeout(Some(NOTHING_ARRIVES))
        .expect("timeout");
    let err = receiver
        .recv_from(&mut buf)
        .expect_err("nothing more was sent");
    assert_eq!(err.kind(), &ErrorKind::TimedOut);
}

#[test]
fn the_largest_ipv4_payload_65507_goes_whole_and_65508_is_too_large() {
    assert_eq!(MAX_PAYLOAD_V4, 65_535 - 20 - 8);
    largest_payload_goes_whole_and_one_more_is_too_large(any_port_v4(), MAX_PAYLOAD_V4);
}

#[test]
fn the_largest_ipv6_payload_65527_goes_whole_and_65528_is_too_large() {
    assert_eq!(MAX_PAYLOAD_V6, 65_535 - 8);
    if ipv6_available("the_largest_ipv6_payload_65527_goes_whole_and_65528_is_too_large") {
        largest_payload_goes_whole_and_one_more_is_too_large(any_port_v6(), MAX_PAYLOAD_V6);
    }
}

#[test]
fn an_ipv6_socket_sending_to_an_ipv4_mapped_address_is_held_to_the_ipv4_limit() {
    let test = "an_ipv6_socket_sending_to_an_ipv4_mapped_address_is_held_to_the_ipv4_limit";
    if !ipv6_available(test) {
        return;
    }
    let receiver = bound(any_port_v4(), Side::Server, &Trace::off());
    // [::] takes IPv4 too (Linux's default, net.ipv6.bindv6only = 0).
    let sender = bound(
        "[::]:0".parse().expect("literal"),
        Side::Client,
        &Trace::off(),
    );
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", receiver.local_addr().port())
        .parse()
        .expect("literal");

    sender
        .send_to(&pattern(MAX_PAYLOAD_V4), mapped)
        .expect("the IPv4 maximum");
    let mut buf = vec![0u8; MAX_PAYLOAD_V6];
    let (n, _) = receiver.recv_from(&mut buf).expect("recv");
    assert_eq!(n, MAX_PAYLOAD_V4);

    let err = sender
        .send_to(&pattern(MAX_PAYLOAD_V4 + 1), mapped)
        .expect_err("over IPv4's limit, though under IPv6's");
    assert_eq!(
        err.kind(),
        &ErrorKind::DatagramTooLarge {
            len: MAX_PAYLOAD_V4 + 1,
            max: MAX_PAYLOAD_V4
        },
        "{err}"
    );
    assert!(err.io_error().is_none(), "refused before the kernel: {err}");
}

#[test]
fn a_datagram_larger_than_the_buffer_is_an_error_never_a_short_message() {
    let receiver = bound(any_port_v4(), Side::Server, &Trace::off());
    let sender = bound(any_port_v4(), Side::Client, &Trace::off());
    let to = receiver.local_addr();

    sender.send_to(&pattern(100), to).expect("send 100 bytes");
    sender.send_to(b"0123456789", to).expect("send 10 bytes");

    let mut small = [0u8; 10];
    let err = receiver
        .recv_from(&mut small)
        .expect_err("100 bytes do not fit 10");
    assert_eq!(err.kind(), &ErrorKind::DatagramTruncated { buffer: 10 });
    assert_eq!(err.step(), Step::RecvFrom);
    assert_eq!(
        err.endpoint().map(ToString::to_string),
        Some(format!("udp://{}", sender.local_addr()))
    );

    // The cut datagram is gone, and the next one arrives whole — it fits exactly.
    let (n, from) = receiver.recv_from(&mut small).expect("the next datagram");
    assert_eq!(
        (&small[..n], from),
        (&b"0123456789"[..], sender.local_addr())
    );

    // A connected socket's recv() is guarded the same way.
    let connected = bound(any_port_v4(), Side::Client, &Trace::off())
        .connect(sender.local_addr())
        .expect("connect");
    sender
        .send_to(&pattern(11), connected.local_addr())
        .expect("send 11");
    let err = connected
        .recv(&mut small)
        .expect_err("11 bytes do not fit 10");
    assert_eq!(err.kind(), &ErrorKind::DatagramTruncated { buffer: 10 });
}

// --- 비연결형: connect() is no connection -----------------------------------------

#[test]
fn connect_on_udp_sends_nothing() {
    let recorder = Recorder::new();
    let peer = bound(any_port_v4(), Side::Server, &Trace::off());
    let client = bound(any_port_v4(), Side::Client, &recorder.trace())
        .connect(peer.local_addr())
        .expect("connect returns at once: there is no handshake");
    assert_eq!(client.peer_addr(), peer.local_addr());

    peer.set_read_timeout(Some(NOTHING_ARRIVES))
        .expect("timeout");
    let err = peer
        .recv_from(&mut [0u8; 64])
        .expect_err("connect() alone sends no datagram");
    assert_eq!(err.kind(), &ErrorKind::TimedOut);

    // What connect() did do: fix the default peer for send().
    client.send(b"now").expect("send");
    let mut buf = [0u8; 8];
    let (n, from) = peer.recv_from(&mut buf).expect("recv");
    assert_eq!((&buf[..n], from), (&b"now"[..], client.local_addr()));

    let connect = recorder
        .events()
        .into_iter()
        .find(|e| e.step == Step::Connect)
        .expect("a connect event");
    assert_eq!(connect.peer, Some(peer.local_addr()));
    assert!(
        connect
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("no handshake")),
        "{connect:?}"
    );
}

#[test]
fn a_connected_socket_does_not_receive_from_a_third_socket() {
    let peer = bound(any_port_v4(), Side::Client, &Trace::off());
    let receiver = bound(any_port_v4(), Side::Server, &Trace::off())
        .connect(peer.local_addr())
        .expect("connect");
    receiver
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("timeout");
    let to = receiver.local_addr();

    // The third socket sends first, so had its datagram been let through it
    // would be the first one received.
    let third = bound(any_port_v4(), Side::Client, &Trace::off())
        .connect(to)
        .expect("connect the third socket");
    third.send(b"from the third").expect("send");
    peer.send_to(b"from the peer", to).expect("send_to");

    let mut buf = [0u8; 64];
    let n = receiver.recv(&mut buf).expect("recv");
    assert_eq!(&buf[..n], b"from the peer");
    receiver
        .set_read_timeout(Some(NOTHING_ARRIVES))
        .expect("timeout");
    let err = receiver
        .recv(&mut buf)
        .expect_err("the third socket's datagram was dropped");
    assert_eq!(err.kind(), &ErrorKind::TimedOut);

    // Dropped by the kernel, not lost on the way: for the third socket no
    // socket matched, so its kernel was told "port unreachable" — and, being
    // connected itself, it hears of it.
    third.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let err = third.recv(&mut buf).expect_err("port unreachable");
    assert_eq!(err.kind(), &ErrorKind::ConnectionRefused);
}

// --- 데이터가 손실되도 오류가 발생하지 않음: a loss raises no error ----------------------

#[test]
fn sending_where_nothing_is_bound_raises_no_error_unless_the_socket_is_connected() {
    let nobody = unbound_port_v4();

    // Unconnected: the datagram is taken, dropped at the other end, and nobody
    // is told — not at send_to, not at the next recv_from.
    let loose = bound(any_port_v4(), Side::Client, &Trace::off());
    loose
        .send_to(b"anyone?", nobody)
        .expect("send_to where nothing is bound is Ok");
    loose
        .set_read_timeout(Some(NOTHING_ARRIVES))
        .expect("timeout");
    let err = loose
        .recv_from(&mut [0u8; 64])
        .expect_err("nothing comes back");
    assert_eq!(
        err.kind(),
        &ErrorKind::TimedOut,
        "an unconnected socket hears of no loss: {err}"
    );

    // Connected: the send is just as Ok, but the ICMP "port unreachable" the
    // kernel got back is reported at the next recv — the one exception.
    let connected = bound(any_port_v4(), Side::Client, &Trace::off())
        .connect(nobody)
        .expect("connect");
    connected
        .send(b"anyone?")
        .expect("send where nothing is bound is Ok");
    let err = connected
        .recv(&mut [0u8; 64])
        .expect_err("port unreachable");
    assert_eq!(err.kind(), &ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(err.step(), Step::RecvFrom);
    let text = err.to_string();
    assert!(
        text.contains(&format!("udp://127.0.0.1:{}", nobody.port())),
        "the error names the peer nothing is bound at: {text}"
    );
}

// --- the UDP server -----------------------------------------------------------

#[test]
fn the_echo_server_answers_each_datagram_to_the_client_that_sent_it() {
    const CLIENTS: usize = 6;
    const ROUNDS: usize = 20;
    let server = bound(any_port_v4(), Side::Server, &Trace::off())
        .serve(Echo)
        .expect("serve");
    let to = server.local_addr();

    let (done_tx, done_rx) = mpsc::channel();
    for c in 0..CLIENTS {
        let done_tx = done_tx.clone();
        thread::spawn(move || {
            let client = bound(any_port_v4(), Side::Client, &Trace::off());
            let mut buf = [0u8; 64];
            let result = (0..ROUNDS).try_for_each(|r| {
                let msg = format!("client {c} round {r}");
                client.send_to(msg.as_bytes(), to)?;
                let (n, from) = client.recv_from(&mut buf)?;
                assert_eq!(from, to, "the answer comes from the server");
                assert_eq!(
                    String::from_utf8_lossy(&buf[..n]),
                    msg,
                    "client {c} got another client's answer"
                );
                Ok::<(), sockstep::Error>(())
            });
            let _ = done_tx.send((c, result.map_err(|e| e.to_string())));
        });
    }
    drop(done_tx);
    for _ in 0..CLIENTS {
        // A client thread that panicked drops its sender; recv then fails too.
        let (c, result) = done_rx
            .recv_timeout(IO_TIMEOUT * 2)
            .expect("every client finishes (a panic above says why one did not)");
        result.unwrap_or_else(|e| panic!("client {c}: {e}"));
    }

    let stats = server.shutdown();
    let total = (CLIENTS * ROUNDS) as u64;
    assert_eq!(
        (stats.received, stats.replied, stats.errors, stats.panics),
        (total, total, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn the_recorder_keeps_one_paced_senders_datagrams_in_order() {
    const COUNT: usize = 200;
    let recorder = handlers::Recorder::new();
    let server = bound(any_port_v4(), Side::Server, &Trace::off())
        .serve(recorder.clone())
        .expect("serve");
    let sender = bound(any_port_v4(), Side::Client, &Trace::off());
    for i in 0..COUNT {
        sender
            .send_to(format!("datagram {i}").as_bytes(), server.local_addr())
            .expect("send_to");
        // Paced, so the server's receive buffer never fills (shared/FACTS.md:
        // an unread burst of 2,000 kept only 256).
        thread::sleep(Duration::from_micros(200));
    }

    let kept = recorder
        .wait_for(COUNT, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("{} of {COUNT} arrived: {e}", recorder.received().len()));
    assert_eq!(kept.len(), COUNT);
    for (i, datagram) in kept.iter().enumerate() {
        assert_eq!(datagram.from, sender.local_addr());
        assert_eq!(
            String::from_utf8_lossy(&datagram.payload),
            format!("datagram {i}"),
            "out of order at {i}"
        );
    }
    assert_eq!(recorder.not_kept(), 0);
    assert_eq!(server.shutdown().received, COUNT as u64);
}

/// An echo handler that shows whether its server thread is still there: it
/// notes the kernel's id of the thread that calls it, and holds a count that
/// drops when the server thread, which owns the handler, finishes.
struct Watched {
    /// Never read: holding it is the point.
    _alive: Arc<()>,
    thread: Arc<Mutex<Option<String>>>,
}

impl DatagramHandler for Watched {
    fn handle(&self, from: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        // "/proc/thread-self" links to "PID/task/TID" of the calling thread.
        let me = std::fs::read_link("/proc/thread-self")
            .map(|p| p.display().to_string())
            .ok();
        *self.thread.lock().expect("not poisoned") = me;
        Echo.handle(from, payload)
    }
}

/// Starts a [`Watched`] echo server and checks it answers; returns the server,
/// the count that shows its thread's work is not done, and its thread's /proc path.
fn watched_server() -> (UdpServer, Arc<()>, String) {
    let alive = Arc::new(());
    let thread = Arc::new(Mutex::new(None));
    let server = bound(any_port_v4(), Side::Server, &Trace::off())
        .serve(Watched {
            _alive: alive.clone(),
            thread: thread.clone(),
        })
        .expect("serve");
    let client = bound(any_port_v4(), Side::Client, &Trace::off());
    client
        .send_to(b"up?", server.local_addr())
        .expect("send_to");
    let mut buf = [0u8; 8];
    let (n, _) = client.recv_from(&mut buf).expect("echo");
    assert_eq!(&buf[..n], b"up?");
    let task = thread
        .lock()
        .expect("not poisoned")
        .clone()
        .expect("the handler saw its thread");
    assert_eq!(
        Arc::strong_count(&alive),
        2,
        "the server thread holds the handler"
    );
    (server, alive, format!("/proc/{task}"))
}

/// After a server has stopped: its thread is gone and its port is free.
fn assert_stopped(addr: SocketAddr, alive: &Arc<()>, task: &str) {
    assert_eq!(
        Arc::strong_count(alive),
        1,
        "the server thread still holds its handler"
    );
    // join() returns once the thread has cleared its id; the kernel removes its
    // /proc entry a moment later.
    assert!(
        wait_until(Duration::from_secs(1), || !std::path::Path::new(task)
            .exists()),
        "the server thread {task} is still there"
    );
    socket::socket(addr, Side::Server, &Trace::off())
        .bind()
        .unwrap_or_else(|e| panic!("the stopped server's port is still held: {e}"));
}

#[test]
fn shutdown_returns_promptly_joins_the_thread_and_frees_the_port() {
    let (server, alive, task) = watched_server();
    let addr = server.local_addr();
    // Let the server thread settle into a blocking recv_from.
    thread::sleep(Duration::from_millis(50));

    let started = Instant::now();
    let stats = server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    eprintln!("UdpServer::shutdown took {took:?}");
    assert_eq!((stats.received, stats.replied), (1, 1), "{stats:?}");
    assert_stopped(addr, &alive, &task);
}

#[test]
fn dropping_the_server_stops_it_and_frees_the_port() {
    let (server, alive, task) = watched_server();
    let addr = server.local_addr();
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_stopped(addr, &alive, &task);
}

#[test]
fn an_idle_server_counts_its_wake_ups_as_nothing_not_as_errors() {
    let server = bound(any_port_v4(), Side::Server, &Trace::off())
        .serve(Echo)
        .expect("serve");
    // Three of the server's read timeouts pass with nobody sending.
    thread::sleep(POLL * 3 + POLL / 2);
    assert_eq!(server.shutdown(), UdpStats::default());
}

/// Panics on a datagram that is `!`; echoes anything else.
fn panic_on_bang(_from: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    if payload == b"!" {
        panic!("asked to panic by the client");
    }
    Some(payload.to_vec())
}

#[test]
fn a_handler_panic_is_counted_and_the_server_keeps_serving() {
    let server = bound(any_port_v4(), Side::Server, &Trace::off())
        .serve(panic_on_bang)
        .expect("serve");
    let client = bound(any_port_v4(), Side::Client, &Trace::off());
    client.send_to(b"!", server.local_addr()).expect("send_to");
    assert!(
        wait_until(IO_TIMEOUT, || server.stats().panics == 1),
        "panic not counted: {:?}",
        server.stats()
    );

    client
        .send_to(b"still there?", server.local_addr())
        .expect("send_to");
    let mut buf = [0u8; 64];
    // The first answer is to the second datagram: the panicking one got none.
    let (n, _) = client
        .recv_from(&mut buf)
        .expect("the server still answers");
    assert_eq!(&buf[..n], b"still there?");

    let stats = server.shutdown();
    assert_eq!(
        (stats.received, stats.replied, stats.panics),
        (2, 1, 1),
        "{stats:?}"
    );
}
