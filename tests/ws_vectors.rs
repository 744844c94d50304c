//! Published vectors for the WebSocket pieces: SHA-1 (RFC 3174, FIPS 180 /
//! NIST examples), Base64 (RFC 4648 §10), the handshake (RFC 6455 §1.3 and
//! §4) and frames (RFC 6455 §5.7), each parsed and emitted.

use sockstep::http::{Limits, Parsed as HttpParsed, parse_request};
use sockstep::step::Side;
use sockstep::ws::frame::{Parsed, parse_frame};
use sockstep::ws::sha1::{Sha1, sha1};
use sockstep::ws::{CloseCode, Decoder, Frame, Message, Opcode, base64, handshake};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// SHA-1
// ---------------------------------------------------------------------------

#[test]
fn sha1_of_abc_is_the_fips_example() {
    assert_eq!(
        hex(&sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
}

#[test]
fn sha1_of_the_448_bit_message_is_the_fips_example() {
    let msg = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(msg.len() * 8, 448);
    assert_eq!(hex(&sha1(msg)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

#[test]
fn sha1_of_the_896_bit_message_is_the_nist_example() {
    let msg = b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    assert_eq!(hex(&sha1(msg)), "a49b2446a02c645bf419f995b67091253a04a259");
}

#[test]
fn sha1_of_a_million_a_is_the_rfc_3174_test_3() {
    // Fed in uneven pieces, as RFC 3174's test driver does in its own way.
    let mut hasher = Sha1::new();
    let piece = [b'a'; 999];
    let mut left = 1_000_000;
    while left > 0 {
        let n = left.min(piece.len());
        hasher.update(&piece[..n]);
        left -= n;
    }
    assert_eq!(
        hex(&hasher.finish()),
        "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
    );
    assert_eq!(
        hex(&sha1(&vec![b'a'; 1_000_000])),
        "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
    );
}

#[test]
fn sha1_of_the_rfc_3174_test_4_repeated_block() {
    let msg = b"0123456701234567012345670123456701234567012345670123456701234567".repeat(10);
    assert_eq!(hex(&sha1(&msg)), "dea356a2cddd90c7a7ecedc5ebb563934f460452");
}

#[test]
fn sha1_of_the_empty_string() {
    assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(&Sha1::new().finish()),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
}

// ---------------------------------------------------------------------------
// Base64
// ---------------------------------------------------------------------------

const RFC_4648_VECTORS: [(&str, &str); 7] = [
    ("", ""),
    ("f", "Zg=="),
    ("fo", "Zm8="),
    ("foo", "Zm9v"),
    ("foob", "Zm9vYg=="),
    ("fooba", "Zm9vYmE="),
    ("foobar", "Zm9vYmFy"),
];

#[test]
fn base64_encodes_the_rfc_4648_vectors() {
    for (plain, encoded) in RFC_4648_VECTORS {
        assert_eq!(base64::encode(plain.as_bytes()), encoded, "{plain:?}");
    }
}

#[test]
fn base64_decodes_the_rfc_4648_vectors() {
    for (plain, encoded) in RFC_4648_VECTORS {
        assert_eq!(
            base64::decode(encoded).unwrap(),
            plain.as_bytes(),
            "{encoded:?}"
        );
    }
}

#[test]
fn base64_refuses_everything_but_the_one_canonical_text() {
    for bad in [
        "Zg", "Zg=", "Zh==", "Zm9=", "Zm8", "Z===", "Zg==Zg==", "Zm 9v", "Zm9v\n", "Zm-_",
    ] {
        assert!(base64::decode(bad).is_err(), "{bad:?} should be refused");
    }
}

// ---------------------------------------------------------------------------
// The handshake
// ---------------------------------------------------------------------------

#[test]
fn the_rfc_example_key_gets_the_rfc_example_accept() {
    assert_eq!(
        handshake::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn the_rfc_example_request_gets_this_exact_101() {
    // RFC 6455 §1.2, with CRLFs.
    let wire = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n";
    let HttpParsed::Complete { message, consumed } =
        parse_request(wire, &Limits::default()).unwrap()
    else {
        panic!("the whole request is there");
    };
    assert_eq!(consumed, wire.len());
    let answer = handshake::accept(&message).expect("a valid upgrade");
    assert_eq!(
        String::from_utf8(answer.to_bytes().unwrap()).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    handshake::check_response(&answer, "dGhlIHNhbXBsZSBub25jZQ==").unwrap();
}

#[test]
fn a_client_request_passes_the_server_checks_and_back() {
    let key = handshake::new_key();
    let request = handshake::request("[::1]:8080", "/ws?room=1", &key);
    let wire = request.to_bytes().unwrap();
    let HttpParsed::Complete { message, .. } = parse_request(&wire, &Limits::default()).unwrap()
    else {
        panic!("complete");
    };
    let answer = handshake::accept(&message).unwrap();
    assert_eq!(answer.status, 101);
    handshake::check_response(&answer, &key).unwrap();
    assert!(handshake::check_response(&answer, &handshake::new_key()).is_err());
}

// ---------------------------------------------------------------------------
// Frames: RFC 6455 §5.7
// ---------------------------------------------------------------------------

/// Parses `wire` as `receiver`, checks it is one whole frame, and that emitting
/// the frame gives `wire` back.
fn parse_one(wire: &[u8], receiver: Side) -> Frame {
    let Parsed::Complete { frame, consumed } = parse_frame(wire, receiver, 1 << 20).unwrap() else {
        panic!("one whole frame");
    };
    assert_eq!(consumed, wire.len());
    assert_eq!(frame.to_bytes(), wire, "emitting gives the same bytes");
    for end in 0..wire.len() {
        assert_eq!(
            parse_frame(&wire[..end], receiver, 1 << 20).unwrap(),
            Parsed::Partial,
            "prefix of {end} bytes"
        );
    }
    frame
}

const HELLO_MASKED: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

#[test]
fn a_single_frame_unmasked_text_message() {
    let frame = parse_one(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], Side::Client);
    assert_eq!(frame, Frame::new(Opcode::Text, b"Hello".to_vec()));
}

#[test]
fn a_single_frame_masked_text_message() {
    let frame = parse_one(&HELLO_MASKED, Side::Server);
    assert_eq!(
        frame,
        Frame::new(Opcode::Text, b"Hello".to_vec()).masked([0x37, 0xfa, 0x21, 0x3d])
    );
}

#[test]
fn a_fragmented_unmasked_text_message() {
    let first = parse_one(&[0x01, 0x03, 0x48, 0x65, 0x6c], Side::Client);
    let last = parse_one(&[0x80, 0x02, 0x6c, 0x6f], Side::Client);
    assert_eq!((first.fin, first.opcode), (false, Opcode::Text));
    assert_eq!((last.fin, last.opcode), (true, Opcode::Continuation));
    let mut decoder = Decoder::new(Side::Client, 1024, 1024);
    decoder.feed(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(
        decoder.next_message().unwrap(),
        Some(Message::Text("Hello".into()))
    );
    assert_eq!(
        Message::Text("Hello".into())
            .to_frames(3)
            .iter()
            .flat_map(Frame::to_bytes)
            .collect::<Vec<_>>(),
        [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
    );
}

#[test]
fn an_unmasked_ping_and_a_masked_pong() {
    let ping = parse_one(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], Side::Client);
    assert_eq!(ping, Frame::new(Opcode::Ping, b"Hello".to_vec()));
    let mut pong = HELLO_MASKED;
    pong[0] = 0x8a;
    let pong = parse_one(&pong, Side::Server);
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (Opcode::Pong, &b"Hello"[..])
    );
}

#[test]
fn a_256_byte_binary_message_uses_the_16_bit_length() {
    let mut wire = vec![0x82, 0x7E, 0x01, 0x00];
    wire.extend((0..=255u8).collect::<Vec<_>>());
    let frame = parse_one(&wire, Side::Client);
    assert_eq!(frame.payload.len(), 256);
    assert_eq!(frame.opcode, Opcode::Binary);
}

#[test]
fn a_64_kib_binary_message_uses_the_64_bit_length() {
    let mut wire = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
    wire.extend(vec![0xAB; 65_536]);
    let frame = parse_one(&wire, Side::Client);
    assert_eq!(frame.payload.len(), 65_536);
}

#[test]
fn the_length_forms_switch_at_126_and_65536() {
    for (len, header) in [(125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
        let wire = Frame::new(Opcode::Binary, vec![0; len]).to_bytes();
        assert_eq!(wire.len() - len, header, "payload of {len}");
        let masked = Frame::new(Opcode::Binary, vec![0; len])
            .masked([1, 2, 3, 4])
            .to_bytes();
        assert_eq!(masked.len() - len, header + 4, "masked payload of {len}");
    }
}

#[test]
fn close_frames_carry_a_big_endian_code_and_a_utf8_reason() {
    let wire = Frame::close(CloseCode::GOING_AWAY, "bye ✓").to_bytes();
    assert_eq!(&wire[..4], [0x88, 0x09, 0x03, 0xE9]);
    let mut decoder = Decoder::new(Side::Client, 1024, 1024);
    decoder.feed(&wire);
    assert_eq!(
        decoder.next_message().unwrap(),
        Some(Message::Close {
            code: CloseCode::GOING_AWAY,
            reason: "bye ✓".into()
        })
    );
    assert_eq!(
        Frame::close(CloseCode::NO_STATUS, "").to_bytes(),
        [0x88, 0x00]
    );
}
