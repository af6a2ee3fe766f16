//! When each API key was last used, for the access review: noted in
//! memory on the request path (one short lock, nothing written) and
//! written to `meta.db` in one transaction off it, by the thread that
//! reloads the keys every second.
//!
//! Coarse on purpose: a key is noted at most once per minute, so a busy
//! ingest key costs one row update a minute, not one per request. Each
//! write changes the database's version, which makes the key cache reload;
//! once a minute per key is cheap next to that.
//!
//! Not here: reading the uses back (`Meta::key_last_use`) or judging them
//! (the access review).

use std::collections::HashMap;
use std::sync::Mutex;

/// Keys whose minute of last use is held by default: far more than a
/// data directory has keys.
pub const MAX_NOTED_KEYS: usize = 100_000;

/// Uses noted and not yet written, and the minute each key was last
/// noted in.
pub struct KeyUses {
    inner: Mutex<Noted>,
    limit: usize,
}

#[derive(Default)]
struct Noted {
    /// The minute (Unix seconds / 60) each key was last noted in.
    minute: HashMap<String, i64>,
    /// The first use of each key in its latest minute, not yet written.
    pending: HashMap<String, i64>,
}

impl KeyUses {
    /// Holding at most `limit` keys.
    pub fn new(limit: usize) -> KeyUses {
        KeyUses {
            inner: Mutex::new(Noted::default()),
            limit,
        }
    }

    /// Note that key `id` was used at `now` (Unix seconds). A key already
    /// noted in this minute costs a lookup. At the bound, keys not used
    /// this minute and not waiting to be written are forgotten to make
    /// room; if none is, the use is not noted and false is returned.
    pub fn note(&self, id: &str, now: i64) -> bool {
        let minute = now.div_euclid(60);
        let mut noted = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match noted.minute.get_mut(id) {
            Some(m) if *m >= minute => return true,
            Some(m) => *m = minute,
            None => {
                if noted.minute.len() >= self.limit {
                    let Noted {
                        minute: by_key,
                        pending,
                    } = &mut *noted;
                    by_key.retain(|k, m| *m >= minute || pending.contains_key(k));
                    if by_key.len() >= self.limit {
                        metrics::counter!("sealtrail_key_uses_dropped_total").increment(1);
                        return false;
                    }
                }
                noted.minute.insert(id.to_string(), minute);
            }
        }
        noted.pending.insert(id.to_string(), now);
        true
    }

    /// The uses not yet written, which are forgotten here.
    pub fn take(&self) -> Vec<(String, i64)> {
        let mut noted = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        noted.pending.drain().collect()
    }

    /// Uses taken but not written (the database refused them): written
    /// with the next ones, unless a later use of the key is waiting.
    pub fn restore(&self, uses: Vec<(String, i64)>) {
        let mut noted = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (id, at) in uses {
            noted.pending.entry(id).or_insert(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(uses: &KeyUses) -> Vec<(String, i64)> {
        let mut v = uses.take();
        v.sort();
        v
    }

    #[test]
    fn a_key_is_noted_once_a_minute() {
        let uses = KeyUses::new(10);
        for at in [600, 601, 659] {
            assert!(uses.note("a", at));
        }
        assert!(uses.note("b", 630));
        assert_eq!(taken(&uses), [("a".to_string(), 600), ("b".to_string(), 630)]);
        // Written: the same minute notes nothing more.
        assert!(uses.note("a", 640));
        assert!(taken(&uses).is_empty());
        // The next minute notes again, once.
        assert!(uses.note("a", 660));
        assert!(uses.note("a", 700));
        assert_eq!(taken(&uses), [("a".to_string(), 660)]);
    }

    #[test]
    fn at_the_bound_stale_keys_make_room_and_otherwise_uses_are_dropped() {
        let uses = KeyUses::new(2);
        assert!(uses.note("a", 600));
        assert!(uses.note("b", 600));
        // Full, both pending: the third key is not noted.
        assert!(!uses.note("c", 610));
        assert_eq!(taken(&uses), [("a".to_string(), 600), ("b".to_string(), 600)]);
        // Written but used this minute: still no room.
        assert!(!uses.note("c", 620));
        // A minute later "a" and "b" are stale and make room.
        assert!(uses.note("c", 665));
        assert_eq!(taken(&uses), [("c".to_string(), 665)]);
        // "a" was forgotten: noted again as new, room made by "b".
        assert!(uses.note("a", 670));
        assert_eq!(taken(&uses), [("a".to_string(), 670)]);
    }

    #[test]
    fn uses_not_written_are_kept_for_the_next_write() {
        let uses = KeyUses::new(10);
        assert!(uses.note("a", 600));
        let failed = uses.take();
        assert!(uses.note("a", 665));
        uses.restore(failed);
        // The later use waiting wins over the one restored.
        assert_eq!(taken(&uses), [("a".to_string(), 665)]);
        assert!(uses.note("b", 700));
        uses.restore(uses.take());
        assert_eq!(taken(&uses), [("b".to_string(), 700)]);
    }
}
