//! A latency histogram with about 1.6% precision that merges across workers.
//!
//! Values are microseconds. Small values (below 128 µs) are counted exactly;
//! larger ones fall into one of 64 buckets per power of two, so the whole
//! range of `u64` fits in under 4,000 counters and two histograms merge by
//! adding counters. Workers send theirs to the coordinator as sparse pairs.

use serde::{Deserialize, Serialize};

/// Values below this are counted in a bucket of their own.
const EXACT_BELOW: u64 = 128;
/// Buckets per power of two above `EXACT_BELOW` (so 6 bits of mantissa).
const SUB_BUCKET_BITS: u32 = 6;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// The exponent of `EXACT_BELOW` (2^7 = 128).
const FIRST_EXPONENT: u32 = 7;

/// Counts of latencies in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

/// The wire form of a histogram: only the buckets that hold something.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseHistogram {
    /// `(bucket index, count)` pairs.
    pub buckets: Vec<(u32, u64)>,
    /// The largest value recorded, exactly.
    pub max: u64,
}

fn bucket_of(value: u64) -> usize {
    if value < EXACT_BELOW {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let mantissa = (value >> (exponent - SUB_BUCKET_BITS)) & (SUB_BUCKETS - 1);
    (EXACT_BELOW + u64::from(exponent - FIRST_EXPONENT) * SUB_BUCKETS + mantissa) as usize
}

/// The smallest and largest value that fall into `bucket`.
fn bounds_of(bucket: usize) -> (u64, u64) {
    let bucket = bucket as u64;
    if bucket < EXACT_BELOW {
        return (bucket, bucket);
    }
    let above = bucket - EXACT_BELOW;
    let exponent = FIRST_EXPONENT + (above / SUB_BUCKETS) as u32;
    let mantissa = above % SUB_BUCKETS;
    let width = 1u64 << (exponent - SUB_BUCKET_BITS);
    let low = (1u64 << exponent) + mantissa * width;
    (low, low + (width - 1))
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one value.
    pub fn record(&mut self, micros: u64) {
        let bucket = bucket_of(micros);
        if self.counts.len() <= bucket {
            self.counts.resize(bucket + 1, 0);
        }
        self.counts[bucket] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value counted, exactly; 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at `quantile` (0.0–1.0), within the precision of its
    /// bucket (the bucket's middle); 0 when empty.
    pub fn quantile(&self, quantile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // The rank of the value asked for, 1-based: p99 of 100 values is the 99th.
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bounds_of(bucket);
                return (low + (high - low) / 2).min(self.max);
            }
        }
        self.max
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The wire form.
    pub fn to_sparse(&self) -> SparseHistogram {
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &count)| count > 0)
            .map(|(bucket, &count)| (bucket as u32, count))
            .collect();
        SparseHistogram {
            buckets,
            max: self.max,
        }
    }

    /// Back from the wire form.
    pub fn from_sparse(sparse: &SparseHistogram) -> Self {
        let mut histogram = Histogram::new();
        for &(bucket, count) in &sparse.buckets {
            let bucket = bucket as usize;
            if histogram.counts.len() <= bucket {
                histogram.counts.resize(bucket + 1, 0);
            }
            histogram.counts[bucket] += count;
            histogram.total += count;
        }
        histogram.max = sparse.max;
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bounds_hold_it() {
        let mut value = 0u64;
        while value < u64::MAX / 8 {
            let (low, high) = bounds_of(bucket_of(value));
            assert!(
                low <= value && value <= high,
                "{value} not in {low}..={high}"
            );
            // Precision: a bucket is at most 1/64 of its lower bound wide.
            assert!(high - low <= low / 64, "bucket of {value} too wide");
            value = value * 5 / 4 + 1;
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut histogram = Histogram::new();
        for micros in 1..=10_000u64 {
            histogram.record(micros);
        }
        let check = |quantile: f64, expected: u64| {
            let got = histogram.quantile(quantile);
            let error = got.abs_diff(expected) as f64 / expected as f64;
            assert!(error < 0.02, "q{quantile}: {got} vs {expected}");
        };
        check(0.5, 5_000);
        check(0.9, 9_000);
        check(0.99, 9_900);
        assert_eq!(histogram.max(), 10_000);
        assert_eq!(histogram.count(), 10_000);
    }

    #[test]
    fn merging_and_the_wire_form_keep_every_count() {
        let mut left = Histogram::new();
        let mut right = Histogram::new();
        for micros in [3, 200, 5_000, 70_000] {
            left.record(micros);
            right.record(micros * 2);
        }
        let mut merged = Histogram::from_sparse(&left.to_sparse());
        merged.merge(&Histogram::from_sparse(&right.to_sparse()));
        assert_eq!(merged.count(), 8);
        assert_eq!(merged.max(), 140_000);
        assert_eq!(merged.quantile(0.0), 3);
        assert!(Histogram::new().quantile(0.99) == 0);
    }
}
