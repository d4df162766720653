//! Container logs in the CRI format kubelets keep on disk (and `kubectl logs` reads through
//! the agent): one line per record, `<RFC 3339 nano time> <stream> <F|P> <content>`, where
//! `P` marks a piece of a line longer than the buffer. Files rotate by size:
//! `0.log` → `0.log.1` → … (the kubelet's `containerLogMaxSize` / `containerLogMaxFiles`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest piece of a line written as one record.
pub const MAX_RECORD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub struct CriLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond()
    )
}

impl CriLog {
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<CriLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CriLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.max(1024),
            max_files: max_files.max(1),
        })
    }

    /// Writes one record; `complete` is false for a piece of a longer line.
    pub fn record(
        &mut self,
        stream: Stream,
        content: &[u8],
        complete: bool,
    ) -> std::io::Result<()> {
        let tag = if complete { "F" } else { "P" };
        let mut line = format!("{} {} {tag} ", timestamp(), stream.name()).into_bytes();
        line.extend_from_slice(content);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        // The oldest goes; the rest move up one.
        let _ = std::fs::remove_file(numbered(self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if self.max_files > 1 {
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Splits a stream's bytes into records: whole lines, and pieces of lines longer than
/// [`MAX_RECORD`].
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; answers the records they complete as (content, complete line?).
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&data[..i]);
            out.push((std::mem::take(&mut self.pending), true));
            data = &data[i + 1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_RECORD {
            let rest = self.pending.split_off(MAX_RECORD);
            out.push((std::mem::replace(&mut self.pending, rest), false));
        }
        out
    }

    /// What is left at the end of the stream (a last line without a newline).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_records_and_long_lines_pieces() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"hel"), vec![]);
        assert_eq!(s.feed(b"lo\nwor"), vec![(b"hello".to_vec(), true)]);
        assert_eq!(
            s.feed(b"ld\n\n"),
            vec![(b"world".to_vec(), true), (vec![], true)]
        );
        let long = vec![b'x'; MAX_RECORD + 10];
        let records = s.feed(&long);
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].0.len(), records[0].1), (MAX_RECORD, false));
        assert_eq!(s.finish(), Some(vec![b'x'; 10]));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn records_carry_time_stream_and_tag_and_files_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut log = CriLog::open(&path, 1024, 3).unwrap();
        log.record(Stream::Stdout, b"hello", true).unwrap();
        log.record(Stream::Stderr, b"par", false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.len() == 30, "{time}");
        assert_eq!(rest, "stdout F hello");
        assert!(lines[1].ends_with(" stderr P par"));
        for i in 0..100 {
            log.record(
                Stream::Stdout,
                format!("line {i:03} {}", "y".repeat(40)).as_bytes(),
                true,
            )
            .unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 1024);
        assert!(current.ends_with(&format!("line 099 {}\n", "y".repeat(40))));
        assert!(dir.path().join("c/0.log.1").exists() && dir.path().join("c/0.log.2").exists());
        assert!(
            !dir.path().join("c/0.log.3").exists(),
            "at most three files"
        );
    }
}
