//! WebSocket properties and behaviours, in memory and over real loopback sockets.
//!
//! 1. The helpers: SHA-1 fed in any split equals SHA-1 in one go; Base64 round
//!    trips, and every text it accepts is the one text for those bytes.
//! 2. The pure decoder: any sequence of messages, fragmented any way, with
//!    pings between fragments, cut into any pieces, comes out intact and in
//!    order; arbitrary bytes never panic and end in messages or a close code.
//! 3. Loopback: the same through a real server, the client's bytes written in
//!    random pieces; a catalogue of invalid frames, each answered by a real
//!    server with its close code; the client's own checks; pings, timeouts,
//!    the close handshake, two threads sending at once, refused upgrades.
//!
//! Every socket has timeouts ([`common::TIMEOUTS`]); every loop is bounded.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use sockstep::ErrorKind;
use sockstep::http::{Limits, Parsed as HttpParsed, parse_request, parse_response};
use sockstep::step::{Side, Step};
use sockstep::tcp::serve::Server;
use sockstep::tcp::{Connection, server};
use sockstep::trace::Trace;
use sockstep::ws::frame::{Parsed, parse_frame};
use sockstep::ws::sha1::{Sha1, sha1};
use sockstep::ws::{
    CloseCode, Config, Decoder, Echo, Frame, Message, Opcode, Upgrade, WebSocket, base64, handshake,
};

use common::{IO_TIMEOUT, TIMEOUTS};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A config for tests: timeouts of [`IO_TIMEOUT`], a short close wait.
fn ws_config() -> Config {
    Config {
        timeouts: TIMEOUTS,
        connect_timeout: IO_TIMEOUT,
        handshake_timeout: IO_TIMEOUT,
        close_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

fn echo_server() -> Server {
    common::serve(
        16,
        common::config(16),
        Echo {
            config: ws_config(),
        },
        &Trace::off(),
    )
}

/// Cuts `wire` into pieces whose sizes cycle through `sizes`.
fn pieces<'a>(wire: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// A masked frame as a client writes it, with a chosen first byte (FIN, RSV,
/// opcode) and the length in its shortest form.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut wire = Frame::new(Opcode::Binary, payload.to_vec())
        .masked([0x11, 0x22, 0x33, 0x44])
        .to_bytes();
    wire[0] = b0;
    wire
}

/// A raw TCP client that has done the upgrade by hand, and what came after the 101.
fn raw_upgrade(addr: SocketAddr) -> (Connection, Vec<u8>) {
    let mut conn = common::connect(addr, &Trace::off());
    conn.set_nodelay(true).unwrap();
    let key = handshake::new_key();
    let request = handshake::request(&addr.to_string(), "/", &key);
    conn.write_all(&request.to_bytes().unwrap()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..64 {
        if let HttpParsed::Complete { message, consumed } =
            parse_response(&buf, "GET", &Limits::default()).unwrap()
        {
            handshake::check_response(&message, &key).unwrap();
            return (conn, buf.split_off(consumed));
        }
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "the server closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("no 101 after 64 reads");
}

/// What a raw client saw of a server until its close frame: the messages
/// before it, the close code, and whether the server then ended the stream.
struct Ending {
    before: Vec<Message>,
    code: CloseCode,
    ended: bool,
}

/// Reads frames as a client until the server's close frame.
fn read_until_close(conn: &mut Connection, leftover: &[u8]) -> Ending {
    let mut decoder = Decoder::new(Side::Client, 1 << 20, 1 << 20);
    decoder.feed(leftover);
    let mut before = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        while let Some(message) = decoder
            .next_message()
            .expect("the server writes valid frames")
        {
            if let Message::Close { code, .. } = message {
                // Bounded: every read waits at most the read timeout.
                let ended = (0..1000).any(|_| matches!(conn.read(&mut chunk), Ok(0) | Err(_)));
                return Ending {
                    before,
                    code,
                    ended,
                };
            }
            before.push(message);
        }
        let n = conn.read(&mut chunk).expect("read the server's answer");
        assert!(n > 0, "the server closed without a close frame");
        decoder.feed(&chunk[..n]);
    }
    panic!("no close frame after 1000 reads");
}

// ---------------------------------------------------------------------------
// 1. SHA-1 and Base64
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sha1_in_any_split_equals_sha1_in_one_go(
        data in vec(any::<u8>(), 0..600),
        cuts in vec(1usize..130, 1..20),
    ) {
        let mut hasher = Sha1::new();
        for piece in pieces(&data, &cuts) {
            hasher.update(piece);
        }
        if data.is_empty() {
            hasher.update(&[]);
        }
        prop_assert_eq!(hasher.finish(), sha1(&data));
    }

    #[test]
    fn base64_round_trips(data in vec(any::<u8>(), 0..300)) {
        let text = base64::encode(&data);
        prop_assert_eq!(text.len() % 4, 0);
        prop_assert_eq!(base64::decode(&text).unwrap(), data);
    }

    #[test]
    fn base64_accepts_only_canonical_text(text in "[A-Za-z0-9+/=]{0,16}") {
        if let Ok(bytes) = base64::decode(&text) {
            prop_assert_eq!(base64::encode(&bytes), text);
        }
    }
}

// ---------------------------------------------------------------------------
// 2. The pure decoder
// ---------------------------------------------------------------------------

fn data_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        ".{0,60}".prop_map(Message::Text),
        vec(any::<u8>(), 0..300).prop_map(Message::Binary),
    ]
}

fn any_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        3 => data_message(),
        1 => vec(any::<u8>(), 0..=125).prop_map(Message::Ping),
        1 => vec(any::<u8>(), 0..=125).prop_map(Message::Pong),
    ]
}

/// One message to send: how to fragment it, and maybe a ping to slip in after
/// its first fragment.
fn item() -> impl Strategy<Value = (Message, usize, Option<Vec<u8>>)> {
    (
        any_message(),
        1usize..80,
        proptest::option::of(vec(any::<u8>(), 0..8)),
    )
}

/// The wire for `items` as `sender` writes it (a client masks with `key`), and
/// the messages a receiver must see, in order, ending with a close.
fn conversation(
    items: &[(Message, usize, Option<Vec<u8>>)],
    sender: Side,
    key: [u8; 4],
) -> (Vec<u8>, Vec<Message>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let put = |frame: Frame, wire: &mut Vec<u8>| match sender {
        Side::Client => frame.masked(key).write_to(wire),
        Side::Server => frame.write_to(wire),
    };
    for (message, frame_size, ping) in items {
        let frames = message.to_frames(*frame_size);
        let count = frames.len();
        for (i, frame) in frames.into_iter().enumerate() {
            put(frame, &mut wire);
            if let (0, Some(p)) = (i, ping) {
                put(Frame::new(Opcode::Ping, p.clone()), &mut wire);
            }
        }
        // A ping after the first of several fragments overtakes the message.
        match ping {
            Some(p) if count > 1 => {
                expected.push(Message::Ping(p.clone()));
                expected.push(message.clone());
            }
            Some(p) => {
                expected.push(message.clone());
                expected.push(Message::Ping(p.clone()));
            }
            None => expected.push(message.clone()),
        }
    }
    put(Frame::close(CloseCode::NORMAL, "done"), &mut wire);
    expected.push(Message::Close {
        code: CloseCode::NORMAL,
        reason: "done".into(),
    });
    (wire, expected)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_messages_any_fragmentation_any_pieces_arrive_intact_and_in_order(
        items in vec(item(), 0..12),
        cuts in vec(1usize..200, 1..30),
        from_client in any::<bool>(),
        key in any::<[u8; 4]>(),
    ) {
        let sender = if from_client { Side::Client } else { Side::Server };
        let receiver = if from_client { Side::Server } else { Side::Client };
        let (wire, expected) = conversation(&items, sender, key);
        let mut decoder = Decoder::new(receiver, 1 << 20, 1 << 20);
        let mut got = Vec::new();
        for piece in pieces(&wire, &cuts) {
            decoder.feed(piece);
            while let Some(message) = decoder.next_message().unwrap() {
                got.push(message);
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_end_in_frames_or_a_close_code(
        bytes in vec(any::<u8>(), 0..400),
        server in any::<bool>(),
        max in 0usize..300,
    ) {
        let receiver = if server { Side::Server } else { Side::Client };
        let mut rest = &bytes[..];
        for _ in 0..=bytes.len() {
            match parse_frame(rest, receiver, max) {
                Ok(Parsed::Complete { frame, consumed }) => {
                    prop_assert!(consumed >= 2 && consumed <= rest.len());
                    prop_assert!(frame.payload.len() <= max);
                    rest = &rest[consumed..];
                }
                Ok(Parsed::Partial) => break,
                Err(e) => {
                    prop_assert!([1002, 1007, 1009].contains(&e.code().0), "{}", e);
                    break;
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_in_any_pieces_never_panic_the_decoder(
        bytes in vec(any::<u8>(), 0..400),
        cuts in vec(1usize..50, 1..10),
        server in any::<bool>(),
    ) {
        let receiver = if server { Side::Server } else { Side::Client };
        let mut decoder = Decoder::new(receiver, 200, 300);
        'feeding: for piece in pieces(&bytes, &cuts) {
            decoder.feed(piece);
            loop {
                match decoder.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!([1002, 1007, 1009].contains(&e.code().0), "{}", e);
                        break 'feeding;
                    }
                }
            }
            prop_assert!(decoder.buffered() <= 14 + 200 + 50);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Loopback
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The client's bytes go out in pieces of random sizes (TCP_NODELAY, one
    /// write each); the server reassembles, answers pings, and echoes every
    /// data message intact and in order.
    #[test]
    fn messages_written_in_random_pieces_come_back_from_a_real_server(
        items in vec((data_message(), 1usize..100, proptest::option::of(vec(any::<u8>(), 0..8))), 1..10),
        cuts in vec(1usize..300, 1..20),
    ) {
        let server = echo_server();
        let (conn, leftover) = raw_upgrade(server.local_addr());
        let mut raw = conn.try_clone().unwrap();
        let (mut wire, expected) = conversation(&items, Side::Client, [9, 8, 7, 6]);
        // Leave the close to `WebSocket::close`.
        let close_len = Frame::close(CloseCode::NORMAL, "done").to_bytes().len() + 4;
        wire.truncate(wire.len() - close_len);
        let writer = thread::spawn(move || {
            for piece in pieces(&wire, &cuts) {
                raw.write_all(piece).unwrap();
            }
        });
        let mut ws = WebSocket::from_upgraded(conn, &leftover, &ws_config()).unwrap();
        let want: Vec<Message> = expected
            .into_iter()
            .filter(|m| matches!(m, Message::Text(_) | Message::Binary(_)))
            .collect();
        let mut got = Vec::new();
        while got.len() < want.len() {
            match ws.recv().unwrap() {
                Message::Pong(_) => {} // the server's answers to our pings
                other => got.push(other),
            }
        }
        writer.join().unwrap();
        prop_assert_eq!(got, want);
        prop_assert_eq!(ws.close(CloseCode::NORMAL, "").unwrap().0, CloseCode::NORMAL);
        let stats = server.shutdown();
        prop_assert_eq!(stats.accepted, 1);
    }
}

/// Invalid frames, each with the close code a server must answer it with.
fn catalogue() -> Vec<(&'static str, Vec<u8>, u16)> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let with_key = |mut header: Vec<u8>, payload: &[u8]| {
        header.extend_from_slice(&key);
        let mut masked = payload.to_vec();
        sockstep::ws::frame::apply_mask(&mut masked, key);
        header.extend(masked);
        header
    };
    let close = |payload: &[u8]| client_frame(0x88, payload);
    let mut cases = vec![
        ("RSV1 without an extension", client_frame(0xC1, b"hi"), 1002),
        ("RSV2", client_frame(0xA1, b"hi"), 1002),
        ("RSV3", client_frame(0x91, b"hi"), 1002),
        ("reserved data opcode 3", client_frame(0x83, b""), 1002),
        ("reserved control opcode 0xB", client_frame(0x8B, b""), 1002),
        ("fragmented ping", client_frame(0x09, b"x"), 1002),
        ("ping of 126 bytes", client_frame(0x89, &[0; 126]), 1002),
        ("close of 126 bytes", client_frame(0x88, &[b'a'; 126]), 1002),
        ("unmasked text", vec![0x81, 0x02, b'h', b'i'], 1002),
        (
            "16-bit length for 5 bytes",
            with_key(vec![0x82, 0xFE, 0x00, 0x05], b"hello"),
            1002,
        ),
        (
            "64-bit length for 300 bytes",
            with_key(vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0x01, 0x2C], &[0; 300]),
            1002,
        ),
        (
            "64-bit length with the top bit set",
            vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0x10],
            1002,
        ),
        (
            "a 2 MiB frame announced",
            vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4],
            1009,
        ),
        ("text not UTF-8", client_frame(0x81, &[0xC3, 0x28]), 1007),
        (
            "a first fragment not UTF-8",
            client_frame(0x01, &[b'a', 0xFF]),
            1007,
        ),
        (
            "text ending inside a character",
            [client_frame(0x01, &[0xE2, 0x82]), client_frame(0x80, b"")].concat(),
            1007,
        ),
        (
            "continuation with nothing to continue",
            client_frame(0x80, b"x"),
            1002,
        ),
        (
            "text inside a fragmented binary message",
            [client_frame(0x02, b"a"), client_frame(0x81, b"b")].concat(),
            1002,
        ),
        ("close of one byte", close(&[0x03]), 1002),
        ("close reason not UTF-8", close(&[0x03, 0xE8, 0xFF]), 1007),
    ];
    // 1 MiB of fragments, then the header of one more: too big before its payload.
    let mut big = client_frame(0x02, &vec![7; 1 << 20]);
    big.extend(with_key(vec![0x80, 0xFE, 0x01, 0x00], &[])[..8].to_vec());
    cases.push(("a message over 1 MiB in fragments", big, 1009));
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let name: &'static str = Box::leak(format!("close code {code}").into_boxed_str());
        cases.push((name, close(&code.to_be_bytes()), 1002));
    }
    cases
}

#[test]
fn a_real_server_answers_each_invalid_frame_with_its_close_code() {
    let server = echo_server();
    let cases = catalogue();
    for (name, wire, code) in &cases {
        let (mut conn, leftover) = raw_upgrade(server.local_addr());
        // One good message first: the connection works until the bad frame.
        conn.write_all(&client_frame(0x81, b"ok")).unwrap();
        conn.write_all(wire).unwrap();
        let ending = read_until_close(&mut conn, &leftover);
        assert_eq!(ending.before, [Message::Text("ok".into())], "{name}");
        assert_eq!(ending.code.0, *code, "{name}");
        assert!(
            ending.ended,
            "{name}: the server should end the stream after its close"
        );
    }
    assert!(common::wait_until(IO_TIMEOUT, || {
        let stats = server.stats();
        stats.served + stats.errors >= cases.len() as u64
    }));
    let errors = server.recent_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("WebSocket closed with code 1009")),
        "{errors:?}"
    );
    server.shutdown();
}

#[test]
fn a_server_echoes_the_close_code_it_is_sent() {
    let server = echo_server();
    for code in [1000u16, 1001, 1003, 1011, 1012, 1014, 3000, 4999] {
        let (mut conn, leftover) = raw_upgrade(server.local_addr());
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice("why ✓".as_bytes());
        conn.write_all(&client_frame(0x88, &payload)).unwrap();
        let ending = read_until_close(&mut conn, &leftover);
        assert_eq!(ending.code, CloseCode(code));
        assert!(ending.ended, "the server closes TCP first");
    }
    // An empty close frame is answered with an empty one: "no status", 1005.
    let (mut conn, leftover) = raw_upgrade(server.local_addr());
    conn.write_all(&client_frame(0x88, b"")).unwrap();
    assert_eq!(
        read_until_close(&mut conn, &leftover).code,
        CloseCode::NO_STATUS
    );
    server.shutdown();
}

/// What a [`raw_server`] does after the upgrade and its bytes.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Closes TCP at once.
    Vanishes,
    /// Reads until the client's close frame, reports its code, closes TCP.
    ReportsClose,
    /// The same, but never answers and keeps the connection open (it is
    /// returned, and closes when the test drops it).
    StaysSilent,
}

type RawServer = thread::JoinHandle<(Option<CloseCode>, Option<Connection>)>;

/// A raw server that answers the upgrade, writes `then`, and does `after`.
fn raw_server(then: Vec<u8>, after: After) -> (SocketAddr, RawServer) {
    let listening = server::socket(common::any_port_v4(), &Trace::off())
        .bind()
        .unwrap()
        .listen(4);
    let addr = listening.local_addr();
    let handle = thread::spawn(move || {
        let mut conn = listening.accept().unwrap();
        conn.set_timeouts(TIMEOUTS).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (request, rest) = loop {
            if let HttpParsed::Complete { message, consumed } =
                parse_request(&buf, &Limits::default()).unwrap()
            {
                break (message, buf.split_off(consumed));
            }
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        };
        let answer = handshake::accept(&request).unwrap();
        conn.write_all(&answer.to_bytes().unwrap()).unwrap();
        conn.write_all(&then).unwrap();
        if after == After::Vanishes {
            return (None, None);
        }
        let mut decoder = Decoder::new(Side::Server, 1 << 20, 1 << 20);
        decoder.feed(&rest);
        let mut code = None;
        for _ in 0..100 {
            match decoder.next_message().unwrap() {
                Some(Message::Close { code: c, .. }) => {
                    code = Some(c);
                    break;
                }
                Some(_) => {}
                None => match conn.read(&mut chunk) {
                    Ok(n) if n > 0 => decoder.feed(&chunk[..n]),
                    _ => break,
                },
            }
        }
        (code, (after == After::StaysSilent).then_some(conn))
    });
    (addr, handle)
}

#[test]
fn a_client_refuses_what_a_server_may_not_send() {
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a masked frame",
            Frame::new(Opcode::Text, b"hi".to_vec())
                .masked([1, 2, 3, 4])
                .to_bytes(),
            1002,
        ),
        (
            "text not UTF-8",
            Frame::new(Opcode::Text, vec![0xFF]).to_bytes(),
            1007,
        ),
        (
            "a frame over the client's maximum",
            Frame::new(Opcode::Binary, vec![0; 2000]).to_bytes(),
            1009,
        ),
    ];
    for (name, wire, code) in cases {
        let (addr, server) = raw_server(wire, After::ReportsClose);
        let config = Config {
            max_frame: 1000,
            max_message: 1000,
            ..ws_config()
        };
        let mut ws = WebSocket::connect(addr, "/", &config, &Trace::off()).unwrap();
        let e = ws.recv().expect_err(name);
        assert_eq!(
            e.kind(),
            &ErrorKind::WebSocket {
                code,
                reason: match code {
                    1002 => "server frame masked",
                    1007 => "text message not valid UTF-8",
                    _ => "frame payload over the maximum",
                }
                .into()
            },
            "{name}"
        );
        assert_eq!(e.step(), Step::Frame);
        assert_eq!(
            e.endpoint().map(ToString::to_string),
            Some(format!("tcp://{addr}"))
        );
        assert!(e.to_string().contains("hint:"), "{e}");
        drop(ws);
        assert_eq!(server.join().unwrap().0, Some(CloseCode(code)), "{name}");
    }
}

#[test]
fn pings_are_answered_with_the_same_bytes_both_ways() {
    // Client pings the echo server.
    let server = echo_server();
    let mut ws = WebSocket::connect(server.local_addr(), "/", &ws_config(), &Trace::off()).unwrap();
    ws.ping(b"are you there?").unwrap();
    assert_eq!(
        ws.recv().unwrap(),
        Message::Pong(b"are you there?".to_vec())
    );
    assert!(
        ws.ping(&[0; 126]).is_err(),
        "a ping carries at most 125 bytes"
    );
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.shutdown();

    // A server pings the client; the client's recv answers by itself.
    let pinger = Upgrade::new(ws_config(), |mut ws: WebSocket| {
        ws.ping(b"tick")?;
        let pong = ws.recv()?;
        ws.send_text(&format!("{pong:?}"))?;
        ws.close(CloseCode::NORMAL, "").map(|_| ())
    });
    let server = common::serve(4, common::config(4), pinger, &Trace::off());
    let mut ws = WebSocket::connect(server.local_addr(), "/", &ws_config(), &Trace::off()).unwrap();
    assert_eq!(
        ws.recv().unwrap(),
        Message::Text(format!("{:?}", Message::Pong(b"tick".to_vec())))
    );
    assert!(matches!(
        ws.recv().unwrap(),
        Message::Close {
            code: CloseCode::NORMAL,
            ..
        }
    ));
    let stats = server.shutdown();
    assert_eq!((stats.served, stats.errors), (1, 0), "{stats:?}");
}

#[test]
fn our_client_fragments_any_way_and_the_server_reassembles() {
    let server = echo_server();
    let mut ws = WebSocket::connect(server.local_addr(), "/", &ws_config(), &Trace::off()).unwrap();
    let text = "a–z, ä, 日本, 🦀 ".repeat(50);
    for size in [1, 2, 3, 7, 125, 126, 1000, usize::MAX] {
        ws.send_fragmented(&Message::Text(text.clone()), size)
            .unwrap();
        assert_eq!(
            ws.recv().unwrap(),
            Message::Text(text.clone()),
            "frames of {size}"
        );
    }
    let big = vec![0x5A; 1 << 20];
    ws.send_fragmented(&Message::Binary(big.clone()), 100_000)
        .unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Binary(big));
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.shutdown();
}

#[test]
fn a_message_over_the_servers_maximum_gets_1009() {
    let small = Echo {
        config: Config {
            max_message: 1000,
            ..ws_config()
        },
    };
    let server = common::serve(4, common::config(4), small, &Trace::off());
    let mut ws = WebSocket::connect(server.local_addr(), "/", &ws_config(), &Trace::off()).unwrap();
    ws.send_binary(&[1; 1000]).unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Binary(vec![1; 1000]));
    ws.send_fragmented(&Message::Binary(vec![2; 1001]), 500)
        .unwrap();
    assert_eq!(
        ws.recv().unwrap(),
        Message::Close {
            code: CloseCode::MESSAGE_TOO_BIG,
            reason: "message over the maximum".into()
        }
    );
    let e = ws.send_text("late").unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WebSocket { code: 1009, .. }),
        "{e}"
    );
    server.shutdown();
}

#[test]
fn recv_times_out_without_losing_anything_then_continues() {
    let server = echo_server();
    let config = Config {
        timeouts: sockstep::tcp::Timeouts {
            read: Some(Duration::from_millis(200)),
            write: Some(IO_TIMEOUT),
        },
        ..ws_config()
    };
    let mut ws = WebSocket::connect(server.local_addr(), "/", &config, &Trace::off()).unwrap();
    let started = Instant::now();
    let e = ws.recv().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::TimedOut);
    assert!(started.elapsed() < IO_TIMEOUT);
    ws.send_text("still here").unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("still here".into()));
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.shutdown();
}

#[test]
fn close_gives_up_on_a_silent_peer_after_close_timeout() {
    // The peer upgrades, then neither reads nor answers.
    let (addr, server) = raw_server(Vec::new(), After::StaysSilent);
    let config = Config {
        close_timeout: Duration::from_millis(300),
        ..ws_config()
    };
    let ws = WebSocket::connect(addr, "/", &config, &Trace::off()).unwrap();
    let started = Instant::now();
    let e = ws.close(CloseCode::GOING_AWAY, "bye").unwrap_err();
    assert_eq!((e.step(), e.kind()), (Step::Close, &ErrorKind::TimedOut));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Our close frame did go out.
    assert_eq!(server.join().unwrap().0, Some(CloseCode::GOING_AWAY));
}

#[test]
fn nothing_may_be_sent_after_a_close_and_recv_then_says_it_is_over() {
    let server = echo_server();
    let (mut reader, writer) =
        WebSocket::connect(server.local_addr(), "/", &ws_config(), &Trace::off())
            .unwrap()
            .split();
    writer.close(CloseCode::NORMAL, "done").unwrap();
    writer.close(CloseCode::NORMAL, "again").unwrap(); // a second close does nothing
    let e = writer.send_text("too late").unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WebSocket { code: 1000, .. }),
        "{e}"
    );
    assert_eq!(
        reader.recv().unwrap(),
        Message::Close {
            code: CloseCode::NORMAL,
            reason: String::new()
        }
    );
    let e = reader.recv().unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WebSocket { code: 1000, .. }),
        "{e}"
    );
    assert!(writer.close(CloseCode(1005), "").is_ok());
    assert!(
        writer.close(CloseCode(1006), "").is_err(),
        "1006 may not be sent"
    );
    server.shutdown();
}

#[test]
fn a_peer_that_vanishes_is_1006_or_a_truncated_frame() {
    let hello = Frame::new(Opcode::Text, b"hello".to_vec()).to_bytes();
    // Gone between frames: no close frame, 1006.
    let (addr, server) = raw_server(hello.clone(), After::Vanishes);
    let mut ws = WebSocket::connect(addr, "/", &ws_config(), &Trace::off()).unwrap();
    server.join().unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("hello".into()));
    let e = ws.recv().unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WebSocket { code: 1006, .. }),
        "{e}"
    );
    let again = ws.recv().unwrap_err();
    assert!(
        matches!(again.kind(), ErrorKind::WebSocket { code: 1006, .. }),
        "{again}"
    );
    // Gone inside a frame: the bytes that came are reported, not handed out.
    let (addr, server) = raw_server(hello[..4].to_vec(), After::Vanishes);
    let mut ws = WebSocket::connect(addr, "/", &ws_config(), &Trace::off()).unwrap();
    server.join().unwrap();
    let e = ws.recv().unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::TruncatedFrame { got: 4 }, "{e}");
}

#[test]
fn several_threads_send_at_once_and_no_message_is_torn() {
    const THREADS: usize = 4;
    const EACH: usize = 50;
    let server = echo_server();
    let (mut reader, writer) =
        WebSocket::connect(server.local_addr(), "/", &ws_config(), &Trace::off())
            .unwrap()
            .split();
    let writer = Arc::new(writer);
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let writer = writer.clone();
            thread::spawn(move || {
                for i in 0..EACH {
                    let text = format!("{t}:{i}:{}", "x".repeat(100 + i * 37));
                    writer.send_fragmented(&Message::Text(text), 64).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0usize; THREADS];
    for _ in 0..THREADS * EACH {
        let Message::Text(text) = reader.recv().unwrap() else {
            panic!("only text was sent");
        };
        let mut parts = text.splitn(3, ':');
        let t: usize = parts.next().unwrap().parse().unwrap();
        let i: usize = parts.next().unwrap().parse().unwrap();
        assert_eq!(
            parts.next().unwrap(),
            "x".repeat(100 + i * 37),
            "message {t}:{i} intact"
        );
        assert_eq!(i, next[t], "thread {t}'s messages in order");
        next[t] += 1;
    }
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(next, [EACH; THREADS]);
    writer.close(CloseCode::NORMAL, "").unwrap();
    assert!(matches!(reader.recv().unwrap(), Message::Close { .. }));
    server.shutdown();
}

#[test]
fn a_server_refuses_bad_upgrades_with_400_or_426() {
    let server = echo_server();
    let addr = server.local_addr();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    // (request, status, a header the answer must carry)
    type Case = (String, u16, Option<(&'static str, &'static str)>);
    let cases: Vec<Case> = vec![
        (
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
            426,
            Some(("Upgrade", "websocket")),
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 8\r\n\r\n"
            ),
            426,
            Some(("Sec-WebSocket-Version", "13")),
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
            None,
        ),
        (
            format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
            ),
            400,
            None,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".into(),
            413,
            None,
        ),
        ("GET / HTTP/1.1\nHost: x\r\n\r\n".into(), 400, None),
    ];
    for (request, status, header) in &cases {
        let mut conn = common::connect(addr, &Trace::off());
        conn.write_all(request.as_bytes()).unwrap();
        let wire = common::read_to_eof(&mut conn).expect("the server answers, then closes");
        let HttpParsed::Complete { message, .. } =
            parse_response(&wire, "GET", &Limits::default()).unwrap()
        else {
            panic!("a whole answer to {request:?}");
        };
        assert_eq!(message.status, *status, "{request:?}");
        assert!(!message.body.is_empty(), "the body says why");
        if let Some((name, value)) = header {
            assert_eq!(message.headers.get(name), Some(*value), "{request:?}");
        }
    }
    assert!(common::wait_until(IO_TIMEOUT, || {
        let stats = server.stats();
        stats.served + stats.errors >= cases.len() as u64
    }));
    let errors = server.recent_errors();
    assert!(
        errors.iter().any(|e| e.starts_with("upgrade tcp://")),
        "{errors:?}"
    );
    server.shutdown();
}

#[test]
fn a_client_reports_a_refusal_with_the_servers_status_and_words() {
    let listening = server::socket(common::any_port_v4(), &Trace::off())
        .bind()
        .unwrap()
        .listen(4);
    let addr = listening.local_addr();
    let peer = thread::spawn(move || {
        let mut conn = listening.accept().unwrap();
        conn.set_timeouts(TIMEOUTS).unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).unwrap();
        conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nno such room\n")
            .unwrap();
    });
    let e = WebSocket::connect(addr, "/room/9", &ws_config(), &Trace::off()).unwrap_err();
    peer.join().unwrap();
    assert_eq!(e.step(), Step::Upgrade);
    assert!(
        matches!(e.kind(), ErrorKind::Http { status: 404, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("no such room"), "{e}");
    assert!(e.to_string().contains(&format!("tcp://{addr}")), "{e}");
}

#[test]
fn the_trace_shows_the_upgrade_and_each_message_beside_the_reads_and_writes() {
    let server = echo_server();
    let recorder = sockstep::trace::Recorder::new();
    let mut ws = WebSocket::connect(
        server.local_addr(),
        "/chat",
        &ws_config(),
        &recorder.trace(),
    )
    .unwrap();
    ws.send_fragmented(&Message::Text("hello".into()), 2)
        .unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Text("hello".into()));
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.shutdown();
    let lines: Vec<(Step, String)> = recorder
        .events()
        .into_iter()
        .map(|e| (e.step, e.detail.unwrap_or_default()))
        .collect();
    let position = |step: Step, text: &str| {
        lines
            .iter()
            .position(|(s, d)| *s == step && d.contains(text))
            .unwrap_or_else(|| panic!("no {step} event saying {text:?} in {lines:#?}"))
    };
    let upgrade = position(
        Step::Upgrade,
        "101 Switching Protocols for GET /chat: now speaking WebSocket",
    );
    let sent = position(Step::Message, "sending text of 5 bytes in 3 frame(s)");
    let received = position(Step::Message, "received text of 5 bytes");
    let closing = position(Step::Message, "sending close 1000 (normal closure)");
    assert!(
        upgrade < sent && sent < received && received < closing,
        "{lines:#?}"
    );
    assert!(
        lines[sent + 1..received]
            .iter()
            .any(|(s, _)| *s == Step::Write)
    );
}
