//! A data directory: several named logs side by side, each with its own
//! signing key and origin.
//!
//! ```text
//! <data>/logs/<name>/log.key      PRIVATE+KEY+… (mode 0600)
//!                    log.pub      verifier key, one line
//!                    entries, index, hashes, checkpoint
//! ```

use crate::error::{IoContext, LedgerError, Result};
use crate::log::{Log, LogOptions, KEY_FILE, PUBKEY_FILE};
use crate::storage::{OsStorage, Storage};
use sealtrail_merkle::note::{Signer, Verifier};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default origin of log `name`: a schema-less URL-like string, as C2SP
/// origins are, which also serves as the key name.
pub fn default_origin(name: &str) -> String {
    format!("sealtrail.localhost/{name}")
}

/// Log names become directory names and URL path segments.
pub fn check_log_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(LedgerError::BadLogName(name.to_string()))
    }
}

/// A data directory on some [`Storage`].
#[derive(Clone)]
pub struct DataDir {
    root: PathBuf,
    storage: Arc<dyn Storage>,
}

/// A log as listed: name, origin and verifier key.
#[derive(Debug, Clone)]
pub struct LogInfo {
    pub name: String,
    pub verifier: Verifier,
}

impl DataDir {
    /// The data directory at `root` on the real file system.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_storage(root, Arc::new(OsStorage))
    }

    pub fn with_storage(root: impl Into<PathBuf>, storage: Arc<dyn Storage>) -> Self {
        Self {
            root: root.into(),
            storage,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn log_dir(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(name)
    }

    /// Create log `name` with a fresh Ed25519 key. Refuses if the log (or
    /// its key) exists: a log's key is never replaced.
    pub fn create_log(&self, name: &str, origin: Option<&str>) -> Result<Verifier> {
        check_log_name(name)?;
        let dir = self.log_dir(name);
        let key_path = dir.join(KEY_FILE);
        if self.storage.exists(&key_path) {
            return Err(LedgerError::LogExists(name.to_string()));
        }
        let origin = origin.map(str::to_string).unwrap_or_else(|| default_origin(name));
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| LedgerError::Key {
            path: key_path.clone(),
            detail: format!("no randomness: {e}"),
        })?;
        let signer = Signer::generate(&origin, seed).map_err(|e| LedgerError::Key {
            path: key_path.clone(),
            detail: e.to_string(),
        })?;
        self.storage.create_dir_all(&dir).ctx("create directory", &dir)?;
        let key_text = format!("{}\n", signer.to_private_key());
        self.storage
            .create_new(&key_path, key_text.as_bytes(), true)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => LedgerError::LogExists(name.to_string()),
                _ => LedgerError::Io {
                    op: "create",
                    path: key_path.clone(),
                    source: e,
                },
            })?;
        let verifier = signer.verifier();
        let pub_path = dir.join(PUBKEY_FILE);
        self.storage
            .create_new(&pub_path, format!("{verifier}\n").as_bytes(), false)
            .ctx("create", &pub_path)?;
        Log::create(&*self.storage, &dir, &signer)?;
        if let Some(parent) = dir.parent() {
            self.storage.sync_dir(parent).ctx("sync directory", parent)?;
        }
        Ok(verifier)
    }

    /// The logs in this directory, by name.
    pub fn list_logs(&self) -> Result<Vec<LogInfo>> {
        let mut out = Vec::new();
        for name in self.log_names()? {
            out.push(LogInfo {
                verifier: self.verifier(&name)?,
                name,
            });
        }
        Ok(out)
    }

    /// The names of the logs in the directory, without reading their keys.
    pub fn log_names(&self) -> Result<Vec<String>> {
        let logs = self.root.join("logs");
        if !self.storage.exists(&logs) {
            return Ok(Vec::new());
        }
        let mut names = self.storage.list_dirs(&logs).ctx("list", &logs)?;
        names.retain(|name| check_log_name(name).is_ok());
        Ok(names)
    }

    /// The verifier key of log `name`, from its public key file.
    pub fn verifier(&self, name: &str) -> Result<Verifier> {
        check_log_name(name)?;
        let path = self.log_dir(name).join(PUBKEY_FILE);
        if !self.storage.exists(&path) {
            return Err(LedgerError::NoSuchLog(name.to_string(), self.root.clone()));
        }
        let text = self.storage.read(&path).ctx("read", &path)?;
        let text = String::from_utf8_lossy(&text);
        Verifier::parse(text.trim()).map_err(|e| LedgerError::Key {
            path,
            detail: e.to_string(),
        })
    }

    pub fn open_log(&self, name: &str, opts: LogOptions) -> Result<Log> {
        check_log_name(name)?;
        let dir = self.log_dir(name);
        if !self.storage.exists(&dir.join(KEY_FILE)) {
            return Err(LedgerError::NoSuchLog(name.to_string(), self.root.clone()));
        }
        Log::open(self.storage.clone(), &dir, name, opts)
    }

    /// Open log `name` for reading beside its writer (see
    /// [`Log::open_read_only`]): no lock, nothing written.
    pub fn open_log_read_only(&self, name: &str) -> Result<Log> {
        check_log_name(name)?;
        let dir = self.log_dir(name);
        if !self.storage.exists(&dir.join(KEY_FILE)) {
            return Err(LedgerError::NoSuchLog(name.to_string(), self.root.clone()));
        }
        Log::open_read_only(self.storage.clone(), &dir, name)
    }
}
