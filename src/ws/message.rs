//! Messages: frames put back together (RFC 6455 §5.4), as a pure decoder.
//!
//! # The idea
//!
//! An application sends *messages*; the wire carries *frames*. A message may go
//! as one frame (FIN set) or be *fragmented*: a first frame with the opcode
//! (text or binary) and FIN clear, any number of continuation frames, and a
//! last continuation frame with FIN set. A sender fragments when it does not
//! know the length in advance, or to keep one large message from holding up
//! the line: control frames may be sent between fragments, so a ping is
//! answered even in the middle of a 1 GiB upload.
//!
//! ```text
//! [Text, FIN=0 "Hel"] [Ping "?"] [Continuation, FIN=1 "lo"]  →  Ping("?"), Text("Hello")
//! ```
//!
//! [`Decoder`] is the receiving half as a pure state machine: feed it bytes in
//! whatever pieces `read()` returned, take whole [`Message`]s out. It does no
//! I/O, so the property tests can push any split of any byte stream through it
//! without a socket; [`WebSocket`](super::WebSocket) is the same decoder with a
//! socket attached.
//!
//! # Rules at the message level
//!
//! - Messages do not interleave: a new text or binary frame while a fragmented
//!   message is unfinished, or a continuation frame with nothing to continue, is
//!   1002.
//! - A text message must be UTF-8 as a whole; a character may be split across
//!   fragments. Each fragment is checked as it arrives — so a stream of garbage
//!   is refused at its first fragment, not after the whole message — allowing
//!   only an unfinished character at the end; the finished message is checked
//!   once more. Not UTF-8: 1007.
//! - The reassembled message may not exceed `max_message` bytes: 1009, found
//!   as soon as a fragment's header announces a length that crosses it.
//! - After a close frame nothing more is read.

use crate::step::Side;
use crate::ws::frame::{
    CloseCode, Frame, MAX_CONTROL_PAYLOAD, Opcode, Parsed, ProtocolError, parse_close_payload,
    parse_frame,
};

/// What arrives on a WebSocket: a data message, or a control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, UTF-8 by the protocol's rules.
    Text(String),
    /// A binary message: any bytes.
    Binary(Vec<u8>),
    /// A ping, with up to 125 bytes the pong must echo.
    Ping(Vec<u8>),
    /// A pong: the answer to a ping (or an unasked heartbeat).
    Pong(Vec<u8>),
    /// The peer is closing. `code` is [`CloseCode::NO_STATUS`] (1005) when the
    /// close frame carried none; `reason` may be empty.
    Close {
        /// Why the peer closes.
        code: CloseCode,
        /// Why, in the peer's words (at most 123 bytes of UTF-8).
        reason: String,
    },
}

impl Message {
    /// The message as unmasked frames: a text or binary message cut into
    /// payloads of at most `frame_size` bytes (at least one frame, even when
    /// empty; 0 counts as 1), a control message as one frame.
    ///
    /// Fragments of a text message are cut at byte boundaries, which may fall
    /// inside a character: the rules ask for UTF-8 of the message, not of each frame.
    ///
    /// ```
    /// use sockstep::ws::{Message, Opcode};
    ///
    /// let frames = Message::Text("Hello".into()).to_frames(3);
    /// assert_eq!(frames.len(), 2);
    /// assert_eq!((frames[0].opcode, frames[0].fin), (Opcode::Text, false));
    /// assert_eq!((frames[1].opcode, frames[1].fin), (Opcode::Continuation, true));
    /// ```
    pub fn to_frames(&self, frame_size: usize) -> Vec<Frame> {
        match self {
            Message::Text(text) => fragments(Opcode::Text, text.as_bytes(), frame_size),
            Message::Binary(data) => fragments(Opcode::Binary, data, frame_size),
            Message::Ping(data) => vec![Frame::new(Opcode::Ping, data.clone())],
            Message::Pong(data) => vec![Frame::new(Opcode::Pong, data.clone())],
            Message::Close { code, reason } => vec![Frame::close(*code, reason)],
        }
    }
}

fn fragments(opcode: Opcode, data: &[u8], frame_size: usize) -> Vec<Frame> {
    if data.is_empty() {
        return vec![Frame::new(opcode, Vec::new())];
    }
    let count = data.len().div_ceil(frame_size.max(1));
    data.chunks(frame_size.max(1))
        .enumerate()
        .map(|(i, piece)| Frame {
            fin: i + 1 == count,
            opcode: if i == 0 { opcode } else { Opcode::Continuation },
            mask: None,
            payload: piece.to_vec(),
        })
        .collect()
}

/// A fragmented message that has not seen its last frame yet.
#[derive(Debug)]
struct Unfinished {
    text: bool,
    data: Vec<u8>,
    /// How much of `data` is known to be valid UTF-8 (text only).
    checked: usize,
}

#[derive(Debug)]
enum State {
    Open,
    /// A close frame was decoded: nothing after it is read.
    Closed,
    /// A rule was broken: the same error, every time.
    Failed(ProtocolError),
}

/// Turns a byte stream into messages: frames parsed, fragments reassembled,
/// every rule checked. Pure: [`feed`](Decoder::feed) bytes in, take messages out.
///
/// # Memory
///
/// Call [`next_message`](Decoder::next_message) until it answers `Ok(None)`
/// before feeding more. Then the buffer holds less than one frame — at most
/// [`MAX_HEADER_LEN`](super::frame::MAX_HEADER_LEN) + `max_frame` bytes — plus
/// what the next feed adds, and an unfinished message at most `max_message`.
///
/// # Examples
/// ```
/// use sockstep::step::Side;
/// use sockstep::ws::{Decoder, Message};
///
/// // RFC 6455 §5.7: "Hel" + "lo" in two unmasked frames, read by a client,
/// // with an unmasked ping between them.
/// let wire = [0x01, 0x03, b'H', b'e', b'l', 0x89, 0x00, 0x80, 0x02, b'l', b'o'];
/// let mut decoder = Decoder::new(Side::Client, 1024, 1024);
/// decoder.feed(&wire[..4]);
/// assert_eq!(decoder.next_message()?, None); // the first frame is not whole yet
/// decoder.feed(&wire[4..]);
/// assert_eq!(decoder.next_message()?, Some(Message::Ping(vec![])));
/// assert_eq!(decoder.next_message()?, Some(Message::Text("Hello".into())));
/// assert_eq!(decoder.next_message()?, None);
/// # Ok::<(), sockstep::ws::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct Decoder {
    receiver: Side,
    max_frame: usize,
    max_message: usize,
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`; the bytes before it are decoded.
    start: usize,
    unfinished: Option<Unfinished>,
    state: State,
}

impl Decoder {
    /// A decoder for the side that reads (see [`parse_frame`]), accepting
    /// frames of up to `max_frame` payload bytes and messages of up to
    /// `max_message` bytes.
    pub fn new(receiver: Side, max_frame: usize, max_message: usize) -> Decoder {
        Decoder {
            receiver,
            max_frame,
            max_message,
            buf: Vec::new(),
            start: 0,
            unfinished: None,
            state: State::Open,
        }
    }

    /// Appends bytes that arrived. After a close frame or an error they are dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::Open) {
            return;
        }
        // Move the undecoded tail to the front once per feed, not once per
        // frame: many small frames in one read cost one copy.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes of a frame that has begun but not ended: what a connection that
    /// ends now would cut off.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether a fragmented message has begun and not ended.
    pub fn in_message(&self) -> bool {
        self.unfinished.is_some()
    }

    /// The next whole message, `Ok(None)` when more bytes are needed (or after
    /// a close).
    ///
    /// # Errors
    /// The [`ProtocolError`] of the first broken rule, and the same one on every
    /// later call: after it the stream cannot be trusted.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            match &self.state {
                State::Open => {}
                State::Closed => return Ok(None),
                State::Failed(e) => return Err(e.clone()),
            }
            let max_payload = self.max_payload();
            let result = match parse_frame(&self.buf[self.start..], self.receiver, max_payload) {
                Ok(Parsed::Partial) => return Ok(None),
                Ok(Parsed::Complete { frame, consumed }) => {
                    self.start += consumed;
                    self.on_frame(frame)
                }
                // The limit that was crossed may have been the message's room.
                Err(e)
                    if e.code() == CloseCode::MESSAGE_TOO_BIG && max_payload < self.max_frame =>
                {
                    Err(too_big())
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(None) => continue,
                Ok(Some(message)) => {
                    if matches!(message, Message::Close { .. }) {
                        self.state = State::Closed;
                        self.buf = Vec::new();
                        self.start = 0;
                    }
                    return Ok(Some(message));
                }
                Err(e) => {
                    self.state = State::Failed(e.clone());
                    self.buf = Vec::new();
                    self.start = 0;
                    return Err(e);
                }
            }
        }
    }

    /// The largest payload the next frame may announce: the frame limit, or
    /// less when the message being assembled has less room left — so a fragment
    /// that would cross `max_message` is refused from its header, before its
    /// payload is waited for. Never below 125, so that a control frame between
    /// fragments always fits; a small data frame that crosses the limit is
    /// caught once it is whole.
    fn max_payload(&self) -> usize {
        let used = self.unfinished.as_ref().map_or(0, |u| u.data.len());
        let room = self.max_message.saturating_sub(used);
        self.max_frame.min(room.max(MAX_CONTROL_PAYLOAD))
    }

    /// One parsed frame: a control message, a whole data message, or a piece of one.
    fn on_frame(&mut self, frame: Frame) -> Result<Option<Message>, ProtocolError> {
        let text = match frame.opcode {
            Opcode::Ping => return Ok(Some(Message::Ping(frame.payload))),
            Opcode::Pong => return Ok(Some(Message::Pong(frame.payload))),
            Opcode::Close => {
                let (code, reason) = parse_close_payload(&frame.payload)?;
                return Ok(Some(Message::Close { code, reason }));
            }
            Opcode::Text => true,
            Opcode::Binary => false,
            Opcode::Continuation => return self.on_continuation(frame),
        };
        if self.unfinished.is_some() {
            return Err(protocol("a new message began inside a fragmented one"));
        }
        if frame.payload.len() > self.max_message {
            return Err(too_big());
        }
        if frame.fin {
            return finish(text, frame.payload).map(Some);
        }
        let mut unfinished = Unfinished {
            text,
            data: frame.payload,
            checked: 0,
        };
        check_utf8_so_far(&mut unfinished)?;
        self.unfinished = Some(unfinished);
        Ok(None)
    }

    fn on_continuation(&mut self, frame: Frame) -> Result<Option<Message>, ProtocolError> {
        let Some(unfinished) = &mut self.unfinished else {
            return Err(protocol("a continuation frame with no message to continue"));
        };
        if frame.payload.len() > self.max_message - unfinished.data.len() {
            return Err(too_big());
        }
        unfinished.data.extend_from_slice(&frame.payload);
        check_utf8_so_far(unfinished)?;
        if !frame.fin {
            return Ok(None);
        }
        match self.unfinished.take() {
            Some(done) => finish(done.text, done.data).map(Some),
            None => Ok(None), // unreachable: `unfinished` was Some just above
        }
    }
}

fn protocol(reason: &'static str) -> ProtocolError {
    ProtocolError::new(CloseCode::PROTOCOL_ERROR, reason)
}

fn too_big() -> ProtocolError {
    ProtocolError::new(CloseCode::MESSAGE_TOO_BIG, "message over the maximum")
}

fn not_utf8() -> ProtocolError {
    ProtocolError::new(CloseCode::INVALID_PAYLOAD, "text message not valid UTF-8")
}

/// Checks the new part of an unfinished text message. `from_utf8` says how far
/// the bytes are valid, and whether the error is a wrong byte (`error_len` is
/// `Some`: no later fragment can fix it) or only a character cut off at the
/// end (`None`: the next fragment may finish it).
fn check_utf8_so_far(unfinished: &mut Unfinished) -> Result<(), ProtocolError> {
    if !unfinished.text {
        return Ok(());
    }
    let new = &unfinished.data[unfinished.checked..];
    match std::str::from_utf8(new) {
        Ok(_) => unfinished.checked = unfinished.data.len(),
        Err(e) if e.error_len().is_none() => unfinished.checked += e.valid_up_to(),
        Err(_) => return Err(not_utf8()),
    }
    Ok(())
}

fn finish(text: bool, data: Vec<u8>) -> Result<Message, ProtocolError> {
    if text {
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| not_utf8())
    } else {
        Ok(Message::Binary(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(wire: &[u8], max_message: usize) -> Result<Vec<Message>, ProtocolError> {
        let mut decoder = Decoder::new(Side::Client, 1 << 20, max_message);
        decoder.feed(wire);
        let mut out = Vec::new();
        while let Some(m) = decoder.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    fn wire_of(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(Frame::to_bytes).collect()
    }

    #[test]
    fn a_character_split_between_fragments_is_fine() {
        let frames = Message::Text("é".into()).to_frames(1);
        assert_eq!(frames.len(), 2);
        assert_eq!(
            decode_all(&wire_of(&frames), 100).unwrap(),
            [Message::Text("é".into())]
        );
    }

    #[test]
    fn invalid_utf8_is_refused_at_the_first_bad_fragment() {
        // 0xFF can begin no character: refused before the final frame arrives.
        let first = Frame::new(Opcode::Text, vec![b'a', 0xFF]).with_fin(false);
        let e = decode_all(&first.to_bytes(), 100).unwrap_err();
        assert_eq!(e.code(), CloseCode::INVALID_PAYLOAD);
        // A character cut off at the end of the whole message is refused too.
        let whole = Frame::new(Opcode::Text, vec![b'a', 0xC3]);
        assert_eq!(
            decode_all(&whole.to_bytes(), 100).unwrap_err().code().0,
            1007
        );
    }

    #[test]
    fn messages_may_not_interleave() {
        let a = Frame::new(Opcode::Text, b"a".to_vec()).with_fin(false);
        let b = Frame::new(Opcode::Binary, b"b".to_vec());
        assert_eq!(
            decode_all(&wire_of(&[a, b]), 100).unwrap_err().code().0,
            1002
        );
        let lone = Frame::new(Opcode::Continuation, b"c".to_vec());
        assert_eq!(
            decode_all(&lone.to_bytes(), 100).unwrap_err().code().0,
            1002
        );
    }

    #[test]
    fn a_message_over_the_maximum_is_refused_at_the_fragment_that_crosses_it() {
        let frames = Message::Binary(vec![0; 1000]).to_frames(400);
        let wire = wire_of(&frames);
        assert_eq!(decode_all(&wire, 1000).unwrap().len(), 1);
        // With a maximum of 900 the third fragment (200 bytes) crosses it: its
        // 4-byte header is enough to tell.
        let cut = frames[0].to_bytes().len() + frames[1].to_bytes().len() + 4;
        assert_eq!(decode_all(&wire[..cut], 900).unwrap_err().code().0, 1009);
        // A small fragment that crosses it is caught once whole.
        let small = Message::Binary(vec![0; 10]).to_frames(4);
        assert_eq!(decode_all(&wire_of(&small), 9).unwrap_err().code().0, 1009);
    }

    #[test]
    fn nothing_after_a_close_is_read_and_errors_repeat() {
        let wire = wire_of(&[
            Frame::close(CloseCode::NORMAL, "bye"),
            Frame::new(Opcode::Text, b"late".to_vec()),
        ]);
        let got = decode_all(&wire, 100).unwrap();
        assert_eq!(
            got,
            [Message::Close {
                code: CloseCode::NORMAL,
                reason: "bye".into()
            }]
        );
        let mut decoder = Decoder::new(Side::Client, 100, 100);
        decoder.feed(&[0x83, 0x00]);
        assert!(decoder.next_message().is_err());
        decoder.feed(&Frame::new(Opcode::Text, b"ok".to_vec()).to_bytes());
        assert_eq!(decoder.next_message().unwrap_err().code().0, 1002);
    }
}
