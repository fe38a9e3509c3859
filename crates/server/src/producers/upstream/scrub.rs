//! Keeping an upstream's secrets (its key, a password in its URL) out of the bytes the proxy
//! passes back to a `/v1` client. Model servers quote the key they were sent in error bodies
//! ("Incorrect API key provided: sk-…") and some echo it in headers; the client must never
//! see runboard's key.
//!
//! A secret is overwritten in place by a mask of the same length, so a whole answer keeps
//! its `Content-Length` and nothing else moves. A body arrives in pieces, and a secret may be
//! split between two: the scrubber holds back the end of a piece only when it could be the
//! start of a secret, and passes it on with the next piece (or at the end of the body).

use bytes::{Bytes, BytesMut};
use memchr::memmem;

/// What a secret becomes: as much of `<redacted>` as fits, then `*`.
const MASK: &[u8] = b"<redacted>";

/// The shortest end of a cut text that is taken for the start of a secret and blotted out:
/// shorter prefixes (`sk-`) say nothing about a key.
const MIN_PARTIAL: usize = 4;

/// The secrets of one upstream, searched for in what passes through.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    secrets: Vec<Vec<u8>>,
}

impl Secrets {
    /// The non-empty ones of `secrets`.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            secrets: secrets
                .into_iter()
                .filter(|secret| !secret.is_empty())
                .map(|secret| secret.as_bytes().to_vec())
                .collect(),
        }
    }

    /// Whether there is nothing to look for (no key): everything passes untouched.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `bytes` with every whole secret masked; `None` when none is in them.
    pub fn mask(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for secret in &self.secrets {
            let found: Vec<usize> =
                memmem::find_iter(out.as_deref().unwrap_or(bytes), secret).collect();
            if found.is_empty() {
                continue;
            }
            let text = out.get_or_insert_with(|| bytes.to_vec());
            for at in found {
                mask_at(text, at, secret.len());
            }
        }
        out
    }

    /// A text that was cut (a message shortened, a body read only so far): a tail that is the
    /// start of a secret, [`MIN_PARTIAL`] bytes or more, is masked too. Mask whole secrets
    /// first, before cutting.
    pub fn mask_cut_end(&self, text: &str) -> String {
        let held = self.partial_at_end(text.as_bytes(), MIN_PARTIAL);
        if held == 0 {
            return text.to_owned();
        }
        let keep = text.len() - held;
        // A secret is ASCII in practice; should the cut fall inside a character, mask from
        // that character's start.
        let keep = (0..=keep)
            .rev()
            .find(|at| text.is_char_boundary(*at))
            .unwrap_or(0);
        let mut out = text[..keep].to_owned();
        out.push_str(&"*".repeat(text.len() - keep));
        out
    }

    /// The length of the longest end of `bytes`, at least `min` long, that is the start of a
    /// secret (but not a whole one).
    fn partial_at_end(&self, bytes: &[u8], min: usize) -> usize {
        self.secrets
            .iter()
            .filter_map(|secret| {
                let longest = (secret.len() - 1).min(bytes.len());
                (min.max(1)..=longest)
                    .rev()
                    .find(|len| bytes[bytes.len() - len..] == secret[..*len])
            })
            .max()
            .unwrap_or(0)
    }
}

/// Overwrites `len` bytes at `at` with the mask.
fn mask_at(text: &mut [u8], at: usize, len: usize) {
    for (i, byte) in text[at..at + len].iter_mut().enumerate() {
        *byte = MASK
            .get(i)
            .copied()
            .filter(|_| len >= MASK.len())
            .unwrap_or(b'*');
    }
}

/// Masks secrets in a body passed on piece by piece.
#[derive(Debug)]
pub struct Scrubber {
    secrets: Secrets,
    /// The end of the last piece, held back because a secret may begin in it.
    held: BytesMut,
}

impl Scrubber {
    /// A scrubber for `secrets`.
    pub fn new(secrets: Secrets) -> Self {
        Self {
            secrets,
            held: BytesMut::new(),
        }
    }

    /// What of `piece` (after what was held back) can go on now, secrets masked. Without
    /// secrets, or when nothing in it needs masking or holding, the piece itself.
    pub fn pass(&mut self, piece: Bytes) -> Bytes {
        if self.secrets.is_empty() {
            return piece;
        }
        let joined = if self.held.is_empty() {
            piece
        } else {
            self.held.extend_from_slice(&piece);
            self.held.split().freeze()
        };
        let masked = self.secrets.mask(&joined).map_or(joined, Bytes::from);
        let hold = self.secrets.partial_at_end(&masked, 1);
        if hold == 0 {
            return masked;
        }
        let ready = masked.len() - hold;
        self.held.extend_from_slice(&masked[ready..]);
        masked.slice(..ready)
    }

    /// The body ended: what was held back (it began like a secret but was not one).
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.held.is_empty()).then(|| self.held.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-0123456789abcdef";

    fn through(pieces: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut scrubber = Scrubber::new(Secrets::new([KEY]));
        let mut out = Vec::new();
        for piece in pieces {
            out.push(scrubber.pass(Bytes::copy_from_slice(piece)).to_vec());
        }
        if let Some(tail) = scrubber.finish() {
            out.push(tail.to_vec());
        }
        let all = out.concat();
        (out, all)
    }

    #[test]
    fn a_whole_key_is_masked_to_the_same_length() {
        let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}."}}}}"#);
        let (_, all) = through(&[body.as_bytes()]);
        let text = String::from_utf8(all).unwrap();
        assert_eq!(text.len(), body.len());
        assert!(!text.contains("sk-live"), "{text}");
        assert!(
            text.contains("provided: <redacted>**************."),
            "{text}"
        );
    }

    #[test]
    fn a_key_split_across_pieces_at_every_point_never_shows() {
        let body = format!("data: {{\"msg\": \"key {KEY} and again {KEY}\"}}\n\n");
        for cut in 1..body.len() {
            for second in cut..body.len() {
                let pieces = [
                    &body.as_bytes()[..cut],
                    &body.as_bytes()[cut..second],
                    &body.as_bytes()[second..],
                ];
                let (out, all) = through(&pieces);
                assert_eq!(all.len(), body.len(), "{cut}/{second}");
                let text = String::from_utf8(all).unwrap();
                assert!(!text.contains("0123"), "{cut}/{second}: {text}");
                for piece in out {
                    let piece = String::from_utf8_lossy(&piece).into_owned();
                    assert!(!piece.contains("live-0"), "{piece}");
                }
            }
        }
    }

    #[test]
    fn what_only_looks_like_a_key_start_is_held_then_passed_unchanged() {
        let (out, all) = through(&[b"the prefix sk-", b"lively talk\n"]);
        assert_eq!(out[0], b"the prefix ");
        assert_eq!(all, b"the prefix sk-lively talk\n");
        let (out, all) = through(&[b"ends with sk-live"]);
        assert_eq!(out, vec![b"ends with ".to_vec(), b"sk-live".to_vec()]);
        assert_eq!(all, b"ends with sk-live");
    }

    #[test]
    fn without_secrets_pieces_pass_as_they_are() {
        let mut scrubber = Scrubber::new(Secrets::new([""]));
        let piece = Bytes::from_static(b"anything sk-");
        assert_eq!(scrubber.pass(piece.clone()), piece);
        assert_eq!(scrubber.finish(), None);
    }

    #[test]
    fn a_cut_text_ending_in_the_start_of_a_key_loses_that_start() {
        let secrets = Secrets::new([KEY]);
        assert_eq!(secrets.mask_cut_end("key: sk-live-01"), "key: **********");
        assert_eq!(secrets.mask_cut_end("see sk-"), "see sk-");
        assert_eq!(secrets.mask_cut_end("nothing here"), "nothing here");
    }

    #[test]
    fn a_short_secret_is_all_stars() {
        let secrets = Secrets::new(["pw12"]);
        assert_eq!(secrets.mask(b"user:pw12@h").unwrap(), b"user:****@h");
    }
}
