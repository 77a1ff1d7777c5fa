//! `uno import FILE.jsonl`: existing chat logs (OpenAI chat lines or
//! MemoryBench rows) as interactions and feedback, so a team can learn from
//! its history.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use uno_store::import::{ImportOptions, ImportedLine, parse_line};
use uno_store::rows::LogRow;

/// Bad lines reported one by one; beyond this only their count is given.
const MAX_REPORTED: usize = 100;

/// Options of `uno import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The JSONL file. Each line is OpenAI chat
    /// (`{"messages": [...], "rating"?, "comment"?, "expected_output"?, "user"?,
    /// "created_at"?, "model"?, "id"?}`) or a MemoryBench row (`{"dialog": ...}`);
    /// user turns after the first answer become implicit feedback.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The tenant the interactions belong to.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The model recorded for lines that name none.
    #[arg(long, default_value = "imported")]
    model: String,
    /// Read and check the file, and report what would be imported, without
    /// writing anything.
    #[arg(long)]
    dry_run: bool,
}

/// The outcome of reading the file.
struct Parsed {
    /// Good lines, with their line numbers, first occurrence only.
    lines: Vec<(usize, ImportedLine)>,
    /// Lines that could not be read.
    bad: usize,
    /// Lines repeating an earlier line's interaction.
    repeated: usize,
    /// Non-blank lines.
    total: usize,
}

/// Bad-line warnings, capped at [`MAX_REPORTED`].
struct Warnings {
    reported: usize,
}

impl Warnings {
    fn line(&mut self, progress: &ProgressBar, number: usize, reason: &str) {
        self.reported += 1;
        if self.reported <= MAX_REPORTED {
            progress.suspend(|| eprintln!("warning: line {number}: {reason}; skipped"));
        }
    }

    fn finish(&self) {
        if self.reported > MAX_REPORTED {
            eprintln!(
                "warning: … and {} more bad lines",
                self.reported - MAX_REPORTED
            );
        }
    }
}

/// Runs `uno import`.
pub fn run(config_path: Option<&Path>, args: ImportArgs) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    let tenant = args.tenant.trim().to_owned();
    if tenant.is_empty() {
        anyhow::bail!("--tenant must not be empty");
    }
    let file = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {file}"))?;
    let options = ImportOptions {
        tenant: tenant.clone(),
        model: args.model.clone(),
        now: chrono::Utc::now(),
    };
    let mut warnings = Warnings { reported: 0 };
    let parsed = parse_file(&bytes, &options, &mut warnings);
    if parsed.total == 0 {
        warnings.finish();
        println!("{file} has no lines; nothing to import");
        return Ok(());
    }
    if parsed.lines.is_empty() {
        warnings.finish();
        anyhow::bail!(
            "none of the {} lines of {file} could be imported (see the warnings above); \
             each line must be an OpenAI chat object {{\"messages\": [...]}} or a MemoryBench \
             row {{\"dialog\": [...]}}",
            parsed.total
        );
    }

    let migrate = config.database.migrate_on_start;
    let dry_run = args.dry_run;
    let summary = crate::cli::with_store(&config, migrate, |store| async move {
        let ids: Vec<_> = parsed.lines.iter().map(|(_, line)| line.id()).collect();
        let existing = store
            .existing_interactions(&ids)
            .await
            .context("cannot check which interactions are already stored")?;
        let mut summary = Summary {
            bad: parsed.bad,
            already: parsed.repeated,
            ..Summary::default()
        };
        let mut rows: Vec<LogRow> = Vec::new();
        for (number, line) in parsed.lines {
            match existing.get(&line.id()) {
                Some(owner) if *owner == tenant => summary.already += 1,
                Some(_) => {
                    summary.bad += 1;
                    warnings.line(
                        &ProgressBar::hidden(),
                        number,
                        &format!(
                            "interaction id {} already belongs to another tenant",
                            line.id()
                        ),
                    );
                }
                None => {
                    summary.interactions += 1;
                    summary.feedback += line.feedback.len();
                    rows.extend(line.into_rows());
                }
            }
        }
        warnings.finish();
        if summary.interactions == 0 && summary.already == 0 {
            anyhow::bail!("none of the lines of {file} could be imported (see the warnings above)");
        }
        if !dry_run && !rows.is_empty() {
            store.write_rows(&rows).await.with_context(|| {
                format!("cannot write the imported rows; nothing from {file} was imported")
            })?;
            let details = serde_json::json!({
                "file": file,
                "interactions": summary.interactions,
                "feedback": summary.feedback,
                "bad_lines": summary.bad,
                "already_imported": summary.already,
            });
            if let Err(err) = store
                .audit("cli", "import", Some(&tenant), None, details)
                .await
            {
                eprintln!("warning: imported, but the audit log entry failed: {err}");
            }
        }
        Ok(summary)
    })?;
    println!(
        "{} {} interactions with {} feedback rows from {} ({} bad lines skipped, {} already imported)",
        if args.dry_run {
            "dry run: would import"
        } else {
            "imported"
        },
        summary.interactions,
        summary.feedback,
        args.file.display(),
        summary.bad,
        summary.already,
    );
    Ok(())
}

/// Counts for the closing line.
#[derive(Debug, Default)]
struct Summary {
    interactions: usize,
    feedback: usize,
    bad: usize,
    already: usize,
}

/// Reads every line, warning about bad ones, with a progress bar on a
/// terminal.
fn parse_file(bytes: &[u8], options: &ImportOptions, warnings: &mut Warnings) -> Parsed {
    let raw_lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let progress = ProgressBar::new(raw_lines.len() as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} lines [{elapsed}]") {
        progress.set_style(style);
    }
    let mut parsed = Parsed {
        lines: Vec::new(),
        bad: 0,
        repeated: 0,
        total: 0,
    };
    let mut first_seen = HashMap::new();
    for (index, raw) in raw_lines.into_iter().enumerate() {
        progress.inc(1);
        let number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        parsed.total += 1;
        let result = std::str::from_utf8(raw)
            .map_err(|err| format!("not UTF-8 text ({err})"))
            .and_then(|text| parse_line(text, options).map_err(|err| err.0));
        match result {
            Ok(line) => match first_seen.get(&line.id()) {
                Some(first) => {
                    parsed.repeated += 1;
                    warnings.line(
                        &progress,
                        number,
                        &format!("the same interaction as line {first}"),
                    );
                }
                None => {
                    first_seen.insert(line.id(), number);
                    parsed.lines.push((number, line));
                }
            },
            Err(reason) => {
                parsed.bad += 1;
                warnings.line(&progress, number, &reason);
            }
        }
    }
    progress.finish_and_clear();
    parsed
}
