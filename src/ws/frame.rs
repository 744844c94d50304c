//! The WebSocket frame (RFC 6455 §5): parse and emit as pure functions over bytes.
//!
//! # The idea
//!
//! After the handshake, both sides cut the TCP byte stream into *frames*. A
//! frame is a header of 2 to 14 bytes and a payload:
//!
//! ```text
//!  byte 0: FIN RSV1 RSV2 RSV3 opcode(4)   FIN = last frame of a message; RSV = extensions
//!  byte 1: MASK length(7)                 MASK = a 4-byte key follows the length
//!  length 0..=125: that is the length
//!  length 126:     the next 2 bytes are the length (big-endian)
//!  length 127:     the next 8 bytes are the length (big-endian, top bit 0)
//!  [4-byte masking key, if MASK]
//!  payload, XORed with the key byte by byte (key[i % 4]) if masked
//! ```
//!
//! The opcode says what the payload is: the first frame of a text or binary
//! message, a continuation of one, or a *control* frame — close, ping, pong —
//! which may arrive between the fragments of a message and is never fragmented.
//!
//! # Incremental parsing
//!
//! As in [`http::wire`](crate::http::wire), the reader appends what each `read()`
//! returned to one buffer and calls [`parse_frame`] on it: the answer is
//! [`Parsed::Partial`] (read more), [`Parsed::Complete`] with the frame and how
//! many bytes it took, or a [`ProtocolError`] carrying the close code the peer
//! has earned. Every rule that the header alone can break is checked as soon as
//! the header has arrived, and the announced length is checked against the
//! maximum *before* the payload is waited for or allocated: four bytes claiming
//! an 8 EiB payload get 1009 at once, not an allocation.
//!
//! # Strict on purpose
//!
//! Where RFC 6455 says "MUST" to the sender, this parser refuses a frame that
//! breaks it, with 1002 (protocol error) unless said otherwise:
//!
//! - **RSV1–3 set**: they belong to extensions, and we negotiate none (§5.2).
//! - **A reserved opcode** (3–7, 11–15) (§5.2).
//! - **A control frame that is fragmented or carries more than 125 bytes** (§5.5).
//! - **A client frame that is not masked**, read by a server, or **a server frame
//!   that is masked**, read by a client (§5.1).
//! - **A 64-bit length with the top bit set** (§5.2: "the most significant bit
//!   MUST be 0").
//! - **A length not in its shortest form** (126 written with the 16-bit form is
//!   fine; 100 written that way is not). §5.2 says "the minimal number of bytes
//!   MUST be used"; we refuse the rest for the reason `http::wire` refuses
//!   ambiguous lengths: one length, one spelling.
//! - **A payload over the maximum**: 1009 (message too big).
//! - **A bad close payload**: one byte (a code needs two), a code that may not be
//!   sent (see [`CloseCode::is_allowed_on_wire`]); a reason that is not UTF-8 gets
//!   1007 (invalid payload data).
//!
//! Text that is not UTF-8 is a message-level rule (a character may be split
//! between fragments); [`Decoder`](super::message::Decoder) checks it.
//!
//! Emitting ([`Frame::to_bytes`]) writes what it is given, even a frame these
//! rules refuse: the tests need to send broken frames, and
//! [`WebSocket`](super::WebSocket) only ever builds valid ones.

use std::fmt;

use crate::error::{Error, ErrorKind};
use crate::step::{Side, Step};

/// The largest frame header: 2 bytes, an 8-byte length and a 4-byte mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (§5.5): it must fit the 7-bit length.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a frame carries (§5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: the next fragment of the message being sent.
    Continuation,
    /// 0x1: the first (or only) frame of a text message, UTF-8.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: "I am closing", with an optional code and reason.
    Close,
    /// 0x9: "are you there?" — the peer answers with a pong carrying the same payload.
    Ping,
    /// 0xA: the answer to a ping (or an unasked heartbeat).
    Pong,
}

impl Opcode {
    /// The opcode for the 4-bit value on the wire; `None` for the reserved ones.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: opcodes with the high bit set (§5.5).
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// A close status code (§7.4): why a connection is closing.
///
/// ```
/// use sockstep::ws::CloseCode;
///
/// assert_eq!(CloseCode::PROTOCOL_ERROR.to_string(), "1002 (protocol error)");
/// assert!(CloseCode(4000).is_allowed_on_wire());
/// assert!(!CloseCode::NO_STATUS.is_allowed_on_wire());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutting down, page closed).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data this endpoint cannot accept (binary to a text-only one).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: never sent; stands for "the close frame had no code".
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: never sent; stands for "the connection ended without a close frame".
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with its type, e.g. text that is not UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message that violates the endpoint's policy (a generic refusal).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: (client) the server did not negotiate an extension the client requires.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: (server) an unexpected condition stopped the server.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1015: never sent; stands for "the TLS handshake failed".
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether a close frame may carry this code (§7.4.1, §7.4.2 and the IANA
    /// registry): 1000–1003, 1007–1014, and 3000–4999 (registered and private
    /// codes).
    ///
    /// Refused: below 1000 (unused), 1004 (reserved), 1005, 1006 and 1015 (they
    /// stand for situations in which no close frame was received, so by
    /// definition none carries them), 1016–2999 (reserved for future RFCs), and
    /// 5000 and above (undefined). 1012–1014 are not in RFC 6455 but are
    /// registered with IANA (service restart, try again later, bad gateway) and
    /// sent by real servers, so they are allowed.
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// The code's name in the IANA registry, in lower case; `""` for codes without one.
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status received",
            1006 => "abnormal closure",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "TLS handshake",
            3000..=3999 => "registered",
            4000..=4999 => "private use",
            _ => "",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "" => write!(f, "{}", self.0),
            name => write!(f, "{} ({name})", self.0),
        }
    }
}

/// A broken rule, with the close code the peer has earned by breaking it.
///
/// After one there is no telling where the next frame starts: the endpoint sends
/// a close frame with [`code`](ProtocolError::code) and ends the connection
/// (RFC 6455 §7.1.7, "Fail the WebSocket Connection").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    code: CloseCode,
    reason: &'static str,
}

impl ProtocolError {
    /// A broken rule and its code.
    pub fn new(code: CloseCode, reason: &'static str) -> ProtocolError {
        ProtocolError { code, reason }
    }

    /// The close code to send: 1002, 1007 or 1009.
    pub fn code(&self) -> CloseCode {
        self.code
    }

    /// Which rule was broken, in a few words; short enough to be a close reason.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for ProtocolError {}

/// A protocol error becomes a sockstep error at [`Step::Frame`], like a bad
/// frame of [`tcp::framing`](crate::tcp::framing): the stream can no longer be
/// cut into frames.
impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Error {
        Error::new(
            Step::Frame,
            ErrorKind::WebSocket {
                code: e.code.0,
                reason: e.reason.to_string(),
            },
        )
    }
}

fn protocol_error(reason: &'static str) -> ProtocolError {
    ProtocolError::new(CloseCode::PROTOCOL_ERROR, reason)
}

/// One frame, with its payload unmasked.
///
/// `mask` is the key the frame was (or will be) masked with on the wire; the
/// payload here is always the plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Whether this is the last frame of its message (always true for control frames).
    pub fin: bool,
    /// What the payload is.
    pub opcode: Opcode,
    /// The masking key: clients mask every frame, servers none.
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A final, unmasked frame.
    ///
    /// ```
    /// use sockstep::ws::{Frame, Opcode};
    ///
    /// // RFC 6455 §5.7: a single-frame unmasked text message.
    /// let frame = Frame::new(Opcode::Text, b"Hello".to_vec());
    /// assert_eq!(frame.to_bytes(), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    /// ```
    pub fn new(opcode: Opcode, payload: Vec<u8>) -> Frame {
        Frame {
            fin: true,
            opcode,
            mask: None,
            payload,
        }
    }

    /// A close frame: the code in two big-endian bytes, then the UTF-8 reason.
    /// [`CloseCode::NO_STATUS`] gives an empty payload, which is how "no code" is sent.
    pub fn close(code: CloseCode, reason: &str) -> Frame {
        let mut payload = Vec::new();
        if code != CloseCode::NO_STATUS {
            payload.extend_from_slice(&code.0.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
        }
        Frame::new(Opcode::Close, payload)
    }

    /// The same frame, masked with `key` on the wire.
    pub fn masked(mut self, key: [u8; 4]) -> Frame {
        self.mask = Some(key);
        self
    }

    /// The same frame with FIN set as given.
    pub fn with_fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    /// The frame as bytes on the wire: header, key, and the payload masked if a key is set.
    ///
    /// The length takes its shortest form. Nothing is checked: see the
    /// [module docs](self) for why.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_HEADER_LEN + self.payload.len());
        self.write_to(&mut out);
        out
    }

    /// Appends the frame's bytes to `out`, as [`to_bytes`](Frame::to_bytes).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | self.opcode.bits());
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.payload.len();
        // 126 and 127 in the 7-bit field are the escapes to the longer forms.
        if len <= 125 {
            out.push(mask_bit | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let start = out.len();
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend_from_slice(&self.payload);
                apply_mask(&mut out[start + 4..], key);
            }
            None => out.extend_from_slice(&self.payload),
        }
    }
}

/// XORs `data` with `key` repeated (§5.3): masks plain data and unmasks masked data alike.
///
/// Why clients mask at all: a browser lets any web page's script send bytes to
/// any server. Without masking, a script could make its frames look like an
/// HTTP request to a transparent proxy on the path, which might then cache a
/// poisoned answer for everybody (Huang et al., "Talking to Yourself for Fun
/// and Profit", 2011). With a fresh key per frame the script cannot choose the
/// bytes on the wire. Masking protects the network path, not the data: the key
/// travels in the clear.
///
/// ```
/// use sockstep::ws::frame::apply_mask;
///
/// let mut data = *b"Hello";
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(&data, b"Hello");
/// ```
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    // Eight bytes at a time: each chunk starts at a multiple of 8, so key[i % 4]
    // lines up with the key written twice.
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The answer of [`parse_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame, which took the first `consumed` bytes of the buffer.
    Complete {
        /// The frame, unmasked.
        frame: Frame,
        /// How many bytes of the buffer it took; the rest is the next frame's.
        consumed: usize,
    },
    /// The bytes so far are a valid beginning of a frame: read more, call again.
    Partial,
}

/// Parses one frame from the start of `buf`, or says that more bytes are needed.
///
/// `receiver` is the side doing the reading: [`Side::Server`] reads a client's
/// frames, which must be masked; [`Side::Client`] reads a server's, which must
/// not be. `max_payload` is the largest payload accepted; the announced length
/// is checked against it before the payload is waited for.
///
/// # Examples
/// ```
/// use sockstep::step::Side;
/// use sockstep::ws::frame::{parse_frame, Parsed};
/// use sockstep::ws::Opcode;
///
/// // RFC 6455 §5.7: a masked "Hello" from a client, then the start of another frame.
/// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0x81];
/// assert_eq!(parse_frame(&wire[..6], Side::Server, 1024)?, Parsed::Partial);
/// let Parsed::Complete { frame, consumed } = parse_frame(&wire, Side::Server, 1024)? else {
///     panic!("the whole frame is there");
/// };
/// assert_eq!((frame.opcode, frame.payload.as_slice()), (Opcode::Text, &b"Hello"[..]));
/// assert_eq!(consumed, 11);
///
/// // The same frame read by a client: servers never mask, so this is a violation.
/// assert_eq!(parse_frame(&wire, Side::Client, 1024).unwrap_err().code().0, 1002);
/// # Ok::<(), sockstep::ws::ProtocolError>(())
/// ```
///
/// # Errors
/// A [`ProtocolError`] whose code is what to close with: 1002 for a broken rule,
/// 1009 for a payload over `max_payload`, 1007 for a close reason that is not
/// UTF-8. The [module docs](self) list the rules.
pub fn parse_frame(
    buf: &[u8],
    receiver: Side,
    max_payload: usize,
) -> Result<Parsed, ProtocolError> {
    let [b0, b1, ..] = *buf else {
        return Ok(Parsed::Partial);
    };
    if b0 & 0x70 != 0 {
        return Err(protocol_error(
            "reserved bits set, but no extension was negotiated",
        ));
    }
    let Some(opcode) = Opcode::from_bits(b0 & 0x0F) else {
        return Err(protocol_error("reserved opcode"));
    };
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() && !fin {
        return Err(protocol_error("fragmented control frame"));
    }
    if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
        return Err(protocol_error("control frame payload over 125 bytes"));
    }
    match (receiver, masked) {
        (Side::Server, false) => return Err(protocol_error("client frame not masked")),
        (Side::Client, true) => return Err(protocol_error("server frame masked")),
        _ => {}
    }
    let (len, mut pos) = match len7 {
        126 => {
            let Some(&[a, b]) = buf.get(2..4) else {
                return Ok(Parsed::Partial);
            };
            let len = u16::from_be_bytes([a, b]);
            if len < 126 {
                return Err(protocol_error("length not in its shortest form"));
            }
            (u64::from(len), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(Parsed::Partial);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(protocol_error("64-bit length with the top bit set"));
            }
            if len <= u64::from(u16::MAX) {
                return Err(protocol_error("length not in its shortest form"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    // Checked before the payload is awaited: the peer only announced it.
    let len = match usize::try_from(len) {
        Ok(len) if len <= max_payload => len,
        _ => {
            return Err(ProtocolError::new(
                CloseCode::MESSAGE_TOO_BIG,
                "frame payload over the maximum",
            ));
        }
    };
    let mask = if masked {
        let Some(key) = buf.get(pos..pos + 4) else {
            return Ok(Parsed::Partial);
        };
        pos += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    // `len <= max_payload`, a usize, and `pos <= 14`: the sum could only
    // overflow for a maximum within 14 of usize::MAX, and then the buffer is shorter.
    let Some(data) = pos.checked_add(len).and_then(|end| buf.get(pos..end)) else {
        return Ok(Parsed::Partial);
    };
    let mut payload = data.to_vec();
    if let Some(key) = mask {
        apply_mask(&mut payload, key);
    }
    if opcode == Opcode::Close {
        parse_close_payload(&payload)?;
    }
    Ok(Parsed::Complete {
        frame: Frame {
            fin,
            opcode,
            mask,
            payload,
        },
        consumed: pos + len,
    })
}

/// The code and reason of a close frame's payload (§5.5.1).
///
/// An empty payload means "no code": [`CloseCode::NO_STATUS`] and an empty reason.
///
/// ```
/// use sockstep::ws::frame::parse_close_payload;
/// use sockstep::ws::CloseCode;
///
/// assert_eq!(parse_close_payload(b"\x03\xe8bye")?, (CloseCode::NORMAL, "bye".to_string()));
/// assert_eq!(parse_close_payload(b"")?.0, CloseCode::NO_STATUS);
/// assert_eq!(parse_close_payload(b"\x03\xed").unwrap_err().code().0, 1002); // 1005 may not be sent
/// # Ok::<(), sockstep::ws::ProtocolError>(())
/// ```
///
/// # Errors
/// 1002 for a one-byte payload or a code that may not be sent
/// ([`CloseCode::is_allowed_on_wire`]); 1007 for a reason that is not UTF-8.
pub fn parse_close_payload(payload: &[u8]) -> Result<(CloseCode, String), ProtocolError> {
    match payload {
        [] => Ok((CloseCode::NO_STATUS, String::new())),
        [_] => Err(protocol_error("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_allowed_on_wire() {
                return Err(protocol_error("close code that may not be sent"));
            }
            let reason = String::from_utf8(reason.to_vec()).map_err(|_| {
                ProtocolError::new(CloseCode::INVALID_PAYLOAD, "close reason not UTF-8")
            })?;
            Ok((code, reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(wire: &[u8], receiver: Side) -> u16 {
        parse_frame(wire, receiver, 1 << 20)
            .expect_err("should be refused")
            .code()
            .0
    }

    #[test]
    fn every_header_rule_is_checked_from_the_first_two_bytes() {
        assert_eq!(code_of(&[0xC1, 0x80], Side::Server), 1002); // RSV1
        assert_eq!(code_of(&[0x83, 0x80], Side::Server), 1002); // opcode 3
        assert_eq!(code_of(&[0x0B, 0x80], Side::Server), 1002); // opcode 11
        assert_eq!(code_of(&[0x09, 0x80], Side::Server), 1002); // fragmented ping
        assert_eq!(code_of(&[0x89, 0xFE], Side::Server), 1002); // ping of 126
        assert_eq!(code_of(&[0x81, 0x00], Side::Server), 1002); // unmasked from a client
        assert_eq!(code_of(&[0x81, 0x80], Side::Client), 1002); // masked from a server
    }

    #[test]
    fn lengths_must_take_their_shortest_form() {
        assert_eq!(code_of(&[0x82, 0x7E, 0x00, 0x7D], Side::Client), 1002);
        let mut wire = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
        assert_eq!(code_of(&wire, Side::Client), 1002);
        wire[2] = 0x80; // the top bit of the 64-bit length
        assert_eq!(code_of(&wire, Side::Client), 1002);
    }

    #[test]
    fn an_announced_payload_over_the_maximum_is_refused_before_it_arrives() {
        let wire = [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(code_of(&wire, Side::Client), 1009);
        let wire = [0x82, 0x7E, 0x01, 0x00];
        assert_eq!(
            parse_frame(&wire, Side::Client, 255).unwrap_err().code().0,
            1009
        );
        assert_eq!(
            parse_frame(&wire, Side::Client, 256).unwrap(),
            Parsed::Partial
        );
    }

    #[test]
    fn bad_close_payloads_get_1002_or_1007() {
        assert_eq!(code_of(&[0x88, 0x01, 0x03], Side::Client), 1002);
        assert_eq!(code_of(&[0x88, 0x02, 0x03, 0xEE], Side::Client), 1002); // 1006
        assert_eq!(code_of(&[0x88, 0x02, 0x13, 0x88], Side::Client), 1002); // 5000
        assert_eq!(code_of(&[0x88, 0x03, 0x03, 0xE8, 0xFF], Side::Client), 1007);
    }

    #[test]
    fn masking_matches_bytewise_xor_at_every_length() {
        let key = [1, 2, 3, 4];
        for len in 0..40 {
            let mut data: Vec<u8> = (0..len as u8).collect();
            apply_mask(&mut data, key);
            let expected: Vec<u8> = (0..len as u8)
                .map(|i| i ^ key[usize::from(i) % 4])
                .collect();
            assert_eq!(data, expected);
        }
    }

    #[test]
    fn emitted_frames_parse_back_the_same() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let frame = Frame::new(Opcode::Binary, vec![7; len]).masked([9, 8, 7, 6]);
            let wire = frame.to_bytes();
            let parsed = parse_frame(&wire, Side::Server, 1 << 20).unwrap();
            assert_eq!(
                parsed,
                Parsed::Complete {
                    frame,
                    consumed: wire.len()
                }
            );
        }
    }
}
