//! Segment files mapped into memory, read-only.
//!
//! A query touches a few pages of each segment (a dictionary probe, some
//! posting blocks, some column blocks), so mapping lets the kernel's page
//! cache hold what is hot and drop what is not, and the process's memory
//! stays flat however large the index grows. Reading whole files onto the
//! heap would not.

use std::fs::File;
use std::io;
use std::path::Path;

/// The bytes of a segment file, mapped read-only.
pub struct Mapped(memmap2::Mmap);

impl Mapped {
    /// Map the file at `path`. The caller promises what the index
    /// directory's owner guarantees: the file is complete and synced, and
    /// nothing writes to or truncates it while it is mapped.
    pub fn open(path: &Path) -> io::Result<Mapped> {
        let file = File::open(path)?;
        // SAFETY: a map is unsound only if the file changes under it.
        // Segment files are written whole under a fresh name, synced, and
        // never opened for writing again; they are only deleted, which
        // leaves an existing map valid (the inode lives until unmapped).
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mapped(map))
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
