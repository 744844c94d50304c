//! SHA-1 (FIPS 180-4, RFC 3174), for one job only: the handshake's `Sec-WebSocket-Accept`.
//!
//! # The idea
//!
//! A hash function turns any message into a fixed-size digest — 20 bytes for
//! SHA-1 — such that changing any bit of the message changes the digest beyond
//! recognition. The WebSocket handshake uses it to prove that the server really
//! read the client's upgrade request: the server hashes the client's random key
//! together with a fixed GUID, and the client checks the answer (see
//! [`handshake`](super::handshake)).
//!
//! # SHA-1 is broken — and that does not matter here
//!
//! Collisions for SHA-1 have been found in practice (SHAttered, 2017), so it must
//! never be used for signatures, certificates or anything that an attacker could
//! profit from by making two inputs hash alike. RFC 6455 fixed SHA-1 for the
//! handshake, and the handshake needs no collision resistance at all: the digest
//! only shows that the server is a WebSocket server that understood *this*
//! request, not a plain HTTP server or cache replaying an old answer. Nothing is
//! signed, nothing is secret. That is the only use sockstep makes of it.
//!
//! # How it works
//!
//! The message is padded to a multiple of 64 bytes (a `1` bit, zeros, then the
//! message length in bits as a 64-bit big-endian number), and each 64-byte block
//! is stirred into a 160-bit state of five 32-bit words by 80 rounds of
//! additions, rotations and bitwise functions. [`Sha1`] keeps the state and at
//! most one unfinished block, so a message can be fed in pieces of any size;
//! [`sha1`] does it in one call.

/// The digest size: 160 bits.
pub const DIGEST_LEN: usize = 20;

/// SHA-1 works on blocks of 512 bits.
const BLOCK_LEN: usize = 64;

/// The state before the first block (FIPS 180-4 §5.3.1).
const INITIAL_STATE: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// One round constant for each group of 20 rounds (FIPS 180-4 §4.2.1):
/// the integer parts of 2^30 times the square roots of 2, 3, 5 and 10.
const ROUND_CONSTANTS: [u32; 4] = [0x5A82_7999, 0x6ED9_EBA1, 0x8F1B_BCDC, 0xCA62_C1D6];

/// The SHA-1 digest of `data`, in one call.
///
/// # Examples
/// ```
/// use sockstep::ws::sha1::sha1;
///
/// let digest = sha1(b"abc");
/// assert_eq!(digest[..4], [0xa9, 0x99, 0x3e, 0x36]);
/// ```
pub fn sha1(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha1::new();
    hasher.update(data);
    hasher.finish()
}

/// An incremental SHA-1: feed the message in pieces with [`update`](Sha1::update),
/// then take the digest with [`finish`](Sha1::finish).
///
/// Any split of the message gives the same digest as [`sha1`] over the whole.
///
/// ```
/// use sockstep::ws::sha1::{sha1, Sha1};
///
/// let mut hasher = Sha1::new();
/// hasher.update(b"ab");
/// hasher.update(b"c");
/// assert_eq!(hasher.finish(), sha1(b"abc"));
/// ```
#[derive(Debug, Clone)]
pub struct Sha1 {
    state: [u32; 5],
    /// The unfinished block: the first `pending` bytes are message bytes.
    block: [u8; BLOCK_LEN],
    pending: usize,
    /// Message bytes so far. SHA-1 counts bits modulo 2^64; so do we, by wrapping.
    total: u64,
}

impl Default for Sha1 {
    fn default() -> Sha1 {
        Sha1::new()
    }
}

impl Sha1 {
    /// A hasher that has seen nothing yet.
    pub fn new() -> Sha1 {
        Sha1 {
            state: INITIAL_STATE,
            block: [0; BLOCK_LEN],
            pending: 0,
            total: 0,
        }
    }

    /// Feeds the next piece of the message.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        // Top up an unfinished block first; whole blocks then go straight from
        // `data` to the compression function without a copy.
        if self.pending > 0 {
            let take = (BLOCK_LEN - self.pending).min(data.len());
            self.block[self.pending..self.pending + take].copy_from_slice(&data[..take]);
            self.pending += take;
            data = &data[take..];
            if self.pending < BLOCK_LEN {
                return;
            }
            compress(&mut self.state, &self.block);
            self.pending = 0;
        }
        let mut blocks = data.chunks_exact(BLOCK_LEN);
        for block in &mut blocks {
            compress(&mut self.state, block);
        }
        let rest = blocks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.pending = rest.len();
    }

    /// Pads the message, processes the last block(s) and returns the digest.
    pub fn finish(mut self) -> [u8; DIGEST_LEN] {
        let bits = self.total.wrapping_mul(8);
        // The padding: one 1-bit (0x80), then zeros until 8 bytes short of a
        // block boundary, then the length. If the 0x80 leaves no room for the
        // length in this block, the length goes in one more block.
        let mut tail = [0u8; 2 * BLOCK_LEN];
        tail[..self.pending].copy_from_slice(&self.block[..self.pending]);
        tail[self.pending] = 0x80;
        let len = if self.pending < BLOCK_LEN - 8 {
            BLOCK_LEN
        } else {
            2 * BLOCK_LEN
        };
        tail[len - 8..len].copy_from_slice(&bits.to_be_bytes());
        for block in tail[..len].chunks_exact(BLOCK_LEN) {
            compress(&mut self.state, block);
        }
        let mut digest = [0u8; DIGEST_LEN];
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

/// Stirs one 64-byte block into the state (FIPS 180-4 §6.1.2).
fn compress(state: &mut [u32; 5], block: &[u8]) {
    // The message schedule: the block's 16 big-endian words, stretched to 80.
    let mut w = [0u32; 80];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for t in 16..80 {
        w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for (t, &word) in w.iter().enumerate() {
        // Rounds 0–19 choose (c or d, as b says), 40–59 take the majority of
        // b, c, d; the other two groups take the parity.
        let f = match t / 20 {
            0 => (b & c) | (!b & d),
            2 => (b & c) | (b & d) | (c & d),
            _ => b ^ c ^ d,
        };
        let temp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(ROUND_CONSTANTS[t / 20])
            .wrapping_add(word);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = temp;
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(digest: [u8; DIGEST_LEN]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_empty_message_has_the_published_digest() {
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn padding_that_spills_into_a_second_block_is_right() {
        // 56..=63 bytes leave no room for the length in the last block.
        let msg = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(msg.len(), 56);
        assert_eq!(hex(sha1(msg)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }

    #[test]
    fn byte_at_a_time_equals_one_shot_across_block_boundaries() {
        let msg: Vec<u8> = (0..200u8).collect();
        let mut hasher = Sha1::new();
        for b in &msg {
            hasher.update(std::slice::from_ref(b));
        }
        assert_eq!(hasher.finish(), sha1(&msg));
    }
}
