//! Helpers shared by the fuzz targets and the seed generator: a fixed,
//! publicly known log key, so that seeds signed by `examples/gen_seeds.rs`
//! verify inside the targets. Never use this key for anything but fuzzing.

use sealtrail_merkle::note::{Signer, Verifier};

/// Origin and key name of the fuzzing log.
pub const LOG_NAME: &str = "fuzz.sealtrail.example/log";

/// Seed of the fuzzing log's Ed25519 key (deliberately public).
const LOG_SEED: [u8; 32] = [0x5e; 32];

/// The fuzzing log's signer.
pub fn log_signer() -> Signer {
    match Signer::generate(LOG_NAME, LOG_SEED) {
        Ok(signer) => signer,
        Err(e) => panic!("fixed fuzzing key is invalid: {e}"),
    }
}

/// The fuzzing log's verifier.
pub fn log_verifier() -> Verifier {
    log_signer().verifier()
}

/// A second key under the same name: a stand-in for a witness or an
/// impostor, used by the seeds that carry more than one signature.
pub fn other_signer() -> Signer {
    match Signer::generate(LOG_NAME, [0xa7; 32]) {
        Ok(signer) => signer,
        Err(e) => panic!("fixed fuzzing key is invalid: {e}"),
    }
}
