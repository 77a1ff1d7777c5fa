//! The spill journal: rows that could not be written yet, on local disk.
//!
//! Append-only JSON-lines segment files (`segment-000001.jsonl`, …) in one
//! directory. Appends go to the open segment and are synced before the
//! writer moves on, so a crash loses nothing acknowledged as journaled. A
//! segment is closed once it holds `segment_bytes` and a new one opened, so
//! no segment grows without bound. Replay reads the oldest closed segment a
//! chunk at a time from an offset ([`Journal::read_chunk`]), so memory holds
//! one chunk whatever the journal's size, and deletes a segment only after
//! all its rows are in the database. A torn last line (a crash mid-append)
//! is skipped and counted, never fatal.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
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
    /// Bytes past which the open segment is closed.
    segment_bytes: u64,
    /// The open segment, its path and its length.
    open: Option<(File, PathBuf, u64)>,
}

/// Part of a segment read by [`Journal::read_chunk`].
#[derive(Debug, Default)]
pub struct Chunk {
    /// Rows, in append order.
    pub rows: Vec<LogRow>,
    /// Lines skipped as unreadable (torn writes).
    pub skipped: u64,
    /// Where the next chunk starts.
    pub next_offset: u64,
    /// Whether the segment has nothing after this chunk.
    pub at_end: bool,
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
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            open: None,
        })
    }

    /// Closes a segment once it holds `bytes` (at least one append goes in
    /// each segment, however large).
    pub fn with_segment_bytes(mut self, bytes: u64) -> Journal {
        self.segment_bytes = bytes.max(1);
        self
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
        if self
            .open
            .as_ref()
            .is_some_and(|(_, _, len)| *len >= self.segment_bytes)
        {
            self.open = None;
        }
        if self.open.is_none() {
            let path = self.dir.join(format!("segment-{:06}.jsonl", self.next_seq));
            self.next_seq += 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| self.io(e))?;
            // The new file's directory entry must survive a crash too.
            if let Ok(dir) = File::open(&self.dir) {
                let _ = dir.sync_all();
            }
            self.open = Some((file, path, 0));
        }
        let Some((file, _, len)) = self.open.as_mut() else {
            return Ok(());
        };
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(err) = written {
            return Err(self.io(err));
        }
        *len += buf.len() as u64;
        self.used += buf.len() as u64;
        Ok(())
    }

    /// Closes the open segment and lists every segment, oldest first.
    #[cfg(test)]
    fn segments(&mut self) -> Result<Vec<PathBuf>, JournalError> {
        self.open = None;
        Ok(list_segments(&self.dir)
            .map_err(|e| self.io(e))?
            .into_iter()
            .map(|(_, path)| path)
            .collect())
    }

    /// The oldest segment to replay, closing the open segment when it is
    /// the only one (appends then go to a new one); `None` when the
    /// journal holds no segment.
    pub fn oldest_segment(&mut self) -> Result<Option<PathBuf>, JournalError> {
        let listed = list_segments(&self.dir).map_err(|e| self.io(e))?;
        let Some((_, oldest)) = listed.into_iter().next() else {
            return Ok(None);
        };
        if self
            .open
            .as_ref()
            .is_some_and(|(_, open, _)| *open == oldest)
        {
            self.open = None;
        }
        Ok(Some(oldest))
    }

    /// Reads rows of the closed segment `path` from byte `offset`: whole
    /// lines until `max_rows` rows or about `max_bytes` bytes are read
    /// (always at least one line), so replay holds one chunk in memory
    /// however large the segment.
    pub fn read_chunk(
        &self,
        path: &Path,
        offset: u64,
        max_rows: usize,
        max_bytes: u64,
    ) -> Result<Chunk, JournalError> {
        let mut file = File::open(path).map_err(|e| self.io(e))?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| self.io(e))?;
        let mut reader = BufReader::new(file);
        let mut chunk = Chunk {
            next_offset: offset,
            ..Chunk::default()
        };
        let mut line = String::new();
        let mut read = 0u64;
        loop {
            if chunk.rows.len() >= max_rows.max(1) || (read > 0 && read >= max_bytes) {
                break;
            }
            line.clear();
            let n = reader.read_line(&mut line).map_err(|e| self.io(e))? as u64;
            if n == 0 {
                chunk.at_end = true;
                break;
            }
            read += n;
            chunk.next_offset += n;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<LogRow>(&line) {
                Ok(row) => chunk.rows.push(row),
                Err(err) => {
                    tracing::error!(segment = %path.display(), %err, "skipping an unreadable journal line");
                    chunk.skipped += 1;
                }
            }
        }
        if !chunk.at_end {
            // Nothing after the last line read: the segment is done.
            let mut probe = [0u8; 1];
            chunk.at_end =
                std::io::Read::read(&mut reader, &mut probe).map_err(|e| self.io(e))? == 0;
        }
        Ok(chunk)
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

/// Default bytes past which a segment is closed: replay reads in chunks, so
/// this bounds the files, not memory.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;

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

    /// Every row of a closed segment, and the lines skipped.
    fn whole(j: &Journal, path: &Path) -> (usize, u64) {
        let chunk = j.read_chunk(path, 0, usize::MAX, u64::MAX).unwrap();
        assert!(chunk.at_end);
        (chunk.rows.len(), chunk.skipped)
    }

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
        assert_eq!(whole(&j, &all[0]).0, 2);
        // Reopening finds what is there.
        let mut again = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(!again.is_empty());
        for path in again.segments().unwrap() {
            again.remove(&path).unwrap();
        }
        assert!(again.is_empty());
    }

    #[test]
    fn segments_are_bounded_and_read_in_chunks_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20)
            .unwrap()
            .with_segment_bytes(600);
        for n in 0..10 {
            j.append(&[row(n), row(n + 100)]).unwrap();
        }
        let all = j.segments().unwrap();
        assert!(all.len() >= 3, "a segment closes past its size: {all:?}");
        for path in &all {
            let len = fs::metadata(path).unwrap().len();
            assert!(len < 600 + 700, "segment of {len} bytes");
        }
        // Read the first segment two rows at a time, from offsets.
        let (mut offset, mut rows, mut reads) = (0, 0, 0);
        loop {
            let chunk = j.read_chunk(&all[0], offset, 2, u64::MAX).unwrap();
            assert!(chunk.rows.len() <= 2);
            rows += chunk.rows.len();
            reads += 1;
            offset = chunk.next_offset;
            if chunk.at_end {
                break;
            }
        }
        assert_eq!(rows, whole(&j, &all[0]).0);
        assert!(reads >= 2);
        assert_eq!(offset, fs::metadata(&all[0]).unwrap().len());
        // The open segment is closed when it is the only one to replay.
        let mut k = Journal::open(dir.path().join("k"), 1 << 20).unwrap();
        k.append(&[row(1)]).unwrap();
        let only = k.oldest_segment().unwrap().unwrap();
        k.append(&[row(2)]).unwrap();
        assert_eq!(k.read_chunk(&only, 0, 10, u64::MAX).unwrap().rows.len(), 1);
        assert_eq!(k.segments().unwrap().len(), 2);
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
        assert_eq!(whole(&j, &path), (1, 1));
    }
}
