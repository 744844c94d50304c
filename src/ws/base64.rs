//! Base64 (RFC 4648 §4): bytes as text, for the handshake's key and accept headers.
//!
//! # The idea
//!
//! HTTP header values are text, and the handshake needs to carry bytes in them
//! (a random 16-byte key, a 20-byte SHA-1 digest). Base64 cuts the bytes into
//! groups of 6 bits and writes each group as one of 64 safe characters
//! (`A–Z a–z 0–9 + /`): every 3 bytes become 4 characters. A last group of 1 or
//! 2 bytes is padded with `=` so the text is always a multiple of 4 long:
//!
//! ```text
//! "foo"  → 01100110 01101111 01101111 → 011001 100110 111101 101111 → "Zm9v"
//! "f"    → 01100110                  → 011001 10(0000)             → "Zg=="
//! ```
//!
//! # Strict decoding
//!
//! [`decode`] accepts only what [`encode`] writes: the standard alphabet, padding
//! present and only at the end, no whitespace or line breaks, and the unused
//! bits of the last character zero (so every byte string has exactly one text).
//! RFC 4648 §3.3 and §3.5 allow a decoder to refuse all of those, and one text
//! per value is what a handshake check wants: a key is compared as text after
//! decoding proves it is 16 bytes.

use std::fmt;

/// The standard alphabet (RFC 4648 Table 1): the character for each 6-bit value.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Marks a byte that is not in [`ALPHABET`] in the [`REVERSE`] table.
const INVALID: u8 = 0xFF;

/// The 6-bit value of each alphabet byte, [`INVALID`] for every other byte.
const REVERSE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// `data` in standard Base64 with padding.
///
/// # Examples
/// ```
/// use sockstep::ws::base64;
///
/// assert_eq!(base64::encode(b"foob"), "Zm9vYg==");
/// ```
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        // A group of k bytes carries 8k bits: k + 1 characters, then padding.
        for i in 0..4 {
            if i <= group.len() {
                let six = (n >> (18 - 6 * i)) & 0x3F;
                out.push(char::from(ALPHABET[six as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a text is not strict Base64, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    position: usize,
    reason: &'static str,
}

impl DecodeError {
    /// The byte offset in the text where the problem was found.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What is wrong, in a few words.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not Base64 at byte {}: {}", self.position, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// The bytes that `text` encodes, if it is strict Base64 (see the [module docs](self)).
///
/// # Examples
/// ```
/// use sockstep::ws::base64;
///
/// assert_eq!(base64::decode("Zm9vYg==")?, b"foob");
/// assert!(base64::decode("Zm9vYg").is_err()); // padding is required
/// assert!(base64::decode("Zm9vYh==").is_err()); // the unused bits must be zero
/// # Ok::<(), base64::DecodeError>(())
/// ```
///
/// # Errors
/// A [`DecodeError`] for a length that is not a multiple of 4, a byte outside
/// the alphabet, `=` anywhere but the last one or two places, or non-zero
/// unused bits before the padding.
pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let bytes = text.as_bytes();
    let error = |position, reason| Err(DecodeError { position, reason });
    if !bytes.len().is_multiple_of(4) {
        return error(bytes.len(), "length is not a multiple of 4");
    }
    let padding = bytes
        .iter()
        .rev()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (g, group) in bytes.chunks_exact(4).enumerate() {
        let last = (g + 1) * 4 == bytes.len();
        // Characters of this group that carry data: all 4, except in the last group.
        let used = if last { 4 - padding } else { 4 };
        let mut n = 0u32;
        for (i, &c) in group.iter().enumerate() {
            let six = REVERSE[usize::from(c)];
            if i < used && six == INVALID {
                let reason = if c == b'=' {
                    "padding before the end"
                } else {
                    "a byte outside the Base64 alphabet"
                };
                return error(g * 4 + i, reason);
            }
            n = n << 6 | if i < used { u32::from(six) } else { 0 };
        }
        let [_, b0, b1, b2] = n.to_be_bytes();
        // `used` characters carry 6·used bits, of which 8·(used − 1) are data;
        // the rest must be zero, or two texts would decode to the same bytes.
        let spare = match used {
            2 => u32::from(b1) | u32::from(b2),
            3 => u32::from(b2),
            _ => 0,
        };
        if spare != 0 {
            return error(
                g * 4 + used - 1,
                "unused bits before the padding are not zero",
            );
        }
        out.extend_from_slice(&[b0, b1, b2][..used - 1]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
    }

    #[test]
    fn whitespace_and_the_url_safe_alphabet_are_refused() {
        assert_eq!(decode("Zm9v\r\nYm").unwrap_err().position(), 4);
        assert_eq!(decode("Zm9v Ym=").unwrap_err().position(), 4);
        assert_eq!(decode("-_-_").unwrap_err().position(), 0);
    }

    #[test]
    fn padding_in_the_middle_is_refused() {
        let e = decode("Zg==Zm9v").unwrap_err();
        assert_eq!((e.position(), e.reason()), (2, "padding before the end"));
        assert!(decode("Z===").is_err());
        assert!(decode("====").is_err());
    }
}
