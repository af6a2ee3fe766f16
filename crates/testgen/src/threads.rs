//! How the benchmarks call a server's entry points from several threads.

/// Call `f` on every item of `items` from `threads` threads at once, item
/// k on thread k mod `threads` (at least one), as a server's connections
/// call in; returns when every call has.
pub fn round_robin<T: Sync>(items: &[T], threads: usize, f: impl Fn(&T) + Sync) {
    let threads = threads.max(1);
    std::thread::scope(|s| {
        for w in 0..threads {
            let f = &f;
            s.spawn(move || items.iter().skip(w).step_by(threads).for_each(f));
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    #[test]
    fn every_item_once_on_its_thread() {
        let seen = Mutex::new(Vec::new());
        let items: Vec<usize> = (0..10).collect();
        super::round_robin(&items, 3, |&i| {
            let name = std::thread::current().id();
            seen.lock().expect("lock").push((i, name));
        });
        let mut seen = seen.into_inner().expect("lock");
        seen.sort_by_key(|&(i, _)| i);
        assert_eq!(seen.iter().map(|&(i, _)| i).collect::<Vec<_>>(), items);
        // Items 0, 3, 6 and 9 share a thread, unlike item 1.
        assert!([3, 6, 9].iter().all(|&k| seen[k].1 == seen[0].1));
        assert_ne!(seen[1].1, seen[0].1);
        // No threads asked for still means one.
        let count = Mutex::new(0);
        super::round_robin(&items, 0, |_| *count.lock().expect("lock") += 1);
        assert_eq!(count.into_inner().expect("lock"), 10);
    }
}
