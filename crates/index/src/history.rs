//! [`History`]: what the index knows of the ledger it is built from, the
//! root hash of its first entries, so that an index opened over another
//! history (a restored or replaced ledger) can be told apart from one
//! built from this one. Nothing here reads the ledger's files.

/// The ledger an index is built from, seen through its Merkle roots.
pub trait History: Send + Sync {
    /// The root hash of the history's first `size` entries. The index asks
    /// only for sizes it has been given every entry of.
    fn root(&self, size: u64) -> Result<[u8; 32], Box<dyn std::error::Error + Send + Sync>>;
}
