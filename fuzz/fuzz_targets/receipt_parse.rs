//! `receipt::Receipt::parse` and `Receipt::verify`: tlog-proof@v1 receipts
//! as handed to clients and read back from `.tlog-proof` files.
//!
//! A parsed receipt must re-serialize to exactly its input. It is then
//! verified against the fixed fuzzing log key, with the entry's leaf taken
//! to be `leaf_hash(extra)` (the seeds carry the entry in `extra`), so
//! mutated indices and proofs run the whole inclusion check.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealtrail_fuzz::{log_verifier, LOG_NAME};
use sealtrail_merkle::note::{Note, Verifier};
use sealtrail_merkle::receipt::Receipt;
use sealtrail_merkle::{leaf_hash, root_from_inclusion};

fn verifier() -> &'static Verifier {
    static KEY: OnceLock<Verifier> = OnceLock::new();
    KEY.get_or_init(log_verifier)
}

fuzz_target!(|data: &[u8]| {
    let Ok(receipt) = Receipt::parse(data) else { return };
    assert!(receipt.proof.len() <= 64);
    assert!(
        Note::parse(&receipt.checkpoint).is_ok(),
        "receipt accepted with a malformed checkpoint note"
    );
    let bytes = receipt.to_bytes();
    assert_eq!(bytes, data, "Receipt::to_bytes differs from the parsed input");
    assert_eq!(Receipt::parse(&bytes).as_ref(), Ok(&receipt));

    let leaf = leaf_hash(receipt.extra.as_deref().unwrap_or_default());
    if let Ok(cp) = receipt.verify(&leaf, verifier()) {
        assert_eq!(cp.origin, LOG_NAME);
        assert!(
            receipt.index < cp.size,
            "verified index {} outside tree of size {}",
            receipt.index,
            cp.size
        );
        assert_eq!(
            root_from_inclusion(receipt.index, cp.size, &leaf, &receipt.proof).ok(),
            Some(cp.root)
        );
    }
});
