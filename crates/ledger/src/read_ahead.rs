//! Work done on a second thread a bounded number of items ahead of the
//! thread that uses it, in order: `verify` decompresses the next packed
//! bundles while it hashes the current one.
//!
//! Deliberately not here: what the items are, or more than one producer.

use std::sync::mpsc::{channel, sync_channel};

/// Run `produce` on a second thread and `consume` on this one over the
/// same sequence of items, in order. The producer runs at most `depth`
/// items ahead and waits there until the consumer takes one. Each
/// consumed item goes back to `produce` to be refilled (its memory
/// reused), so at most `depth + 2` items ever exist: `depth` waiting, one
/// being consumed, one being produced. `produce` returns `None` at the
/// end; `consume` returns `Ok(false)` or an error to stop early, and the
/// producer then stops at its next item.
pub(crate) fn read_ahead<T: Send, E>(
    depth: usize,
    mut produce: impl FnMut(Option<T>) -> Option<T> + Send,
    mut consume: impl FnMut(&T) -> Result<bool, E>,
) -> Result<(), E> {
    let (ready, made) = sync_channel::<T>(depth);
    let (spent, reuse) = channel::<T>();
    std::thread::scope(|s| {
        s.spawn(move || {
            while let Some(item) = produce(reuse.try_recv().ok()) {
                // Fails only once the consumer stopped.
                if ready.send(item).is_err() {
                    return;
                }
            }
        });
        // Leaving this loop drops `made`: a producer waiting at the bound
        // wakes, fails to send and ends before the scope joins it.
        for item in made {
            if !consume(&item)? {
                break;
            }
            // Fails only once the producer is done.
            let _ = spent.send(item);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Produces `0..total`, counting what it made and what it allocated.
    fn counting<'a>(
        total: usize,
        made: &'a AtomicUsize,
        fresh: &'a AtomicUsize,
    ) -> impl FnMut(Option<Vec<usize>>) -> Option<Vec<usize>> + Send + 'a {
        move |old| {
            let n = made.load(Ordering::SeqCst);
            if n == total {
                return None;
            }
            let mut item = old.unwrap_or_else(|| {
                fresh.fetch_add(1, Ordering::SeqCst);
                Vec::new()
            });
            item.clear();
            item.push(n);
            made.fetch_add(1, Ordering::SeqCst);
            Some(item)
        }
    }

    #[test]
    fn the_producer_stops_at_the_bound_and_nothing_is_lost_or_reordered() {
        for depth in [1, 3, 8] {
            let total = 40;
            let (made, fresh) = (AtomicUsize::new(0), AtomicUsize::new(0));
            let mut seen = Vec::new();
            read_ahead(depth, counting(total, &made, &fresh), |item: &Vec<usize>| {
                let i = item[0];
                seen.push(i);
                // Let the producer run as far as it can: to the bound (or
                // the end), and no further however long it is given.
                let bound = (i + depth + 2).min(total);
                while made.load(Ordering::SeqCst) < bound {
                    std::thread::yield_now();
                }
                for _ in 0..200 {
                    std::thread::yield_now();
                }
                let ahead = made.load(Ordering::SeqCst);
                assert_eq!(ahead, bound, "depth {depth}, consuming item {i}");
                Ok::<_, ()>(true)
            })
            .unwrap();
            assert_eq!(seen, (0..total).collect::<Vec<_>>(), "depth {depth}");
            let fresh = fresh.load(Ordering::SeqCst);
            assert!(fresh <= depth + 2, "depth {depth}: {fresh} items allocated");
        }
    }

    #[test]
    fn stopping_early_stops_the_producer() {
        let (made, fresh) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut seen = 0;
        read_ahead(2, counting(usize::MAX, &made, &fresh), |_: &Vec<usize>| {
            seen += 1;
            Ok::<_, ()>(seen < 5)
        })
        .unwrap();
        assert_eq!(seen, 5);
        // The consumer held item 4; at most 2 waited, 1 was being made.
        assert!(made.load(Ordering::SeqCst) <= 5 + 2 + 1);

        let (made, fresh) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let r = read_ahead(2, counting(usize::MAX, &made, &fresh), |item: &Vec<usize>| {
            if item[0] == 3 {
                Err(format!("item {}", item[0]))
            } else {
                Ok(true)
            }
        });
        assert_eq!(r, Err("item 3".to_string()));
        assert!(made.load(Ordering::SeqCst) <= 4 + 2 + 1);
    }
}
