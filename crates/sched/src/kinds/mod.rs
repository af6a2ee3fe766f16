//! The job types that ship, one module each; [`crate::Registry::builtin`]
//! lists them.

pub mod backup;
pub mod data;
pub mod reindex;
pub mod report;
pub mod retention;
pub mod verify;
