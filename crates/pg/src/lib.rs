//! PostgreSQL tracking: what changes in a PostgreSQL database, and who
//! changed it, brought into the verifiable trail. The CLI and the server
//! call this crate; it knows nothing of HTTP.

pub mod capture;
pub mod drain;
pub mod logical;
pub mod logimport;
pub mod migrate;
