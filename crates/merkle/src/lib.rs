//! Sealtrail's cryptographic core, free of I/O: RFC 9162 Merkle hashing,
//! proof generation and verification, and the C2SP text formats the log
//! speaks (signed notes, checkpoints, tiles, tlog-proof receipts).
//!
//! Architecture invariant: nothing here reads a file, a clock or a socket.
//! Callers hand in bytes and hashes; this crate hands back bytes, hashes and
//! verdicts.

pub mod hash;
pub mod proof;
pub mod tree;

pub use hash::{leaf_hash, node_hash, Hash, EMPTY_ROOT};
pub use proof::{root_from_inclusion, verify_consistency, verify_inclusion, ProofError};
pub use tree::{
    consistency_proof, inclusion_proof, stored_count, stored_index, tree_root, Frontier, MemoryTree, NodeSource,
};

pub mod checkpoint;
pub mod note;
pub mod receipt;
pub mod tile;

pub use checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint, CheckpointError};
pub use note::{KeyError, Note, NoteError, NoteSignature, Signer, Verifier};
pub use receipt::{Receipt, ReceiptError};
pub use tile::{BundleError, EntryBundle, NodeLocation, TileCoord, TileError, TileKind};
