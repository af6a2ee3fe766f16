//! C2SP tlog-proof@v1 receipts (c2sp.org/tlog-proof): a self-contained,
//! offline-verifiable proof that an entry is in the log, made of the entry's
//! index, its inclusion proof and the signed checkpoint the proof leads to.
//!
//! This is what Sealtrail hands back for an appended record. The module
//! writes, parses and verifies receipts against the log's key. It
//! deliberately is not a witness policy (the checkpoint's cosignatures are
//! kept verbatim for the caller to judge), does not compute leaf hashes (that
//! is application-specific), and does not trust the `extra` data, which no
//! signature covers.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::checkpoint::{open_checkpoint, parse_decimal, Checkpoint, CheckpointError};
use crate::hash::Hash;
use crate::note::{Note, Verifier};
use crate::proof::{verify_inclusion, ProofError};

/// First line of every receipt.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Most proof hashes a receipt may hold: an inclusion proof has one hash per
/// tree level, and a tree of at most 2^64 − 1 leaves has 64 levels.
const MAX_PROOF_HASHES: usize = 64;

/// Why a receipt could not be parsed or did not verify. Line numbers count
/// from 1 at the header line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("line 1: not a tlog-proof receipt (expected header {HEADER:?})")]
    BadHeader,
    #[error("line {line}: receipt ends early; expected {expected}")]
    UnexpectedEnd { line: usize, expected: &'static str },
    #[error("line {line}: extra data is not valid base64")]
    BadExtra { line: usize },
    #[error("line {line}: expected \"index <decimal>\"")]
    MissingIndex { line: usize },
    #[error("line {line}: index {reason}")]
    BadIndex { line: usize, reason: &'static str },
    #[error("line {line}: proof hash is not the base64 encoding of exactly 32 bytes")]
    BadProofHash { line: usize },
    #[error("line {line}: more than {MAX_PROOF_HASHES} proof hashes")]
    ProofTooLong { line: usize },
    #[error("line {line}: no checkpoint after the blank line")]
    MissingCheckpoint { line: usize },
    /// The source's own line numbers count from the checkpoint's first line.
    #[error("checkpoint starting on line {line}: {source}")]
    Checkpoint { line: usize, source: CheckpointError },
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
}

/// A tlog-proof@v1 receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Unauthenticated application data carried alongside the proof.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry in the log.
    pub index: u64,
    /// RFC 9162 inclusion proof, leaf's sibling first.
    pub proof: Vec<Hash>,
    /// The log's signed checkpoint, byte for byte as the log (and any
    /// witnesses) signed it.
    pub checkpoint: Vec<u8>,
}

/// Takes the next newline-terminated line off `rest`, without its newline.
fn take_line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..end];
    *rest = &rest[end + 1..];
    Some(line)
}

impl Receipt {
    /// Line number on which the checkpoint starts in [`Receipt::to_bytes`].
    fn checkpoint_line(&self) -> usize {
        // Header, optional extra, index, proof lines, blank line.
        1 + usize::from(self.extra.is_some()) + 1 + self.proof.len() + 1 + 1
    }

    /// The receipt in its text form (`.tlog-proof` file contents).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&B64.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            out.push_str(&B64.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Parses a receipt. The checkpoint must be a well-formed signed note,
    /// but no signature and no proof is checked: that is [`Receipt::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        let mut rest = bytes;
        let mut line = 1;
        if take_line(&mut rest) != Some(HEADER.as_bytes()) {
            return Err(ReceiptError::BadHeader);
        }

        line += 1;
        let mut current = take_line(&mut rest).ok_or(ReceiptError::UnexpectedEnd {
            line,
            expected: "index line",
        })?;
        let mut extra = None;
        if let Some(b64) = current.strip_prefix(b"extra ") {
            extra = Some(B64.decode(b64).map_err(|_| ReceiptError::BadExtra { line })?);
            line += 1;
            current = take_line(&mut rest).ok_or(ReceiptError::UnexpectedEnd {
                line,
                expected: "index line",
            })?;
        }

        let index = current
            .strip_prefix(b"index ")
            .ok_or(ReceiptError::MissingIndex { line })?;
        // Non-ASCII bytes cannot be digits; map them to a string that fails.
        let index = std::str::from_utf8(index).unwrap_or("?");
        let index = parse_decimal(index).map_err(|reason| ReceiptError::BadIndex { line, reason })?;

        let mut proof = Vec::new();
        loop {
            line += 1;
            let current = take_line(&mut rest).ok_or(ReceiptError::UnexpectedEnd {
                line,
                expected: "blank line before checkpoint",
            })?;
            if current.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_HASHES {
                return Err(ReceiptError::ProofTooLong { line });
            }
            let hash = B64.decode(current).ok().and_then(|h| Hash::try_from(h).ok());
            proof.push(hash.ok_or(ReceiptError::BadProofHash { line })?);
        }

        line += 1;
        if rest.is_empty() {
            return Err(ReceiptError::MissingCheckpoint { line });
        }
        // Refuse a malformed note now rather than at verification, so that a
        // receipt that parses is at least structurally complete.
        Note::parse(rest).map_err(|e| ReceiptError::Checkpoint {
            line,
            source: CheckpointError::Note(e),
        })?;
        Ok(Receipt {
            extra,
            index,
            proof,
            checkpoint: rest.to_vec(),
        })
    }

    /// Verifies that `leaf` (the entry's RFC 9162 leaf hash) is at `index` in
    /// the tree of the checkpoint signed by `log_key`, returning that
    /// checkpoint. Witness cosignatures are not checked: parse
    /// [`Receipt::checkpoint`] as a [`Note`] and apply the witness policy.
    pub fn verify(&self, leaf: &Hash, log_key: &Verifier) -> Result<Checkpoint, ReceiptError> {
        let (checkpoint, _) =
            open_checkpoint(&self.checkpoint, log_key).map_err(|source| ReceiptError::Checkpoint {
                line: self.checkpoint_line(),
                source,
            })?;
        verify_inclusion(self.index, checkpoint.size, leaf, &self.proof, &checkpoint.root)?;
        Ok(checkpoint)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checkpoint::sign_checkpoint;
    use crate::hash::leaf_hash;
    use crate::note::{NoteError, Signer};
    use crate::tree::{inclusion_proof, MemoryTree};

    const ORIGIN: &str = "example.com/log";

    fn log() -> Signer {
        Signer::generate(ORIGIN, [3; 32]).unwrap()
    }

    /// A receipt for entry `index` of a 13-entry log, and that entry's leaf.
    fn receipt(index: u64, extra: Option<Vec<u8>>) -> (Receipt, Hash) {
        let mut tree = MemoryTree::new();
        let entries: Vec<Vec<u8>> = (0..13u8).map(|i| vec![i; 5]).collect();
        entries.iter().for_each(|e| tree.push(leaf_hash(e)));
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: tree.size(),
            root: tree.root(),
            extensions: vec![],
        };
        let checkpoint = sign_checkpoint(&cp, &log()).unwrap().into_bytes();
        let proof = inclusion_proof(&tree, index, tree.size()).unwrap();
        (
            Receipt {
                extra,
                index,
                proof,
                checkpoint,
            },
            leaf_hash(&entries[index as usize]),
        )
    }

    #[test]
    fn round_trip_and_verify() {
        for (index, extra) in [(0, None), (5, Some(b"ctx".to_vec())), (12, Some(vec![]))] {
            let (r, leaf) = receipt(index, extra);
            let text = r.to_bytes();
            let back = Receipt::parse(&text).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.to_bytes(), text);
            let cp = back.verify(&leaf, &log().verifier()).unwrap();
            assert_eq!((cp.origin.as_str(), cp.size), (ORIGIN, 13));
        }
    }

    #[test]
    fn layout() {
        let (r, _) = receipt(5, Some(b"hi".to_vec()));
        let text = String::from_utf8(r.to_bytes()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(&lines[..3], &[HEADER, "extra aGk=", "index 5"]);
        assert_eq!(lines[3 + r.proof.len()], "");
        assert_eq!(lines[4 + r.proof.len()], ORIGIN);
        assert_eq!(r.checkpoint_line(), 5 + r.proof.len());
    }

    #[test]
    fn rejections() {
        let (r, leaf) = receipt(5, None);
        assert_eq!(r.proof.len(), 4);
        let key = log().verifier();

        let tampered = Receipt { index: 6, ..r.clone() };
        assert_eq!(
            tampered.verify(&leaf, &key).unwrap_err(),
            ReceiptError::Inclusion(ProofError::RootMismatch)
        );

        let mut tampered = r.clone();
        tampered.proof[1][0] ^= 1;
        assert_eq!(
            tampered.verify(&leaf, &key).unwrap_err(),
            ReceiptError::Inclusion(ProofError::RootMismatch)
        );

        let mut short = r.clone();
        short.proof.pop();
        assert_eq!(
            short.verify(&leaf, &key).unwrap_err(),
            ReceiptError::Inclusion(ProofError::TooShort)
        );

        let out_of_range = Receipt { index: 13, ..r.clone() };
        let err = out_of_range.verify(&leaf, &key).unwrap_err();
        assert_eq!(
            err,
            ReceiptError::Inclusion(ProofError::IndexOutOfRange { index: 13, size: 13 })
        );

        assert!(r.verify(&leaf_hash(b"other"), &key).is_err());

        let stranger = Signer::generate(ORIGIN, [4; 32]).unwrap().verifier();
        let err = r.verify(&leaf, &stranger).unwrap_err();
        let want = ReceiptError::Checkpoint {
            line: 8,
            source: CheckpointError::Note(NoteError::Unverified),
        };
        assert_eq!(err, want);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let (r, _) = receipt(5, None);
        let good = String::from_utf8(r.to_bytes()).unwrap();
        let proof_line = B64.encode(r.proof[1]);
        let cases: Vec<(String, ReceiptError)> = vec![
            (
                good.replacen(HEADER, "c2sp.org/tlog-proof@v2", 1),
                ReceiptError::BadHeader,
            ),
            (String::new(), ReceiptError::BadHeader),
            (HEADER.into(), ReceiptError::BadHeader),
            (
                format!("{HEADER}\n"),
                ReceiptError::UnexpectedEnd {
                    line: 2,
                    expected: "index line",
                },
            ),
            (
                format!("{HEADER}\nextra AA==\n"),
                ReceiptError::UnexpectedEnd {
                    line: 3,
                    expected: "index line",
                },
            ),
            (
                good.replacen("index 5", "extra !!\nindex 5", 1),
                ReceiptError::BadExtra { line: 2 },
            ),
            (
                good.replacen("index 5", "Index 5", 1),
                ReceiptError::MissingIndex { line: 2 },
            ),
            (
                good.replacen("index 5", "index 05", 1),
                ReceiptError::BadIndex {
                    line: 2,
                    reason: "has a leading zero",
                },
            ),
            (
                good.replacen("index 5", "index  5", 1),
                ReceiptError::BadIndex {
                    line: 2,
                    reason: "is not a decimal number",
                },
            ),
            (
                good.replacen("index 5", "index", 1),
                ReceiptError::MissingIndex { line: 2 },
            ),
            (
                good.replacen(&proof_line, &proof_line[4..], 1),
                ReceiptError::BadProofHash { line: 4 },
            ),
            (
                good.replacen(&proof_line, &format!("{proof_line} "), 1),
                ReceiptError::BadProofHash { line: 4 },
            ),
            (
                good.replacen(&proof_line, &format!("{}\n", proof_line).repeat(65), 1),
                ReceiptError::ProofTooLong {
                    line: 3 + MAX_PROOF_HASHES,
                },
            ),
            (
                format!("{HEADER}\nindex 0\n{proof_line}"),
                ReceiptError::UnexpectedEnd {
                    line: 3,
                    expected: "blank line before checkpoint",
                },
            ),
            (
                format!("{HEADER}\nindex 0\n\n"),
                ReceiptError::MissingCheckpoint { line: 4 },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Receipt::parse(text.as_bytes()).unwrap_err(), want, "{text:?}");
        }
        let truncated = &good.as_bytes()[..good.len() - 1];
        let err = Receipt::parse(truncated).unwrap_err();
        let want = ReceiptError::Checkpoint {
            line: 8,
            source: CheckpointError::Note(NoteError::MissingFinalNewline { line: 5 }),
        };
        assert_eq!(err, want);
    }
}
