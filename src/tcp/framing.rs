//! TCP is a byte stream: framing — cutting the stream back into messages.
//!
//! # The idea
//!
//! TCP promises that the bytes you write arrive complete and in order. It does
//! not promise that they arrive in the pieces you wrote them in. A TCP
//! connection is a *byte stream* (바이트 스트림): it keeps no *message
//! boundaries* (메시지 경계). The sender's kernel may glue two small writes into
//! one segment (Nagle's algorithm does exactly that), or split one large write
//! into many segments; the receiver's `read()` returns whatever has arrived so
//! far, up to the size of its buffer. So two writes
//!
//! ```text
//! write("hello")  write("world")
//! ```
//!
//! may be read as `"helloworld"`, as `"hel"` `"loworld"`, or as ten reads of one
//! byte each. All of these are correct TCP. A program that treats one `read()`
//! as one message works on loopback in a demo and breaks on a real network.
//!
//! *Framing* is the agreement, on top of the stream, about where one message
//! ends and the next begins. This module offers the two classic ones
//! ([`Framing`]):
//!
//! - **Lines**: every message ends with `'\n'`. Readable in `nc` and `telnet`, but a
//!   message can never contain a newline, and the reader must look at every byte
//!   to find the end.
//! - **Length prefix**: every message starts with its length as a 4-byte
//!   big-endian ("network byte order") number. Any bytes may appear in the
//!   message, and the reader knows how much to wait for before it has it.
//!
//! [`FrameWriter`] turns one message into one frame; [`FrameReader`] reads the
//! stream in chunks, keeps whatever belongs to the next frame in a buffer, and
//! hands out only whole messages. [`encode`] is the wire format alone, as a pure
//! function over bytes. Both work over any [`Read`]/[`Write`]: a `TcpStream`, a
//! `&[u8]` in a test, or a `Vec<u8>`.
//!
//! # What can go wrong, and what we do about it
//!
//! - **The peer announces (or sends) a huge frame.** A 4-byte prefix can claim
//!   4 GiB. A reader that trusts it and allocates lets any peer exhaust our
//!   memory with four bytes. So every reader has a maximum ([`DEFAULT_MAX_FRAME`],
//!   changed with [`FrameReader::with_max`]), checked *before* allocating, and a
//!   line that grows past it without a newline is refused too. Either way the
//!   reader never holds much more than the maximum plus one read chunk.
//! - **The stream ends in the middle of a frame.** The peer crashed or was cut
//!   off. The bytes we have are not a message, so they are reported as
//!   [`ErrorKind::TruncatedFrame`], never handed out as a short one. An end of
//!   stream exactly *between* frames is the normal way to finish: `Ok(None)`.
//! - **A read times out.** The partial frame stays buffered; calling
//!   [`FrameReader::read_frame`] again continues where it stopped.
//!
//! After a framing error ([`ErrorKind::FrameTooLarge`],
//! [`ErrorKind::TruncatedFrame`]) the two ends no longer agree where frames
//! start, so there is nothing sensible to read next: close the connection.

use std::fmt;
use std::io::{self, Read, Write};

use crate::error::{Error, ErrorKind};
use crate::step::Step;

/// The default maximum size of one message: 1 MiB.
///
/// The limit exists so that a peer cannot make us allocate whatever it
/// announces. 1 MiB is far more than any line or command the walkthroughs send,
/// and small enough that a server running one thread per connection can afford
/// it for every connection at once (a thousand hostile peers pin about 1 GiB,
/// not 4 TiB). A protocol that really moves larger messages raises it with
/// [`FrameReader::with_max`] and [`FrameWriter::with_max`].
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// How many bytes one `read()` asks the stream for, at most.
///
/// 8 KiB is what std's `BufReader` uses by default: several full-size Ethernet
/// segments (about 1460 bytes of payload each), so a bulk transfer takes few
/// system calls, while a connection that only ever sends short lines holds no
/// more than 8 KiB of buffer. It is also the most by which the reader's buffer
/// can overshoot the maximum frame size: before a read the buffer holds at most
/// one unfinished frame of at most `max` bytes (plus its prefix, or a `'\r'`),
/// and a read adds at most one chunk.
const READ_CHUNK: usize = 8 * 1024;

/// Length of the length prefix: a big-endian `u32`.
const LEN_PREFIX: usize = 4;

/// The largest message a 4-byte length prefix can announce (4 GiB − 1).
const MAX_PREFIXED_LEN: u64 = u32::MAX as u64;

/// How a byte stream is cut into messages. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Each message is followed by `'\n'`.
    ///
    /// On reading, a `"\r\n"` ending is accepted too (that is what `telnet`, and
    /// `nc -C`, send) and the `'\r'` is stripped. So a message may not contain
    /// `'\n'`, and may not end in `'\r'`: the reader could not give it back intact.
    Lines,
    /// Each message is preceded by its length as a 4-byte big-endian `u32`.
    ///
    /// A message may contain any bytes. `"hi"` is `00 00 00 02 68 69` on the wire.
    LengthPrefixed,
}

/// The bytes that represent `msg` on the wire, under `framing`. No I/O.
///
/// [`FrameWriter`] sends exactly these bytes; tests use them to build streams.
///
/// ```
/// use sockstep::tcp::framing::{encode, Framing, DEFAULT_MAX_FRAME};
///
/// assert_eq!(encode(Framing::Lines, b"hi", DEFAULT_MAX_FRAME)?, b"hi\n");
/// assert_eq!(
///     encode(Framing::LengthPrefixed, b"hi", DEFAULT_MAX_FRAME)?,
///     [0, 0, 0, 2, b'h', b'i'],
/// );
/// # Ok::<(), sockstep::Error>(())
/// ```
///
/// # Errors
///
/// - [`ErrorKind::FrameTooLarge`] if `msg` is longer than `max` (or, for
///   [`Framing::LengthPrefixed`], than a `u32` can say).
/// - [`ErrorKind::InvalidFrame`] if, for [`Framing::Lines`], `msg` contains
///   `'\n'` or ends in `'\r'`.
///
/// Empty messages are valid in both framings.
pub fn encode(framing: Framing, msg: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    if msg.len() > max {
        return Err(too_large(msg.len(), max));
    }
    match framing {
        Framing::Lines => {
            if msg.contains(&b'\n') {
                return Err(invalid("a line cannot contain '\\n'"));
            }
            if msg.ends_with(b"\r") {
                return Err(invalid(
                    "a line cannot end in '\\r': the reader strips it as part of \"\\r\\n\"",
                ));
            }
            let mut frame = Vec::with_capacity(msg.len() + 1);
            frame.extend_from_slice(msg);
            frame.push(b'\n');
            Ok(frame)
        }
        Framing::LengthPrefixed => {
            let Ok(len) = u32::try_from(msg.len()) else {
                // Only reachable when `max` is above 4 GiB: the prefix is then the limit.
                let max = usize::try_from(MAX_PREFIXED_LEN).unwrap_or(usize::MAX);
                return Err(too_large(msg.len(), max));
            };
            let mut frame = Vec::with_capacity(LEN_PREFIX + msg.len());
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(msg);
            Ok(frame)
        }
    }
}

/// Reads whole messages from a byte stream.
///
/// It reads the stream in chunks of at most 8 KiB, returns one message per
/// [`read_frame`](FrameReader::read_frame), and keeps bytes that already belong
/// to the next frames in its own buffer ([`buffered`](FrameReader::buffered)) for
/// the next call. So it does not matter how the stream was cut into reads.
///
/// # Examples
///
/// Two messages in one buffer, as they might arrive in one `read()`:
///
/// ```
/// use sockstep::tcp::framing::{FrameReader, Framing};
///
/// let wire: &[u8] = b"hello\r\nworld\n";
/// let mut reader = FrameReader::new(wire, Framing::Lines);
/// assert_eq!(reader.read_frame()?, Some(b"hello".to_vec()));
/// assert_eq!(reader.read_frame()?, Some(b"world".to_vec()));
/// assert_eq!(reader.read_frame()?, None); // the stream ended between frames
/// # Ok::<(), sockstep::Error>(())
/// ```
pub struct FrameReader<R> {
    inner: R,
    framing: Framing,
    max: usize,
    /// The buffer, in three parts:
    ///
    /// - `buf[..start]`: frames already handed out. They are dropped the next
    ///   time we read, not at once, so that handing out many small frames from
    ///   one chunk does not shift the buffer once per frame.
    /// - `buf[start..end]`: read from `inner`, not yet handed out.
    /// - `buf[end..]`: free room that the next read fills. It is zeroed once, when
    ///   the buffer grows, not before every read.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> FrameReader<R> {
    /// A reader of `framing` frames from `inner`, with the maximum frame size
    /// [`DEFAULT_MAX_FRAME`].
    pub fn new(inner: R, framing: Framing) -> Self {
        FrameReader {
            inner,
            framing,
            max: DEFAULT_MAX_FRAME,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Sets the maximum message size, in bytes (not counting the prefix or the
    /// line ending). Larger frames are refused with [`ErrorKind::FrameTooLarge`].
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Reads the next whole message.
    ///
    /// `Ok(Some(msg))` is one complete message, without its prefix or line ending.
    /// `Ok(None)` means the stream ended cleanly, exactly between two frames (for a
    /// socket: the peer shut down its sending side or closed).
    ///
    /// Underneath: as many `read()` calls as the frame needs (zero if it is already
    /// buffered), each asking for at most 8 KiB. On a `TcpStream` each of them is
    /// one `recvfrom(2)`, which blocks until at least one byte has arrived.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::FrameTooLarge`] if a length prefix announces more than the
    ///   maximum (refused before any room is made for it), or a line reaches more
    ///   than the maximum without its `'\n'` (reading stops there).
    /// - [`ErrorKind::TruncatedFrame`] if the stream ends inside a frame: inside a
    ///   length prefix, inside a body, or after a last line with no `'\n'`. `got`
    ///   counts the bytes of the frame that did arrive, prefix included.
    /// - Any other I/O error, at [`Step::Read`] (a read timeout is
    ///   [`ErrorKind::TimedOut`]). `Interrupted` is retried. After an I/O error
    ///   the bytes of the unfinished frame stay buffered, so calling again after a
    ///   timeout continues the frame.
    pub fn read_frame(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match self.framing {
            Framing::Lines => self.read_line(),
            Framing::LengthPrefixed => self.read_prefixed(),
        }
    }

    fn read_line(&mut self) -> Result<Option<Vec<u8>>, Error> {
        // How many of the pending bytes are already known to hold no '\n', so a
        // long line is searched once, not once per chunk.
        let mut searched = 0;
        loop {
            let pending = self.pending();
            if let Some(i) = pending[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + i;
                let line = &pending[..end];
                let msg = line.strip_suffix(b"\r").unwrap_or(line);
                // The newline may arrive in the same chunk as too many bytes.
                if msg.len() > self.max {
                    return Err(too_large(msg.len(), self.max));
                }
                let msg = msg.to_vec();
                self.start += end + 1;
                return Ok(Some(msg));
            }
            searched = pending.len();
            // No newline yet. A trailing '\r' may be the first half of "\r\n", so
            // it does not count against the maximum; anything else does.
            let content = pending.strip_suffix(b"\r").unwrap_or(pending);
            if content.len() > self.max {
                return Err(too_large(pending.len(), self.max));
            }
            if self.fill()? == 0 {
                return self.end_of_stream();
            }
        }
    }

    fn read_prefixed(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let announced = loop {
            if let Some(prefix) = self.pending().first_chunk::<LEN_PREFIX>() {
                break u32::from_be_bytes(*prefix);
            }
            if self.fill()? == 0 {
                return self.end_of_stream();
            }
        };
        // The check that matters most in this file: decide on the announced length
        // before a single byte of room is made for it.
        let len = match usize::try_from(announced) {
            Ok(len) if len <= self.max => len,
            _ => {
                return Err(Error::new(
                    Step::Frame,
                    ErrorKind::FrameTooLarge {
                        len: u64::from(announced),
                        max: self.max,
                    },
                ));
            }
        };
        // Saturating: only a 16-bit or 32-bit target with `max` near `usize::MAX`
        // could overflow here, and such a frame could never be buffered anyway.
        let frame_len = LEN_PREFIX.saturating_add(len);
        while self.pending().len() < frame_len {
            if self.fill()? == 0 {
                return self.end_of_stream();
            }
        }
        let msg = self.pending()[LEN_PREFIX..frame_len].to_vec();
        self.start += frame_len;
        Ok(Some(msg))
    }

    /// The stream ended: cleanly if no byte of a next frame had arrived.
    fn end_of_stream(&self) -> Result<Option<Vec<u8>>, Error> {
        match self.pending().len() {
            0 => Ok(None),
            got => Err(Error::new(Step::Frame, ErrorKind::TruncatedFrame { got })),
        }
    }

    /// One `read()` of at most [`READ_CHUNK`] bytes, appended to the pending ones.
    /// Returns how many bytes arrived; 0 means the stream has ended.
    fn fill(&mut self) -> Result<usize, Error> {
        // Drop the frames already handed out. What moves is only the unfinished
        // frame (we read only when the pending bytes hold no whole frame), and it
        // moves once per frame, not once per read.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.make_room();

        // In bounds: make_room has just made `buf` at least `end + READ_CHUNK` long.
        let room = &mut self.buf[self.end..self.end + READ_CHUNK];
        let n = loop {
            match self.inner.read(room) {
                Ok(n) => break n,
                // A signal arrived before any byte did; nothing was lost, ask again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(Step::Read, e)),
            }
        };
        // `Read` promises n <= room.len(); `min` keeps a broken impl from panicking us.
        let n = n.min(READ_CHUNK);
        self.end += n;
        Ok(n)
    }

    /// Makes sure there is room for one more chunk after the pending bytes.
    ///
    /// The buffer grows the way `Vec` does, by doubling, so a long frame costs
    /// few reallocations; but never past what one frame of `max` bytes plus one
    /// chunk can need, where doubling alone could reserve twice the maximum.
    /// Before a read the pending bytes are one unfinished frame, which the
    /// checks in `read_line` and `read_prefixed` keep to at most `max` bytes plus
    /// its prefix, so the ceiling always leaves room for a chunk.
    fn make_room(&mut self) {
        let needed = self.end.saturating_add(READ_CHUNK);
        if needed <= self.buf.len() {
            return;
        }
        let ceiling = self
            .max
            .saturating_add(LEN_PREFIX)
            .saturating_add(READ_CHUNK);
        let len = self.buf.len().saturating_mul(2).min(ceiling).max(needed);
        self.buf.reserve_exact(len - self.buf.len());
        self.buf.resize(len, 0);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl<R> FrameReader<R> {
    /// The stream underneath.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The stream underneath, mutably (for example to set a read timeout).
    ///
    /// Reading from it directly takes bytes out from under the frames and will
    /// desynchronize the reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Gives the stream back.
    ///
    /// Bytes already read from the stream but not yet returned as a frame (see
    /// [`buffered`](FrameReader::buffered)) are lost: take them first if the
    /// stream will be read on in some other way.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The bytes read from the stream but not yet returned as a frame: the
    /// beginning of the next frame, or several next frames.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

impl<R: fmt::Debug> fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The buffer can hold a megabyte; its size is what a reader needs to know.
        f.debug_struct("FrameReader")
            .field("inner", &self.inner)
            .field("framing", &self.framing)
            .field("max", &self.max)
            .field("buffered", &self.buffered().len())
            .finish()
    }
}

/// Writes whole messages to a byte stream, one frame each.
///
/// # Examples
///
/// ```
/// use sockstep::tcp::framing::{FrameReader, FrameWriter, Framing};
///
/// let mut writer = FrameWriter::new(Vec::new(), Framing::LengthPrefixed);
/// writer.write_frame(b"hello")?;
/// writer.write_frame(b"")?; // an empty message is a frame too
/// let wire = writer.into_inner();
/// assert_eq!(wire, b"\0\0\0\x05hello\0\0\0\0");
///
/// let mut reader = FrameReader::new(wire.as_slice(), Framing::LengthPrefixed);
/// assert_eq!(reader.read_frame()?, Some(b"hello".to_vec()));
/// assert_eq!(reader.read_frame()?, Some(Vec::new()));
/// assert_eq!(reader.read_frame()?, None);
/// # Ok::<(), sockstep::Error>(())
/// ```
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    framing: Framing,
    max: usize,
}

impl<W: Write> FrameWriter<W> {
    /// A writer of `framing` frames to `inner`, with the maximum frame size
    /// [`DEFAULT_MAX_FRAME`].
    pub fn new(inner: W, framing: Framing) -> Self {
        FrameWriter {
            inner,
            framing,
            max: DEFAULT_MAX_FRAME,
        }
    }

    /// Sets the maximum message size, in bytes. Use the same value as the reader
    /// at the other end, so we refuse to send what it would refuse to receive.
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Writes `msg` as one frame, then flushes.
    ///
    /// Underneath: the frame (prefix or newline included) is built in memory
    /// first and handed over with one `write_all`, which on a `TcpStream` is
    /// normally one `sendto(2)`. Writing the prefix and the body separately
    /// would be two small writes in a row, the pattern where Nagle's algorithm
    /// on our side and delayed ACKs on the peer's stall the body for tens of
    /// milliseconds. Note that `write_all` may still need several calls for a
    /// large frame, so two threads writing to one stream can still interleave:
    /// share a `FrameWriter` behind a `Mutex`, not the stream.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::FrameTooLarge`] or [`ErrorKind::InvalidFrame`] as in
    ///   [`encode`]; nothing is written then.
    /// - Any I/O error, at [`Step::Write`] (for example
    ///   [`ErrorKind::BrokenPipe`] if the peer has closed). `Interrupted` is
    ///   retried. Part of the frame may have been sent; the stream is then out of
    ///   step and should be closed.
    pub fn write_frame(&mut self, msg: &[u8]) -> Result<(), Error> {
        let frame = encode(self.framing, msg, self.max)?;
        // write_all retries `Interrupted` itself; flush does not, so we do.
        self.inner
            .write_all(&frame)
            .map_err(|e| Error::io(Step::Write, e))?;
        loop {
            match self.inner.flush() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return result.map_err(|e| Error::io(Step::Write, e)),
            }
        }
    }
}

impl<W> FrameWriter<W> {
    /// The stream underneath.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The stream underneath, mutably (for example to set a write timeout).
    ///
    /// Writing to it directly puts bytes between frames that the reader will take
    /// for a frame.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives the stream back. Nothing is lost: every frame was flushed.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

fn too_large(len: usize, max: usize) -> Error {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    Error::new(Step::Frame, ErrorKind::FrameTooLarge { len, max })
}

fn invalid(why: &'static str) -> Error {
    Error::new(Step::Frame, ErrorKind::InvalidFrame(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Read` that serves `data` in pieces of the given sizes; a size of 0
    /// means "fail once with `Interrupted`". Counts the bytes it has served.
    struct Pieces<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        next: usize,
        served: usize,
    }

    impl<'a> Pieces<'a> {
        fn new(data: &'a [u8], sizes: &[usize]) -> Self {
            Pieces {
                data,
                sizes: sizes.to_vec(),
                next: 0,
                served: 0,
            }
        }
    }

    impl Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes[self.next % self.sizes.len()];
            self.next += 1;
            if size == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = size.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.served += n;
            Ok(n)
        }
    }

    fn read_all<R: Read>(reader: &mut FrameReader<R>) -> Result<Vec<Vec<u8>>, Error> {
        let mut messages = Vec::new();
        while let Some(msg) = reader.read_frame()? {
            messages.push(msg);
        }
        Ok(messages)
    }

    fn frame_kind(result: Result<Option<Vec<u8>>, Error>) -> ErrorKind {
        let e = result.expect_err("expected a framing error");
        assert_eq!(e.step(), Step::Frame, "{e}");
        e.kind().clone()
    }

    // --- the wire format -------------------------------------------------

    #[test]
    fn a_line_frame_is_the_message_and_a_newline() {
        assert_eq!(encode(Framing::Lines, b"ping", 10).unwrap(), b"ping\n");
    }

    #[test]
    fn a_length_prefix_is_four_big_endian_bytes() {
        let msg = vec![7; 0x0102];
        let frame = encode(Framing::LengthPrefixed, &msg, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(frame[..4], [0, 0, 1, 2]);
        assert_eq!(frame[4..], msg[..]);
    }

    #[test]
    fn empty_messages_are_valid_in_both_framings() {
        assert_eq!(encode(Framing::Lines, b"", 0).unwrap(), b"\n");
        assert_eq!(encode(Framing::LengthPrefixed, b"", 0).unwrap(), [0; 4]);
        for framing in [Framing::Lines, Framing::LengthPrefixed] {
            let mut writer = FrameWriter::new(Vec::new(), framing);
            writer.write_frame(b"").unwrap();
            writer.write_frame(b"").unwrap();
            let wire = writer.into_inner();
            let mut reader = FrameReader::new(wire.as_slice(), framing);
            assert_eq!(read_all(&mut reader).unwrap(), [b"", b""]);
        }
    }

    #[test]
    fn a_newline_inside_a_line_message_is_refused() {
        let e = encode(Framing::Lines, b"two\nlines", 100).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidFrame(_)), "{e}");
        assert_eq!(e.step(), Step::Frame);
    }

    #[test]
    fn a_line_message_ending_in_cr_is_refused_but_a_cr_inside_is_fine() {
        let e = encode(Framing::Lines, b"oops\r", 100).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidFrame(_)), "{e}");
        assert_eq!(encode(Framing::Lines, b"a\rb", 100).unwrap(), b"a\rb\n");
    }

    #[test]
    fn newlines_are_fine_in_a_length_prefixed_message() {
        let frame = encode(Framing::LengthPrefixed, b"a\nb\r", 100).unwrap();
        let mut reader = FrameReader::new(frame.as_slice(), Framing::LengthPrefixed);
        assert_eq!(reader.read_frame().unwrap(), Some(b"a\nb\r".to_vec()));
    }

    #[test]
    fn a_message_larger_than_max_is_refused_in_both_framings() {
        for framing in [Framing::Lines, Framing::LengthPrefixed] {
            let e = encode(framing, b"12345", 4).unwrap_err();
            assert_eq!(e.kind(), &ErrorKind::FrameTooLarge { len: 5, max: 4 });
            assert!(encode(framing, b"1234", 4).is_ok());
        }
    }

    // --- reading: the stream may be cut anywhere ---------------------------

    #[test]
    fn several_writes_can_arrive_as_one_read() {
        let wire = b"\0\0\0\x01a\0\0\0\x02bc\0\0\0\0";
        let mut reader =
            FrameReader::new(Pieces::new(wire, &[READ_CHUNK]), Framing::LengthPrefixed);
        assert_eq!(reader.read_frame().unwrap(), Some(b"a".to_vec()));
        assert_eq!(reader.buffered(), b"\0\0\0\x02bc\0\0\0\0");
        assert_eq!(
            reader.get_ref().next,
            1,
            "the later frames came from the buffer"
        );
        assert_eq!(read_all(&mut reader).unwrap(), [&b"bc"[..], b""]);
    }

    #[test]
    fn one_write_can_arrive_as_many_reads() {
        for framing in [Framing::Lines, Framing::LengthPrefixed] {
            let msg = b"a message that arrives one byte at a time";
            let wire = encode(framing, msg, 100).unwrap();
            let mut reader = FrameReader::new(Pieces::new(&wire, &[1]), framing);
            assert_eq!(reader.read_frame().unwrap(), Some(msg.to_vec()));
            assert_eq!(reader.read_frame().unwrap(), None);
            assert_eq!(reader.get_ref().next, wire.len() + 1);
        }
    }

    #[test]
    fn a_crlf_line_is_read_without_the_cr() {
        let mut reader = FrameReader::new(&b"hello\r\n\r\nbye\n"[..], Framing::Lines);
        assert_eq!(read_all(&mut reader).unwrap(), [&b"hello"[..], b"", b"bye"]);
    }

    #[test]
    fn only_one_cr_before_the_newline_is_stripped() {
        let mut reader = FrameReader::new(&b"a\r\r\n"[..], Framing::Lines);
        assert_eq!(reader.read_frame().unwrap(), Some(b"a\r".to_vec()));
    }

    // --- the end of the stream ---------------------------------------------

    #[test]
    fn eof_exactly_between_frames_is_a_clean_end_every_time() {
        let mut reader = FrameReader::new(&b"one\n"[..], Framing::Lines);
        assert_eq!(reader.read_frame().unwrap(), Some(b"one".to_vec()));
        assert_eq!(reader.read_frame().unwrap(), None);
        assert_eq!(reader.read_frame().unwrap(), None);
        let mut reader = FrameReader::new(&b""[..], Framing::LengthPrefixed);
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn eof_inside_a_length_prefix_is_a_truncated_frame() {
        let mut reader = FrameReader::new(&[0, 0][..], Framing::LengthPrefixed);
        assert_eq!(
            frame_kind(reader.read_frame()),
            ErrorKind::TruncatedFrame { got: 2 }
        );
    }

    #[test]
    fn eof_inside_a_body_is_a_truncated_frame() {
        let mut reader = FrameReader::new(&b"\0\0\0\x05hel"[..], Framing::LengthPrefixed);
        assert_eq!(
            frame_kind(reader.read_frame()),
            ErrorKind::TruncatedFrame { got: 7 }
        );
    }

    #[test]
    fn a_last_line_without_a_newline_is_a_truncated_frame() {
        let mut reader = FrameReader::new(&b"done\npartial"[..], Framing::Lines);
        assert_eq!(reader.read_frame().unwrap(), Some(b"done".to_vec()));
        assert_eq!(
            frame_kind(reader.read_frame()),
            ErrorKind::TruncatedFrame { got: 7 }
        );
        let mut reader = FrameReader::new(&b"half of crlf\r"[..], Framing::Lines);
        assert_eq!(
            frame_kind(reader.read_frame()),
            ErrorKind::TruncatedFrame { got: 13 }
        );
    }

    // --- limits: a peer cannot make us allocate what it likes -----------------

    #[test]
    fn a_4_gib_length_prefix_is_refused_without_allocating() {
        // The prefix announces 4 GiB − 1 and the stream would deliver it forever.
        let wire = [0xFF, 0xFF, 0xFF, 0xFF].chain(io::repeat(0));
        let mut reader = FrameReader::new(wire, Framing::LengthPrefixed);
        assert_eq!(
            frame_kind(reader.read_frame()),
            ErrorKind::FrameTooLarge {
                len: 0xFFFF_FFFF,
                max: DEFAULT_MAX_FRAME
            }
        );
        assert!(
            reader.buf.capacity() <= READ_CHUNK,
            "allocated {} bytes",
            reader.buf.capacity()
        );
    }

    #[test]
    fn a_length_prefix_one_above_max_is_too_large_and_at_max_is_fine() {
        let wire = [0, 0, 0, 11];
        let mut reader = FrameReader::new(&wire[..], Framing::LengthPrefixed).with_max(10);
        assert_eq!(
            frame_kind(reader.read_frame()),
            ErrorKind::FrameTooLarge { len: 11, max: 10 }
        );
        let wire = encode(Framing::LengthPrefixed, &[1; 10], 10).unwrap();
        let mut reader = FrameReader::new(wire.as_slice(), Framing::LengthPrefixed).with_max(10);
        assert_eq!(reader.read_frame().unwrap(), Some(vec![1; 10]));
    }

    #[test]
    fn a_line_that_never_ends_is_refused_and_reading_stops() {
        // An endless line: if the reader did not stop, this test would not end.
        let mut reader = FrameReader::new(io::repeat(b'a'), Framing::Lines);
        let ErrorKind::FrameTooLarge { len, max } = frame_kind(reader.read_frame()) else {
            panic!("expected FrameTooLarge");
        };
        assert_eq!(max, DEFAULT_MAX_FRAME);
        assert!(
            len > max as u64 && len <= (max + READ_CHUNK) as u64,
            "len {len}"
        );
        assert!(
            reader.buf.capacity() <= DEFAULT_MAX_FRAME + LEN_PREFIX + READ_CHUNK,
            "allocated {} bytes",
            reader.buf.capacity()
        );
    }

    #[test]
    fn a_too_long_line_is_refused_even_when_its_newline_arrived_with_it() {
        let mut reader = FrameReader::new(&b"abcdef\n"[..], Framing::Lines).with_max(5);
        assert_eq!(
            frame_kind(reader.read_frame()),
            ErrorKind::FrameTooLarge { len: 6, max: 5 }
        );
    }

    #[test]
    fn a_line_of_exactly_max_bytes_may_end_in_crlf_even_read_byte_by_byte() {
        let mut reader =
            FrameReader::new(Pieces::new(b"12345\r\n", &[1]), Framing::Lines).with_max(5);
        assert_eq!(reader.read_frame().unwrap(), Some(b"12345".to_vec()));
    }

    #[test]
    fn reading_stops_at_about_max_plus_one_chunk() {
        let endless = vec![b'x'; 4 * DEFAULT_MAX_FRAME];
        let mut reader = FrameReader::new(Pieces::new(&endless, &[READ_CHUNK]), Framing::Lines);
        let _ = frame_kind(reader.read_frame());
        let served = reader.get_ref().served;
        assert!(
            served <= DEFAULT_MAX_FRAME + READ_CHUNK,
            "read {served} bytes"
        );
    }

    // --- I/O errors ------------------------------------------------------------

    #[test]
    fn interrupted_reads_are_retried() {
        let mut reader =
            FrameReader::new(Pieces::new(b"ab\ncd\n", &[0, 1, 0, 0, 2]), Framing::Lines);
        assert_eq!(read_all(&mut reader).unwrap(), [b"ab", b"cd"]);
    }

    /// A `Read` that fails once with `WouldBlock` (a read timeout) after `first`.
    struct TimesOutOnce {
        first: &'static [u8],
        then: &'static [u8],
        calls: usize,
    }

    impl Read for TimesOutOnce {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            let part = match self.calls {
                1 => self.first,
                2 => return Err(io::ErrorKind::WouldBlock.into()),
                3 => self.then,
                _ => &[],
            };
            buf[..part.len()].copy_from_slice(part);
            Ok(part.len())
        }
    }

    #[test]
    fn a_read_timeout_keeps_the_partial_frame_for_the_next_call() {
        let stream = TimesOutOnce {
            first: b"\0\0\0\x03a",
            then: b"bc",
            calls: 0,
        };
        let mut reader = FrameReader::new(stream, Framing::LengthPrefixed);
        let e = reader.read_frame().unwrap_err();
        assert_eq!((e.step(), e.kind()), (Step::Read, &ErrorKind::TimedOut));
        assert_eq!(reader.buffered(), b"\0\0\0\x03a");
        assert_eq!(reader.read_frame().unwrap(), Some(b"abc".to_vec()));
    }

    struct Failing(io::ErrorKind);

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
    }

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_os_error_while_reading_names_the_read_step() {
        let mut reader = FrameReader::new(Failing(io::ErrorKind::ConnectionReset), Framing::Lines);
        let e = reader.read_frame().unwrap_err();
        assert_eq!(
            (e.step(), e.kind()),
            (Step::Read, &ErrorKind::ConnectionReset)
        );
        assert!(e.io_error().is_some());
    }

    #[test]
    fn an_os_error_while_writing_names_the_write_step() {
        let mut writer = FrameWriter::new(Failing(io::ErrorKind::BrokenPipe), Framing::Lines);
        let e = writer.write_frame(b"hi").unwrap_err();
        assert_eq!((e.step(), e.kind()), (Step::Write, &ErrorKind::BrokenPipe));
    }

    /// A `Read` that fails with a whole sockstep error inside its `io::Error`,
    /// as our own streams do.
    struct CarriesOurError;

    impl Read for CarriesOurError {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(Error::new(Step::Connect, ErrorKind::TimedOut).into())
        }
    }

    #[test]
    fn a_sockstep_error_carried_by_the_stream_comes_out_unchanged() {
        let mut reader = FrameReader::new(CarriesOurError, Framing::LengthPrefixed);
        let e = reader.read_frame().unwrap_err();
        assert_eq!((e.step(), e.kind()), (Step::Connect, &ErrorKind::TimedOut));
    }

    /// A `Write` that records every `write` call, takes at most `limit` bytes per
    /// call, and fails with `Interrupted` on the first write and the first flush.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        limit: Option<usize>,
        interrupted_write: bool,
        interrupted_flush: bool,
        flushes: usize,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.interrupted_write {
                self.interrupted_write = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.limit.map_or(buf.len(), |limit| limit.min(buf.len()));
            self.writes.push(buf[..n].to_vec());
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            if !self.interrupted_flush {
                self.interrupted_flush = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn a_frame_is_one_write_of_prefix_and_body_then_a_flush() {
        let mut writer = FrameWriter::new(Recorder::default(), Framing::LengthPrefixed);
        writer.write_frame(b"body").unwrap();
        let recorder = writer.into_inner();
        assert_eq!(recorder.writes, [b"\0\0\0\x04body"]);
        assert_eq!(recorder.flushes, 1);
    }

    #[test]
    fn interrupted_and_partial_writes_still_send_the_whole_frame() {
        let recorder = Recorder {
            limit: Some(3),
            ..Recorder::default()
        };
        let mut writer = FrameWriter::new(recorder, Framing::Lines);
        writer.write_frame(b"hello").unwrap();
        assert_eq!(writer.get_ref().writes.concat(), b"hello\n");
    }

    #[test]
    fn a_refused_message_writes_nothing() {
        let mut writer = FrameWriter::new(Vec::new(), Framing::Lines).with_max(3);
        assert!(writer.write_frame(b"a\nb").is_err());
        assert!(writer.write_frame(b"toolong").is_err());
        assert!(writer.get_ref().is_empty());
    }

    #[test]
    fn into_inner_gives_the_stream_back_without_the_buffered_bytes() {
        let mut reader = FrameReader::new(&b"first\nsecond\n"[..], Framing::Lines);
        assert_eq!(reader.read_frame().unwrap(), Some(b"first".to_vec()));
        assert_eq!(reader.buffered(), b"second\n");
        let rest: &[u8] = reader.into_inner();
        assert!(
            rest.is_empty(),
            "the slice was read to its end into the buffer"
        );
    }
}
