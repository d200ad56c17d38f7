//! Work on many items at once, a few threads at a time, with the results in the items'
//! order: hosts of a rollout, hosts of a render.

use std::sync::Mutex;

/// `work` on each of `items`, `parallel` at a time (one thread each, the next item taken as
/// soon as one ends, so a slow host holds up no other); the results in the order of `items`.
pub fn each_at_once<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let queue = Mutex::new(items.iter().enumerate());
    let results = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1).min(items.len()) {
            scope.spawn(|| {
                loop {
                    let Some((index, item)) = queue.lock().expect("queue").next() else {
                        break;
                    };
                    let result = work(item);
                    results.lock().expect("results").push((index, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_at_once_keeps_the_order_of_its_items_whatever_order_they_end_in() {
        let items: Vec<u64> = (0..20).collect();
        let done = each_at_once(&items, 4, |n| {
            std::thread::sleep(Duration::from_millis(20 - n));
            n * 2
        });
        assert_eq!(done, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        assert!(each_at_once(&[] as &[u8], 0, |_| 1).is_empty());
    }
}
