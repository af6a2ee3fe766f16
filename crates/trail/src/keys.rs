//! Idempotency keys: a resend with a key already stored in this log
//! returns the original and appends nothing.
//!
//! A key is looked up first here, among keys appended since the index's
//! last commit (and keys whose append is in flight), then in the index,
//! which holds every committed key and is caught up from the ledger on
//! open. A key leaves this map only once an index commit that covers it is
//! searchable, so there is no moment when neither place knows it. Two
//! callers racing with one key: the second waits until the first's append
//! settles, then finds its index.
//!
//! The map is bounded ([`crate::TrailOptions::max_unindexed_keys`]): while
//! the index commits, keys leave it within a commit interval, but while
//! the index is failed and rebuilt they stay until the rebuilt index
//! commits them. At the bound, a batch that would add a new key is
//! refused whole rather than grow memory; resends of keys already here,
//! and appends without a key, go on. The ledger already holds every key
//! durably, so a refusal loses nothing, and it ends as soon as a rebuilt
//! index commits (a spill file would be a second, unsynced copy of what
//! the ledger holds, with its own crash cases).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use sealtrail_index::EventIndex;

use crate::TrailError;

enum Slot {
    /// Reserved by a batch whose append has not returned.
    InFlight,
    /// Appended at this ledger index, maybe not yet in an index commit.
    At(u64),
}

/// What to do with one input of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Append it.
    Fresh,
    /// Its key is already stored, at this ledger index.
    Original(u64),
    /// Its key was first used by the input at this position of the batch.
    SameAs(usize),
}

pub(crate) struct Keys {
    slots: Mutex<HashMap<String, Slot>>,
    settled: Condvar,
    /// Most keys held (appended and in flight).
    limit: usize,
}

/// Why [`Keys::reserve`] refused a batch.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No index to look keys up in (it did not open; not yet rebuilt).
    NoIndex,
    /// Holding `held` keys, the batch's `new` would pass `limit`.
    Full { held: usize, new: usize, limit: usize },
    /// The lookup in the index failed.
    Failed(TrailError),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Keys {
    pub(crate) fn new(limit: usize) -> Keys {
        Keys {
            slots: Mutex::new(HashMap::new()),
            settled: Condvar::new(),
            limit: limit.max(1),
        }
    }

    /// Keys held now (appended since the index's last commit, or in
    /// flight), and the most that may be.
    pub(crate) fn held(&self) -> (usize, usize) {
        (lock(&self.slots).len(), self.limit)
    }

    /// Decide each input's fate and reserve the keys of the fresh ones.
    /// `keys[i]` is input i's idempotency key (None: no key, or rejected).
    /// `index` gives the index in use; it is asked under this map's lock,
    /// so a rebuilt index that replaced it and let keys leave memory is
    /// the one searched.
    pub(crate) fn reserve(
        &self,
        keys: &[Option<&str>],
        index: &dyn Fn() -> Option<Arc<EventIndex>>,
    ) -> Result<Vec<Plan>, Refusal> {
        if keys.iter().all(Option::is_none) {
            return Ok(vec![Plan::Fresh; keys.len()]);
        }
        let mut slots = lock(&self.slots);
        while keys
            .iter()
            .flatten()
            .any(|k| matches!(slots.get(*k), Some(Slot::InFlight)))
        {
            slots = self.settled.wait(slots).unwrap_or_else(|e| e.into_inner());
        }
        // Keys not appended since the last index commit are looked up in
        // the index together, on one snapshot.
        let look_up: Vec<&str> = keys
            .iter()
            .flatten()
            .copied()
            .filter(|k| !slots.contains_key(*k))
            .collect();
        let committed: HashMap<&str, u64> = if look_up.is_empty() {
            HashMap::new()
        } else {
            let index = index().ok_or(Refusal::NoIndex)?;
            let found = index
                .find_idempotency_keys(&look_up)
                .map_err(|e| Refusal::Failed(e.into()))?;
            look_up
                .iter()
                .zip(found)
                .filter_map(|(&k, at)| Some((k, at?)))
                .collect()
        };
        let mut first_use: HashMap<&str, usize> = HashMap::new();
        let mut plans = Vec::with_capacity(keys.len());
        for (position, key) in keys.iter().enumerate() {
            let Some(key) = key else {
                plans.push(Plan::Fresh);
                continue;
            };
            let plan = if let Some(&earlier) = first_use.get(key) {
                Plan::SameAs(earlier)
            } else if let Some(Slot::At(index)) = slots.get(*key) {
                Plan::Original(*index)
            } else if let Some(&index) = committed.get(key) {
                Plan::Original(index)
            } else {
                first_use.insert(key, position);
                Plan::Fresh
            };
            plans.push(plan);
        }
        if !first_use.is_empty() && slots.len() + first_use.len() > self.limit {
            return Err(Refusal::Full {
                held: slots.len(),
                new: first_use.len(),
                limit: self.limit,
            });
        }
        for (&key, _) in first_use.iter() {
            slots.insert(key.to_owned(), Slot::InFlight);
        }
        Ok(plans)
    }

    /// The append succeeded: the inputs marked in `appended` were stored
    /// from ledger index `first` on, in input order. (A rejected input is
    /// planned `Fresh` too, having no key, but takes no index.)
    pub(crate) fn settle(&self, keys: &[Option<&str>], appended: &[bool], first: u64) {
        if keys.iter().all(Option::is_none) {
            return;
        }
        let mut slots = lock(&self.slots);
        let mut next = first;
        for (key, appended) in keys.iter().zip(appended) {
            if !appended {
                continue;
            }
            if let Some(key) = key {
                slots.insert((*key).to_owned(), Slot::At(next));
            }
            next += 1;
        }
        self.settled.notify_all();
    }

    /// The append failed: nothing was stored, free the reservations.
    pub(crate) fn release(&self, keys: &[Option<&str>], plans: &[Plan]) {
        let mut slots = lock(&self.slots);
        for (key, plan) in keys.iter().zip(plans) {
            if let (Some(key), Plan::Fresh) = (key, plan) {
                slots.remove(*key);
            }
        }
        self.settled.notify_all();
    }

    /// An index commit covering ledger entries below `watermark` is
    /// searchable: their keys are found there from now on.
    pub(crate) fn forget_below(&self, watermark: u64) {
        let mut slots = lock(&self.slots);
        slots.retain(|_, slot| !matches!(slot, Slot::At(index) if *index < watermark));
    }
}
