//! `kubectl logs` on the node: a container run's CRI log files (see
//! `skiff_runtime::cri_log`) read back with upstream's `PodLogOptions` — `sinceSeconds` /
//! `sinceTime`, `tailLines`, `timestamps`, `limitBytes` — and, with `follow`, read on as the
//! container writes, across rotations, until the run ends or the reader goes away.
//!
//! As the kubelet does, a record (one line of the file) is the unit: `tailLines` counts
//! records, and every record gets its own timestamp; a piece of a long line (`P`) is written
//! without the newline its final piece (`F`) adds.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_runtime::cri_log::Stream;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How often a followed log is checked for more.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<OffsetDateTime>,
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the query of a log request; a bad value is the message of a 422 (upstream's
    /// `PodLogOptions` validation).
    pub fn parse(query: &str, now: OffsetDateTime) -> Result<LogOptions, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| format!("the query: {e}"))?;
        let mut options = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        // An integer at least `min`, else upstream's message for the field.
        let int_at_least = |key: &str, value: &str, min: i64| {
            let n = value
                .parse::<i64>()
                .map_err(|_| format!("{key}: Invalid value: \"{value}\": must be an integer"))?;
            if n < min {
                let bound = match min {
                    0 => "greater than or equal to 0".to_string(),
                    m => format!("greater than {}", m - 1),
                };
                return Err(format!("{key}: Invalid value: {n}: must be {bound}"));
            }
            Ok(n)
        };
        for (key, value) in &pairs {
            let flag = || value.is_empty() || value == "true" || value == "1";
            match key.as_str() {
                "container" => options.container = Some(value.clone()),
                "follow" => options.follow = flag(),
                "previous" => options.previous = flag(),
                "timestamps" => options.timestamps = flag(),
                "tailLines" => options.tail_lines = Some(int_at_least(key, value, 0)? as usize),
                "limitBytes" => options.limit_bytes = Some(int_at_least(key, value, 1)? as u64),
                "sinceSeconds" => since_seconds = Some(int_at_least(key, value, 1)?),
                "sinceTime" => {
                    since_time = Some(OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
                        format!("sinceTime: Invalid value: \"{value}\": must be an RFC 3339 time")
                    })?);
                }
                _ => {}
            }
        }
        options.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into());
            }
            (Some(s), None) => Some(now - time::Duration::seconds(s)),
            (None, t) => t,
        };
        Ok(options)
    }
}

/// The files of one container run, oldest first: `N.log.K` … `N.log.1`, then `N.log`.
fn files(log: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    let name = log.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir(log.parent().unwrap_or(Path::new("."))) {
        for entry in dir.flatten() {
            let file = entry.file_name();
            let Some(n) = file
                .to_str()
                .and_then(|f| f.strip_prefix(name)?.strip_prefix('.')?.parse().ok())
            else {
                continue;
            };
            rotated.push((n, entry.path()));
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(log.to_path_buf());
    out
}

/// Turns records into what the reader sees, honouring `since`, `timestamps` and
/// `limitBytes`.
struct Renderer<'a> {
    options: &'a LogOptions,
    written: u64,
}

impl Renderer<'_> {
    fn done(&self) -> bool {
        self.options.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// The bytes one record shows and its stream, or None if it is filtered out or
    /// malformed.
    fn render(&mut self, line: &[u8]) -> Option<(Stream, Vec<u8>)> {
        let mut parts = line.splitn(4, |&b| b == b' ');
        let time = std::str::from_utf8(parts.next()?).ok()?;
        let stream = if parts.next()? == b"stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let tag = parts.next()?;
        let content = parts.next().unwrap_or_default();
        if let Some(since) = self.options.since {
            let at = OffsetDateTime::parse(time, &Rfc3339).ok()?;
            if at < since {
                return None;
            }
        }
        let mut out = Vec::with_capacity(content.len() + 40);
        if self.options.timestamps {
            out.extend_from_slice(time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(content);
        if tag != b"P" {
            out.push(b'\n');
        }
        if let Some(limit) = self.options.limit_bytes {
            out.truncate(limit.saturating_sub(self.written) as usize);
        }
        self.written += out.len() as u64;
        Some((stream, out))
    }
}

/// Rendered records gathered into chunks, one per run of the same stream.
#[derive(Default)]
struct Chunks(Vec<(Stream, Vec<u8>)>);

impl Chunks {
    fn push(&mut self, (stream, bytes): (Stream, Vec<u8>)) {
        match self.0.last_mut() {
            Some((s, b)) if *s == stream => b.extend_from_slice(&bytes),
            _ => self.0.push((stream, bytes)),
        }
    }

    /// Hands every chunk to `out`; false when the reader went away.
    fn send(self, out: &mut impl FnMut(Stream, Vec<u8>) -> bool) -> bool {
        self.0
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .all(|(s, b)| out(s, b))
    }
}

/// Writes a container run's log (`log` is its `N.log`) to `out` per `options`, in chunks
/// of one stream each. With `follow`, keeps reading until `ended()` says the run is over and
/// everything it wrote was sent; `ended` is first asked once what the files held at the
/// start was read (attach waits for that). Stops early when `out` answers false (the
/// reader went away); an empty chunk asks whether the reader is still there.
pub fn stream(
    log: &Path,
    options: &LogOptions,
    ended: impl Fn() -> bool,
    mut out: impl FnMut(Stream, Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let mut renderer = Renderer {
        options,
        written: 0,
    };
    // What the files hold now; the last file stays open to follow.
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<(File, Vec<u8>)> = None;
    for path in files(log) {
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let partial = split_lines(&data, &mut lines);
        if path == log {
            current = Some((file, partial));
        }
    }
    let start = options
        .tail_lines
        .map_or(0, |n| lines.len().saturating_sub(n));
    let mut chunks = Chunks::default();
    for line in &lines[start..] {
        if renderer.done() {
            break;
        }
        if let Some(rendered) = renderer.render(line) {
            chunks.push(rendered);
        }
    }
    if !chunks.send(&mut out) {
        return Ok(());
    }
    if !options.follow {
        return Ok(());
    }
    let Some((mut file, mut partial)) = current else {
        return Ok(());
    };
    // Set when rotation moved the open file away: it is read once more to its end (the
    // writer's last lines may have landed after the previous read), then left.
    let mut leaving = false;
    loop {
        if renderer.done() {
            return Ok(());
        }
        // Seen before the read, so nothing written before the run ended is missed.
        let finished = ended();
        let mut data = std::mem::take(&mut partial);
        file.read_to_end(&mut data)?;
        let mut fresh = Vec::new();
        partial = split_lines(&data, &mut fresh);
        let mut chunks = Chunks::default();
        for line in &fresh {
            if let Some(rendered) = renderer.render(line) {
                chunks.push(rendered);
            }
            if renderer.done() {
                break;
            }
        }
        if !chunks.send(&mut out) {
            return Ok(());
        }
        if fresh.is_empty() {
            if leaving {
                file = File::open(log)?;
                partial.clear();
                leaving = false;
                continue;
            }
            if rotated_away(&file, log) {
                leaving = true;
                continue;
            }
            if finished {
                return Ok(());
            }
            // An empty chunk tells whether the reader is still there.
            if !out(Stream::Stdout, Vec::new()) {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// Moves the complete lines of `data` into `lines`; answers the unfinished rest.
fn split_lines(data: &[u8], lines: &mut Vec<Vec<u8>>) -> Vec<u8> {
    let mut rest = data;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        lines.push(rest[..i].to_vec());
        rest = &rest[i + 1..];
    }
    rest.to_vec()
}

/// Whether the file at `path` is no longer the open one (rotation renamed it).
fn rotated_away(open: &File, path: &Path) -> bool {
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime::cri_log::CriLog;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn read(log: &Path, options: &LogOptions) -> String {
        let mut text = Vec::new();
        stream(
            log,
            options,
            || true,
            |_, b| {
                text.extend(b);
                true
            },
        )
        .unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn options_are_read_and_checked_as_upstream_does() {
        let t = now();
        let o = LogOptions::parse(
            "container=web&follow=true&tailLines=3&timestamps=true&limitBytes=10",
            t,
        )
        .unwrap();
        assert_eq!(o.container.as_deref(), Some("web"));
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(3), Some(10)));
        let o = LogOptions::parse("sinceSeconds=60", t).unwrap();
        assert_eq!(o.since, Some(t - time::Duration::seconds(60)));
        let o = LogOptions::parse("sinceTime=2026-01-02T03:04:05Z", t).unwrap();
        assert_eq!(o.since.unwrap().year(), 2026);
        for (query, message) in [
            (
                "tailLines=-1",
                "tailLines: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                "limitBytes=0",
                "limitBytes: Invalid value: 0: must be greater than 0",
            ),
            (
                "sinceSeconds=0",
                "sinceSeconds: Invalid value: 0: must be greater than 0",
            ),
            (
                "sinceSeconds=5&sinceTime=2026-01-02T03:04:05Z",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ),
            (
                "tailLines=x",
                "tailLines: Invalid value: \"x\": must be an integer",
            ),
        ] {
            assert_eq!(LogOptions::parse(query, t).unwrap_err(), message);
        }
    }

    #[test]
    fn records_render_with_tail_timestamps_since_limits_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        // Small files, so the records span rotations.
        let mut writer = CriLog::open(&log, 1024, 5).unwrap();
        for i in 0..40 {
            writer
                .record(
                    Stream::Stdout,
                    format!("line {i:02} {}", "x".repeat(30)).as_bytes(),
                    true,
                )
                .unwrap();
        }
        writer.record(Stream::Stderr, b"part", false).unwrap();
        writer.record(Stream::Stderr, b"ial", true).unwrap();
        assert!(dir.path().join("0.log.1").exists(), "rotated");

        let all = read(&log, &LogOptions::default());
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 41);
        assert!(
            lines[0].starts_with("line 00 "),
            "oldest first: {}",
            lines[0]
        );
        assert_eq!(lines[40], "partial");

        let tail = LogOptions {
            tail_lines: Some(3),
            ..Default::default()
        };
        // Three records: two whole lines and the two pieces of the last… as records count.
        assert_eq!(
            read(&log, &tail),
            format!("line 39 {}\npartial\n", "x".repeat(30))
        );
        let zero = LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(read(&log, &zero), "");

        let stamped = read(
            &log,
            &LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        );
        let (time, text) = stamped.trim_end().split_once(' ').unwrap();
        assert!(OffsetDateTime::parse(time, &Rfc3339).is_ok(), "{time}");
        assert_eq!(text, "ial");

        let limited = read(
            &log,
            &LogOptions {
                limit_bytes: Some(10),
                ..Default::default()
            },
        );
        assert_eq!(limited, "line 00 xx");

        let future = LogOptions {
            since: Some(now() + time::Duration::hours(1)),
            ..Default::default()
        };
        assert_eq!(read(&log, &future), "");
        let past = LogOptions {
            since: Some(now() - time::Duration::hours(1)),
            ..Default::default()
        };
        assert_eq!(read(&log, &past), all);
    }

    #[test]
    fn follow_reads_on_across_rotation_until_the_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let mut writer = CriLog::open(&log, 1024, 3).unwrap();
        writer.record(Stream::Stdout, b"first", true).unwrap();
        let ended = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = {
            let (log, ended) = (log.clone(), ended.clone());
            std::thread::spawn(move || {
                let options = LogOptions {
                    follow: true,
                    ..Default::default()
                };
                stream(
                    &log,
                    &options,
                    || ended.load(Ordering::SeqCst),
                    |_, b| tx.send(b).is_ok(),
                )
                .unwrap();
            })
        };
        // Enough to rotate twice while the reader follows.
        for i in 0..60 {
            writer
                .record(
                    Stream::Stdout,
                    format!("more {i:02} {}", "y".repeat(30)).as_bytes(),
                    true,
                )
                .unwrap();
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(150));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        ended.store(true, Ordering::SeqCst);
        reader.join().unwrap();
        let text: Vec<u8> = rx.try_iter().flatten().collect();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "first");
        assert_eq!(lines.len(), 61, "every record once, in order:\n{text}");
        for (i, line) in lines[1..].iter().enumerate() {
            assert!(line.starts_with(&format!("more {i:02} ")), "{line}");
        }
    }

    #[test]
    fn a_reader_that_goes_away_stops_a_follow() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        CriLog::open(&log, 1024, 3)
            .unwrap()
            .record(Stream::Stdout, b"x", true)
            .unwrap();
        let options = LogOptions {
            follow: true,
            ..Default::default()
        };
        // Never ends by itself; the closed reader ends it.
        stream(&log, &options, || false, |_, _| false).unwrap();
    }
}
