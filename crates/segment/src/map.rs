//! Segment files mapped into memory, read-only.
//!
//! A query touches a few pages of each segment (a dictionary probe, some
//! posting blocks, some column blocks), so mapping lets the kernel's page
//! cache hold what is hot and drop what is not, and the process's memory
//! stays flat however large the index grows. Reading whole files onto the
//! heap would not. ARCHITECTURE.md has the measurement against `pread`.
//!
//! The price of a map: if the file shrinks under it, a read of a page past
//! the new end kills the process (SIGBUS), and a write to it changes bytes
//! a reader has already checked. Hence [`Mapped::open`] is `unsafe`: its
//! caller must own the directory's files and promise neither happens.

use std::fs::File;
use std::io;
use std::path::Path;

/// The bytes of a segment file, mapped read-only.
pub struct Mapped(memmap2::Mmap);

impl Mapped {
    /// Map the file at `path`.
    ///
    /// # Safety
    ///
    /// For as long as the map lives, nothing may truncate the file or
    /// write to it, in this process or another. Deleting or renaming it is
    /// fine: the map keeps the file's bytes until it is dropped.
    /// `sealtrail-index` keeps this promise: segment files are written
    /// whole under fresh names, synced, never opened for writing again,
    /// and only ever deleted.
    #[allow(unsafe_code)]
    pub unsafe fn open(path: &Path) -> io::Result<Mapped> {
        let file = File::open(path)?;
        // SAFETY: the caller's promise above is memmap2's condition.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mapped(map))
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
