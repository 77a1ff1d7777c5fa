//! The spill journal: rows that could not be written yet, on local disk.
//!
//! Append-only JSON-lines segment files (`segment-000001.jsonl`, …) in one
//! directory. Appends go to the open segment and are synced before the
//! writer moves on, so a crash loses nothing acknowledged as journaled.
//! Replay closes the open segment and hands back the closed ones oldest
//! first; each is deleted only after all its rows are in the database.
//! A torn last line (a crash mid-append) is skipped and counted, never
//! fatal.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::rows::LogRow;

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Appending would take the journal past its size cap.
    #[error("journal is full ({used} of {cap} bytes used)")]
    Full {
        /// Bytes used now.
        used: u64,
        /// The cap.
        cap: u64,
    },
    /// The file system failed.
    #[error("journal I/O failed in {dir}: {source}")]
    Io {
        /// The journal directory.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The journal directory and its open segment.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    cap: u64,
    used: u64,
    next_seq: u64,
    open: Option<File>,
}

/// The rows of one segment, and how many lines could not be read.
#[derive(Debug, Default)]
pub struct Segment {
    /// Rows, in append order.
    pub rows: Vec<LogRow>,
    /// Lines skipped as unreadable (torn writes).
    pub skipped: u64,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, capped at `cap` bytes.
    pub fn open(dir: impl Into<PathBuf>, cap: u64) -> Result<Journal, JournalError> {
        let dir = dir.into();
        let io = |source| JournalError::Io {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io)?;
        let mut used = 0;
        let mut next_seq = 1;
        for (seq, path) in list_segments(&dir).map_err(io)? {
            used += fs::metadata(&path).map_err(io)?.len();
            next_seq = next_seq.max(seq + 1);
        }
        Ok(Journal {
            dir,
            cap,
            used,
            next_seq,
            open: None,
        })
    }

    /// Whether anything is waiting to be replayed.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Bytes on disk.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, source: std::io::Error) -> JournalError {
        JournalError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Appends rows durably, or refuses all of them if they do not fit.
    pub fn append(&mut self, rows: &[LogRow]) -> Result<(), JournalError> {
        let mut buf = Vec::with_capacity(rows.len() * 512);
        for row in rows {
            serde_json::to_writer(&mut buf, row).map_err(|e| self.io(e.into()))?;
            buf.push(b'\n');
        }
        if self.used + buf.len() as u64 > self.cap {
            return Err(JournalError::Full {
                used: self.used,
                cap: self.cap,
            });
        }
        if self.open.is_none() {
            let path = self.dir.join(format!("segment-{:06}.jsonl", self.next_seq));
            self.next_seq += 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| self.io(e))?;
            self.open = Some(file);
        }
        let Some(file) = self.open.as_mut() else {
            return Ok(());
        };
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        written.map_err(|e| self.io(e))?;
        self.used += buf.len() as u64;
        Ok(())
    }

    /// Closes the open segment and lists every segment, oldest first.
    pub fn segments(&mut self) -> Result<Vec<PathBuf>, JournalError> {
        self.open = None;
        Ok(list_segments(&self.dir)
            .map_err(|e| self.io(e))?
            .into_iter()
            .map(|(_, path)| path)
            .collect())
    }

    /// Reads one segment.
    pub fn read(&self, path: &Path) -> Result<Segment, JournalError> {
        let file = File::open(path).map_err(|e| self.io(e))?;
        let mut segment = Segment::default();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| self.io(e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<LogRow>(&line) {
                Ok(row) => segment.rows.push(row),
                Err(err) => {
                    tracing::error!(segment = %path.display(), %err, "skipping an unreadable journal line");
                    segment.skipped += 1;
                }
            }
        }
        Ok(segment)
    }

    /// Deletes a segment whose rows are all in the database.
    pub fn remove(&mut self, path: &Path) -> Result<(), JournalError> {
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(path).map_err(|e| self.io(e))?;
        self.used = self.used.saturating_sub(len);
        Ok(())
    }

    /// Appends rows the database refuses outright to `rejected.jsonl`, kept
    /// for a person to inspect; they are never retried automatically.
    pub fn quarantine(&self, row: &LogRow, reason: &str) -> Result<(), JournalError> {
        let line = serde_json::json!({"reason": reason, "row": row}).to_string();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rejected.jsonl"))
            .map_err(|e| self.io(e))?;
        writeln!(file, "{line}").map_err(|e| self.io(e))
    }
}

fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::rows::FeedbackRow;

    fn row(n: usize) -> LogRow {
        LogRow::Feedback(Box::new(FeedbackRow {
            id: Uuid::now_v7(),
            tenant: "t".into(),
            interaction_id: Uuid::now_v7(),
            end_user: format!("u{n}"),
            kind: "explicit".into(),
            rating: Some(1),
            comment: None,
            expected_output: None,
            source_interaction_id: None,
            created_at: Utc::now(),
        }))
    }

    #[test]
    fn append_replay_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(j.is_empty());
        j.append(&[row(1), row(2)]).unwrap();
        let segments = j.segments().unwrap();
        j.append(&[row(3)]).unwrap(); // goes to a new segment
        let all = j.segments().unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(all.len(), 2);
        assert_eq!(j.read(&all[0]).unwrap().rows.len(), 2);
        // Reopening finds what is there.
        let mut again = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(!again.is_empty());
        for path in again.segments().unwrap() {
            again.remove(&path).unwrap();
        }
        assert!(again.is_empty());
    }

    #[test]
    fn full_journal_refuses_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 300).unwrap();
        j.append(&[row(1)]).unwrap();
        assert!(matches!(
            j.append(&[row(2), row(3)]),
            Err(JournalError::Full { .. })
        ));
        let path = j.segments().unwrap().remove(0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"feedb").unwrap();
        let seg = j.read(&path).unwrap();
        assert_eq!(seg.rows.len(), 1);
        assert_eq!(seg.skipped, 1);
    }
}
