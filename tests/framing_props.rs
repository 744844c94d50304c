//! Framing survives any cutting of the byte stream.
//!
//! TCP may deliver the bytes of our frames in any pieces: several frames in one
//! read, one frame in many reads, a read that stops in the middle of a length
//! prefix. These properties let proptest choose the messages and the pieces,
//! first in memory and then through a real loopback TCP connection, and check
//! that the reader always gives back exactly the messages that were written —
//! complete, in order, no duplicates — and then a clean end of stream. Two more
//! properties pin down the failure cases: a stream cut inside a frame is a
//! `TruncatedFrame`, never a short message, and an announced length above the
//! maximum is `FrameTooLarge`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use sockstep::tcp::framing::{DEFAULT_MAX_FRAME, FrameReader, FrameWriter, Framing, encode};
use sockstep::{Error, ErrorKind};

/// How long any socket in these tests may wait before the test fails instead of hanging.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest message the strategies make: large enough that one frame spans
/// many reads and many TCP segments.
const LARGE: usize = 200 * 1024;

// --- strategies -------------------------------------------------------------

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![Just(Framing::Lines), Just(Framing::LengthPrefixed)]
}

/// Mostly small messages (rich in the bytes framing cares about: '\r', '\n',
/// 0), some medium, a few up to [`LARGE`]. Large ones are a cheap pattern
/// rather than random bytes, so that generating them stays fast.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let tricky_byte = prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(0)];
    prop_oneof![
        6 => vec(tricky_byte, 0..16),
        3 => vec(any::<u8>(), 0..3000),
        1 => (0..=LARGE, any::<u8>()).prop_map(|(len, seed)| pattern(len, seed)),
    ]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Makes a message sendable as a line: no '\n' inside, no '\r' at the end
/// (the reader would strip it as part of "\r\n").
fn fit(framing: Framing, mut msg: Vec<u8>) -> Vec<u8> {
    if framing == Framing::Lines {
        for b in &mut msg {
            if *b == b'\n' {
                *b = b'n';
            }
        }
        if let Some(last @ b'\r') = msg.last_mut() {
            *last = b'r';
        }
    }
    msg
}

/// A framing and 0..max_len messages it can carry, empty ones included.
fn conversation(max_len: usize) -> impl Strategy<Value = (Framing, Vec<Vec<u8>>)> {
    (framing(), vec(message(), 0..max_len)).prop_map(|(framing, messages)| {
        let messages = messages.into_iter().map(|m| fit(framing, m)).collect();
        (framing, messages)
    })
}

/// Like [`conversation`], but only the first messages that fit in `budget`
/// bytes: through a real socket, a megabyte sent one byte per `write(2)` already
/// takes a few seconds.
fn conversation_within(
    max_len: usize,
    budget: usize,
) -> impl Strategy<Value = (Framing, Vec<Vec<u8>>)> {
    conversation(max_len).prop_map(move |(framing, messages)| {
        let mut total = 0;
        let messages = messages
            .into_iter()
            .take_while(|m| {
                total += m.len();
                total <= budget
            })
            .collect();
        (framing, messages)
    })
}

/// Sizes of the pieces a stream is cut into, used in turn and then again from
/// the start. One-byte pieces are common. With `interruptions`, a 0 now and
/// then means "fail once with `Interrupted`"; the first size is never 0, so the
/// stream always moves on.
fn pieces(interruptions: bool) -> impl Strategy<Value = Vec<usize>> {
    // A strategy without any 0 arm at all, not a 0 arm of weight 0: when
    // shrinking, proptest also tries the earlier arms of a `prop_oneof!`.
    let size = || {
        prop_oneof![
            3 => Just(1),
            3 => 2..=16usize,
            3 => 17..=4096usize,
            2 => 4097..=100_000usize,
        ]
    };
    let later = if interruptions {
        prop_oneof![1 => Just(0), 11 => size()].boxed()
    } else {
        size().boxed()
    };
    (size(), vec(later, 0..12)).prop_map(|(first, rest)| {
        let mut sizes = vec![first];
        sizes.extend(rest);
        sizes
    })
}

fn encode_all(framing: Framing, messages: &[Vec<u8>]) -> Vec<u8> {
    messages
        .iter()
        .flat_map(|m| {
            encode(framing, m, DEFAULT_MAX_FRAME).expect("the strategy makes valid messages")
        })
        .collect()
}

// --- adapters that cut the stream -------------------------------------------

/// Cycles through a list of piece sizes.
struct Cutter {
    sizes: Vec<usize>,
    next: usize,
}

impl Cutter {
    fn new(sizes: Vec<usize>) -> Self {
        Cutter { sizes, next: 0 }
    }

    /// The next piece size, or `None` for "be interrupted this time".
    fn next(&mut self) -> Option<usize> {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        (size > 0).then_some(size)
    }
}

/// A `Read` that returns at most the next piece size per call.
struct AtMost<R> {
    inner: R,
    cutter: Cutter,
}

impl<R: Read> Read for AtMost<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.cutter.next() {
            None => Err(io::ErrorKind::Interrupted.into()),
            Some(k) => {
                let k = k.min(buf.len());
                self.inner.read(&mut buf[..k])
            }
        }
    }
}

/// A `Write` that accepts at most the next piece size per call.
struct TakesAtMost<W> {
    inner: W,
    cutter: Cutter,
}

impl<W: Write> Write for TakesAtMost<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.cutter.next() {
            None => Err(io::ErrorKind::Interrupted.into()),
            Some(k) => self.inner.write(&buf[..k.min(buf.len())]),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Every frame until the end of the stream or the first error. Stops after
/// `limit` messages, so a reader that repeats itself cannot loop forever.
fn read_all<R: Read>(
    reader: &mut FrameReader<R>,
    limit: usize,
) -> (Vec<Vec<u8>>, Result<(), Error>) {
    let mut messages = Vec::new();
    loop {
        match reader.read_frame() {
            Ok(Some(msg)) => {
                messages.push(msg);
                if messages.len() > limit {
                    return (messages, Ok(()));
                }
            }
            Ok(None) => return (messages, Ok(())),
            Err(e) => return (messages, Err(e)),
        }
    }
}

/// Where each frame starts in the encoded stream, plus the stream's length.
fn boundaries(framing: Framing, messages: &[Vec<u8>]) -> Vec<usize> {
    let mut at = vec![0];
    for m in messages {
        let frame_len = encode(framing, m, DEFAULT_MAX_FRAME).expect("valid").len();
        at.push(at[at.len() - 1] + frame_len);
    }
    at
}

// --- through a real socket --------------------------------------------------

/// Sends `wire` over a fresh loopback connection, written in `write_pieces`
/// (with a short pause after every `pause_every`-th write, if any) and read
/// through a [`FrameReader`] that asks for at most `read_pieces` per read.
///
/// The accepted side writes and the connecting side reads, so every blocking
/// call has a timeout: a `connect` completes from the listen backlog even if
/// the writer thread has failed, and then the reads time out.
fn over_loopback(
    framing: Framing,
    wire: Vec<u8>,
    write_pieces: Vec<usize>,
    read_pieces: Vec<usize>,
    pause_every: Option<usize>,
    limit: usize,
) -> (Vec<Vec<u8>>, Result<(), Error>, io::Result<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    let addr = listener.local_addr().expect("local_addr");

    let writer = thread::spawn(move || -> io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        let mut cutter = Cutter::new(write_pieces);
        let mut rest = wire.as_slice();
        let mut writes = 0;
        while !rest.is_empty() {
            let k = cutter.next().unwrap_or(1).min(rest.len());
            stream.write_all(&rest[..k])?;
            rest = &rest[k..];
            writes += 1;
            // Pauses only early on: enough to make reads see partial frames,
            // cheap even when the pieces are one byte each.
            if pause_every.is_some_and(|n| writes % n == 0 && writes < 2000) {
                thread::sleep(Duration::from_micros(200));
            }
        }
        // "I will send nothing more": the reader sees a clean end of stream.
        stream.shutdown(Shutdown::Write)
    });

    let stream = TcpStream::connect_timeout(&addr, SOCKET_TIMEOUT).expect("connect");
    stream
        .set_read_timeout(Some(SOCKET_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(SOCKET_TIMEOUT))
        .expect("set_write_timeout");
    let stream = AtMost {
        inner: stream,
        cutter: Cutter::new(read_pieces),
    };
    let mut reader = FrameReader::new(stream, framing);
    let (received, end) = read_all(&mut reader, limit);
    // Close our side before joining, so a writer stuck on a full send buffer
    // (because we stopped reading after an error) fails instead of waiting.
    drop(reader);
    let written = writer.join().expect("the writer thread panicked");
    (received, end, written)
}

// --- the properties ---------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_cutting_in_memory_delivers_every_message_once_in_order(
        (framing, messages) in conversation(50),
        write_pieces in pieces(true),
        read_pieces in pieces(true),
    ) {
        let sink = TakesAtMost { inner: Vec::new(), cutter: Cutter::new(write_pieces) };
        let mut writer = FrameWriter::new(sink, framing);
        for m in &messages {
            writer.write_frame(m).expect("write_frame");
        }
        let wire = writer.into_inner().inner;
        prop_assert!(
            wire == encode_all(framing, &messages),
            "the writer sends exactly what encode says"
        );

        let stream = AtMost { inner: wire.as_slice(), cutter: Cutter::new(read_pieces) };
        let mut reader = FrameReader::new(stream, framing);
        let (received, end) = read_all(&mut reader, messages.len());
        prop_assert!(end.is_ok(), "{:?}", end);
        prop_assert_eq!(received.len(), messages.len());
        prop_assert!(received == messages, "messages differ");
        let again = reader.read_frame().expect("read after the end");
        prop_assert!(again.is_none(), "the end stays the end");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_cutting_through_loopback_tcp_delivers_every_message_once_in_order(
        (framing, messages) in conversation_within(50, 1 << 20),
        write_pieces in pieces(false),
        read_pieces in pieces(false),
        pause_every in proptest::option::of(1..64usize),
    ) {
        let wire = encode_all(framing, &messages);
        let (received, end, written) =
            over_loopback(framing, wire, write_pieces, read_pieces, pause_every, messages.len());
        prop_assert!(end.is_ok(), "{:?}", end);
        prop_assert!(written.is_ok(), "{:?}", written);
        prop_assert_eq!(received.len(), messages.len());
        prop_assert!(received == messages, "messages differ");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn truncating_inside_a_frame_is_a_truncated_frame_never_a_short_message(
        (framing, messages) in conversation(8).prop_filter("a frame", |(_, m)| !m.is_empty()),
        cut in any::<Index>(),
        read_pieces in pieces(true),
    ) {
        let wire = encode_all(framing, &messages);
        let at = boundaries(framing, &messages);
        let last_start = at[at.len() - 2];
        let last_len = wire.len() - last_start;
        // A one-byte frame (an empty line) has no inside to cut.
        prop_assume!(last_len >= 2);
        let kept = 1 + cut.index(last_len - 1); // 1..last_len bytes of the last frame
        let truncated = &wire[..last_start + kept];

        let stream = AtMost { inner: truncated, cutter: Cutter::new(read_pieces) };
        let mut reader = FrameReader::new(stream, framing);
        let (received, end) = read_all(&mut reader, messages.len());
        prop_assert!(
            received[..] == messages[..messages.len() - 1],
            "the complete frames arrive, nothing more"
        );
        let e = end.expect_err("a cut frame must not look like a clean end");
        prop_assert_eq!(e.kind(), &ErrorKind::TruncatedFrame { got: kept });
    }

    #[test]
    fn truncating_at_a_frame_boundary_is_a_clean_end_after_the_complete_frames(
        (framing, messages) in conversation(8),
        cut in any::<Index>(),
        read_pieces in pieces(true),
    ) {
        let wire = encode_all(framing, &messages);
        let at = boundaries(framing, &messages);
        let complete = cut.index(at.len()); // 0..=messages.len() whole frames
        let truncated = &wire[..at[complete]];

        let stream = AtMost { inner: truncated, cutter: Cutter::new(read_pieces) };
        let mut reader = FrameReader::new(stream, framing);
        let (received, end) = read_all(&mut reader, messages.len());
        prop_assert!(end.is_ok(), "{:?}", end);
        prop_assert!(received[..] == messages[..complete], "exactly the complete frames");
    }

    #[test]
    fn a_length_prefix_above_max_is_frame_too_large(
        max in prop_oneof![0..64usize, Just(DEFAULT_MAX_FRAME)],
        where_above in 0..3u8,
        just_above in 0..4u64,
        anywhere_above in any::<u64>(),
        before in vec(vec(any::<u8>(), 0..32), 0..4),
        after in vec(any::<u8>(), 0..64),
        read_pieces in pieces(true),
    ) {
        // An announced length in max+1 ..= u32::MAX: just above the maximum,
        // the 4 GiB − 1 a prefix can say at most, or anywhere in between.
        let lengths_above = u64::from(u32::MAX) - max as u64;
        let offset = match where_above {
            0 => just_above,
            1 => lengths_above - 1,
            _ => anywhere_above % lengths_above,
        };
        let announced = u32::try_from(max as u64 + 1 + offset).expect("at most u32::MAX");
        let mut wire = Vec::new();
        for m in before.iter().filter(|m| m.len() <= max) {
            wire.extend(encode(Framing::LengthPrefixed, m, max).expect("within max"));
        }
        let complete = before.iter().filter(|m| m.len() <= max).count();
        wire.extend(announced.to_be_bytes());
        wire.extend(&after);

        let stream = AtMost { inner: wire.as_slice(), cutter: Cutter::new(read_pieces) };
        let mut reader = FrameReader::new(stream, Framing::LengthPrefixed).with_max(max);
        let (received, end) = read_all(&mut reader, before.len());
        prop_assert_eq!(received.len(), complete);
        let e = end.expect_err("an oversized prefix must be refused");
        prop_assert_eq!(e.kind(), &ErrorKind::FrameTooLarge { len: u64::from(announced), max });
    }

    #[test]
    fn a_line_longer_than_max_is_frame_too_large(
        max in 0..64usize,
        extra in 1..100usize,
        newline in any::<bool>(),
        read_pieces in pieces(true),
    ) {
        let mut wire = vec![b'x'; max + extra];
        if newline {
            wire.push(b'\n');
        }
        let stream = AtMost { inner: wire.as_slice(), cutter: Cutter::new(read_pieces) };
        let mut reader = FrameReader::new(stream, Framing::Lines).with_max(max);
        let e = reader.read_frame().expect_err("an overlong line must be refused");
        let refused = matches!(
            e.kind(),
            ErrorKind::FrameTooLarge { len, max: m } if *len > max as u64 && *m == max
        );
        prop_assert!(refused, "{:?}", e);
    }
}
