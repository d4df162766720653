//! Latency summaries and the JSON-lines output every scenario shares.

use std::time::Duration;

use serde_json::{Map, Value};

/// Latencies of many operations.
#[derive(Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Latencies(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (0.0–1.0) in milliseconds, by nearest rank.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        ms(self.0[rank - 1])
    }

    /// p50, p99 and max, as fields of a result line.
    pub fn summary(&mut self, prefix: &str) -> Vec<(String, Value)> {
        vec![
            (
                format!("{prefix}p50_ms"),
                round(self.quantile_ms(0.50)).into(),
            ),
            (
                format!("{prefix}p99_ms"),
                round(self.quantile_ms(0.99)).into(),
            ),
            (
                format!("{prefix}max_ms"),
                round(self.quantile_ms(1.0)).into(),
            ),
        ]
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Rounds to three decimals, so lines stay readable.
pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Every result emitted so far, for summaries (`skiff-bench check`).
static RESULTS: std::sync::Mutex<Vec<Map<String, Value>>> = std::sync::Mutex::new(Vec::new());

/// Whether results go to stdout as JSON lines (a summary may take stdout instead).
static JSON_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Prints one result as a JSON line on stdout, and a readable line on stderr.
pub fn emit(scenario: &str, fields: Vec<(String, Value)>) {
    let mut line = Map::new();
    line.insert("scenario".into(), scenario.into());
    let mut readable = vec![scenario.to_owned()];
    for (key, value) in fields {
        readable.push(format!("{key}={value}"));
        line.insert(key, value);
    }
    if JSON_LINES.load(std::sync::atomic::Ordering::Relaxed) {
        println!("{}", Value::Object(line.clone()));
    }
    eprintln!("  {}", readable.join(" "));
    RESULTS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

/// Sends results to stderr only, from now on.
pub fn quiet_json_lines() {
    JSON_LINES.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// The results emitted so far.
pub fn results() -> Vec<Map<String, Value>> {
    RESULTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `count` operations with `concurrency` in flight; answers each one's latency.
pub async fn in_parallel<F, Fut>(
    count: usize,
    concurrency: usize,
    op: F,
) -> anyhow::Result<Latencies>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let all = std::sync::Arc::new(tokio::sync::Mutex::new(Latencies::with_capacity(count)));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, all, op) = (next.clone(), all.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Latencies::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = std::time::Instant::now();
                op(i).await?;
                mine.push(t.elapsed());
            }
            all.lock().await.extend(mine);
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(std::mem::take(&mut *all.lock().await))
}

/// Shorthand for building result fields.
#[macro_export]
macro_rules! fields {
    ($($key:literal => $value:expr),* $(,)?) => {
        vec![$(($key.to_string(), serde_json::Value::from($value))),*]
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for i in 1..=100 {
            l.push(Duration::from_millis(i));
        }
        assert_eq!(l.quantile_ms(0.5), 50.0);
        assert_eq!(l.quantile_ms(0.99), 99.0);
        assert_eq!(l.quantile_ms(1.0), 100.0);
        assert!(Latencies::default().quantile_ms(0.5).is_nan());
    }
}
