//! Counters for streams, named after etcd's and Kubernetes' (the apiserver
//! reports list streams as `operation="listStream"`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Upper bounds (seconds) of the duration histogram, as etcd's request
/// duration buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Live counters of one store's streams.
#[derive(Default)]
pub struct StreamMetrics {
    opened: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
    chunks: AtomicU64,
    bytes: AtomicU64,
    duration_micros: AtomicU64,
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    next_pin: AtomicU64,
    pinned: Mutex<BTreeMap<u64, Instant>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMetricsSnapshot {
    /// Streams opened.
    pub opened: u64,
    /// Streams that returned their last chunk.
    pub finished: u64,
    /// Streams that ended with an error (for example compacted).
    pub failed: u64,
    /// Streams dropped before their end.
    pub abandoned: u64,
    /// Chunks returned.
    pub chunks: u64,
    /// Key and value bytes returned.
    pub bytes: u64,
    /// Total seconds of ended streams.
    pub duration_seconds_sum: f64,
    /// Ended streams per duration bucket (cumulative, as Prometheus).
    pub duration_buckets: Vec<(f64, u64)>,
    /// Pinned streams open now.
    pub pinned: usize,
    /// How long the oldest pinned stream has been open.
    pub oldest_pinned: Option<Duration>,
}

impl StreamMetrics {
    pub(crate) fn on_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn on_chunk(&self, bytes: usize) {
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn on_end(&self, d: Duration) {
        self.duration_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        let s = d.as_secs_f64();
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    pub(crate) fn on_finished(&self, d: Duration) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.on_end(d);
    }
    pub(crate) fn on_failed(&self, d: Duration) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.on_end(d);
    }
    pub(crate) fn on_abandoned(&self, d: Duration) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
        self.on_end(d);
    }
    pub(crate) fn pin(&self) -> u64 {
        let id = self.next_pin.fetch_add(1, Ordering::Relaxed);
        self.pinned.lock().insert(id, Instant::now());
        id
    }
    pub(crate) fn unpin(&self, id: u64) {
        self.pinned.lock().remove(&id);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StreamMetricsSnapshot {
        let pinned = self.pinned.lock();
        StreamMetricsSnapshot {
            opened: self.opened.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
            chunks: self.chunks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            duration_seconds_sum: self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6,
            duration_buckets: DURATION_BUCKETS
                .iter()
                .zip(&self.buckets)
                .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
                .collect(),
            pinned: pinned.len(),
            oldest_pinned: pinned.values().next().map(|t| t.elapsed()),
        }
    }
}

impl StreamMetricsSnapshot {
    /// The counters in Prometheus' text format, with etcd's and the
    /// Kubernetes apiserver's names and labels.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!(
            "etcd_mvcc_range_stream_total{{result=\"opened\"}} {}",
            self.opened
        ));
        line(format!(
            "etcd_mvcc_range_stream_total{{result=\"finished\"}} {}",
            self.finished
        ));
        line(format!(
            "etcd_mvcc_range_stream_total{{result=\"failed\"}} {}",
            self.failed
        ));
        line(format!(
            "etcd_mvcc_range_stream_total{{result=\"abandoned\"}} {}",
            self.abandoned
        ));
        line(format!(
            "etcd_mvcc_range_stream_chunks_total {}",
            self.chunks
        ));
        line(format!("etcd_mvcc_range_stream_bytes_total {}", self.bytes));
        line(format!("etcd_mvcc_range_stream_pinned {}", self.pinned));
        let ended = self.finished + self.failed + self.abandoned;
        for (b, n) in &self.duration_buckets {
            line(format!(
                "etcd_request_duration_seconds_bucket{{operation=\"listStream\",le=\"{b}\"}} {n}"
            ));
        }
        line(format!(
            "etcd_request_duration_seconds_bucket{{operation=\"listStream\",le=\"+Inf\"}} {ended}"
        ));
        line(format!(
            "etcd_request_duration_seconds_sum{{operation=\"listStream\"}} {}",
            self.duration_seconds_sum
        ));
        line(format!(
            "etcd_request_duration_seconds_count{{operation=\"listStream\"}} {ended}"
        ));
        s
    }
}
