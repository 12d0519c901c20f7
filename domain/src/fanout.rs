//! How a fan-out's work set is split into child jobs (chunks): enough chunks to keep every
//! worker busy, each of at most [`MAX_CHUNK`] items, so a 10,000-item fan-out is about 100 durable
//! jobs instead of 10,000 while a small one still spreads over the workers. Items are still
//! counted one by one (I7): a chunk is a unit of scheduling, never of counting.

/// Most items one child job carries.
pub const MAX_CHUNK: usize = 256;

/// Fewest chunks a fan-out is split into when it has that many items: with fewer, a large
/// fan-out's chunks would be so long that one slow chunk holds the whole run's end.
pub const MIN_CHUNKS: usize = 100;

/// Items per chunk for `items` items on `workers` concurrent worker slots: the items spread over
/// at least `max(MIN_CHUNKS, 4 × workers)` chunks (so every worker gets several), at most
/// [`MAX_CHUNK`] per chunk, at least 1.
///
/// ```
/// use opsrun_domain::chunk_size;
/// assert_eq!(chunk_size(10_000, 8), 100); // ~100 jobs, not 10,000
/// assert_eq!(chunk_size(30, 8), 1);       // a small fan-out: one item per job, on every worker
/// assert_eq!(chunk_size(100_000, 8), 256);
/// ```
#[must_use]
pub fn chunk_size(items: usize, workers: usize) -> usize {
    let chunks = MIN_CHUNKS.max(workers.saturating_mul(4));
    items.div_ceil(chunks).clamp(1, MAX_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_every_worker_busy_and_stay_bounded() {
        for workers in [1, 2, 8, 32, 64] {
            for items in [
                0, 1, 7, 30, 99, 100, 101, 1_000, 10_000, 100_000, 10_000_000,
            ] {
                let size = chunk_size(items, workers);
                assert!(
                    (1..=MAX_CHUNK).contains(&size),
                    "{items} on {workers}: {size}"
                );
                let chunks = items.div_ceil(size);
                // Every worker gets at least one chunk while there are items enough.
                assert!(
                    chunks >= items.min(workers),
                    "{items} items on {workers} workers: only {chunks} chunks"
                );
                // Never more chunks than items.
                assert!(chunks <= items.max(1));
            }
        }
        assert_eq!(10_000_usize.div_ceil(chunk_size(10_000, 8)), 100);
        assert_eq!(30_usize.div_ceil(chunk_size(30, 8)), 30);
        assert_eq!(1_000_usize.div_ceil(chunk_size(1_000, 64)), 250);
    }
}
