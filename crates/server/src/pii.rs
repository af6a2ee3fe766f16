//! The PII protection of each log as it is now (docs/pii.md): the rules
//! of `meta.db` (`sealtrail pii set`) and of the configuration file over
//! the data directory's vault. Server ingest and `sealtrail append` both
//! store events through it, so both protect the same fields the same way.
//!
//! The rules are read again whenever `meta.db` changed (its
//! `data_version`, checked before every batch), so a `pii set` by another
//! process applies from the next batch on, without a restart.
//!
//! Not here: the transformation itself (`sealtrail-pii`) and where the
//! master key comes from (the configuration, or the CLI's environment).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sealtrail_meta::Meta;
use sealtrail_meta::PiiStore;
use sealtrail_pii::{LogPii, MasterKey, PiiError, Policy, Vault};
use sealtrail_trail::PiiSource;

/// What is known of one log: its protection, or why it cannot be had.
type Known = Result<Option<Arc<LogPii>>, String>;

/// The protection of every log, refreshed when `meta.db` changes.
pub struct LogProtection {
    store: Arc<PiiStore>,
    configured: BTreeMap<String, Policy>,
    vault: Option<Arc<Vault>>,
    /// `meta.db`'s version the entries were read at, and each log's
    /// protection. At most one entry per log of the data directory.
    known: Mutex<(Option<i64>, HashMap<String, Known>)>,
}

impl std::fmt::Debug for LogProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogProtection(..)")
    }
}

impl LogProtection {
    /// Over `meta`'s key store, with the configuration file's rules by
    /// log and the master key, if one is given. A master key that does not
    /// open the key store is refused, and nothing is changed.
    pub fn open(
        meta: &Meta,
        configured: BTreeMap<String, Policy>,
        master: Option<MasterKey>,
    ) -> Result<LogProtection, PiiError> {
        let store = meta.pii_store().map_err(|e| PiiError::Config(e.to_string()))?;
        let vault = match master {
            Some(master) => Some(Arc::new(Vault::open(master, store.clone())?)),
            None => None,
        };
        Ok(LogProtection {
            store,
            configured,
            vault,
            known: Mutex::new((None, HashMap::new())),
        })
    }

    /// The vault, when a master key was given.
    pub fn vault(&self) -> Option<&Arc<Vault>> {
        self.vault.as_ref()
    }

    /// The policy of `log`: `meta.db`'s rules and the configuration's.
    fn read(&self, log: &str) -> Known {
        let mut policy = self.store.policy(log).map_err(|e| e.to_string())?;
        for rule in self.configured.get(log).map(|p| p.rules.clone()).unwrap_or_default() {
            policy.add(rule, "the configuration file").map_err(|e| e.to_string())?;
        }
        if policy.is_empty() {
            return Ok(None);
        }
        match &self.vault {
            Some(vault) => Ok(Some(Arc::new(LogPii::new(vault.clone(), log, policy)))),
            None => Err(format!(
                "log {log} protects PII fields but no master key is given (pii.master_key_file or pii.master_key_env): nothing is stored until it is"
            )),
        }
    }
}

impl PiiSource for LogProtection {
    fn current(&self, log: &str) -> Result<Option<Arc<LogPii>>, PiiError> {
        let version = self.store.version()?;
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.0 != Some(version) {
            *known = (Some(version), HashMap::new());
        }
        if !known.1.contains_key(log) {
            let read = self.read(log);
            known.1.insert(log.to_string(), read);
        }
        match known.1.get(log) {
            Some(Ok(pii)) => Ok(pii.clone()),
            Some(Err(e)) => Err(PiiError::Config(e.clone())),
            None => Ok(None),
        }
    }
}
