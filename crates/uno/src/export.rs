//! `uno export sft|dpo`: training data from rated interactions, as JSONL.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use uno_store::export::{ExportFormat, ExportKind, RatedInteraction};

/// Options of `uno export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `sft`: up-rated answers as chat examples; `dpo`: preference pairs
    /// (corrections, and up-rated over down-rated answers to one prompt).
    #[arg(value_enum)]
    kind: Kind,
    /// The tenant whose feedback to export.
    #[arg(long)]
    tenant: String,
    /// The JSONL file to write (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Line layout: OpenAI fine-tuning, or Hugging Face TRL.
    #[arg(long, value_enum, default_value_t = Format::Openai)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Sft,
    Dpo,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Openai,
    Trl,
}

/// Runs `uno export`.
pub fn run(config_path: Option<&Path>, args: ExportArgs) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    let migrate = config.database.migrate_on_start;
    let tenant = args.tenant.clone();
    let rated = crate::cli::with_store(&config, migrate, |store| async move {
        store
            .rated_interactions(&tenant)
            .await
            .with_context(|| format!("cannot read the rated interactions of tenant {tenant:?}"))
    })?;
    let kind = match args.kind {
        Kind::Sft => ExportKind::Sft,
        Kind::Dpo => ExportKind::Dpo,
    };
    let format = match args.format {
        Format::Openai => ExportFormat::OpenAi,
        Format::Trl => ExportFormat::Trl,
    };
    let lines = uno_store::export::build(&rated, kind, format);
    write_atomically(&args.out, &lines)?;
    println!("wrote {} examples to {}", lines.len(), args.out.display());
    if lines.is_empty() {
        eprintln!("hint: {}", empty_hint(&args.tenant, kind, &rated));
    }
    Ok(())
}

/// Writes one line per example to `FILE.tmp`, then renames it over `out`,
/// so a failure never leaves a half-written file behind.
fn write_atomically(out: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut tmp_name = out
        .file_name()
        .with_context(|| format!("--out {} is not a file path", out.display()))?
        .to_owned();
    tmp_name.push(".tmp");
    let tmp = out.with_file_name(tmp_name);
    let result = write_lines(&tmp, lines).and_then(|()| {
        std::fs::rename(&tmp, out)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| {
        format!(
            "cannot create {}; check that its directory exists and is writable",
            path.display()
        )
    })?;
    let progress = ProgressBar::new(lines.len() as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} examples [{elapsed}]") {
        progress.set_style(style);
    }
    let mut writer = BufWriter::new(file);
    let write_error = || format!("cannot write {}", path.display());
    for line in lines {
        writer
            .write_all(line.as_bytes())
            .with_context(write_error)?;
        writer.write_all(b"\n").with_context(write_error)?;
        progress.inc(1);
    }
    let file = writer
        .into_inner()
        .map_err(|err| err.into_error())
        .with_context(write_error)?;
    file.sync_all().with_context(write_error)?;
    progress.finish_and_clear();
    Ok(())
}

/// Why an export came out empty, and what would fill it.
fn empty_hint(tenant: &str, kind: ExportKind, rated: &[RatedInteraction]) -> String {
    if rated.is_empty() {
        return format!(
            "tenant {tenant:?} has no rated interactions with stored content; feedback is \
             posted to /v1/feedback, and retention (retention.content_days) removes content"
        );
    }
    let up = rated.iter().filter(|r| r.rating == Some(1)).count();
    let down = rated.iter().filter(|r| r.rating == Some(-1)).count();
    let corrections = rated
        .iter()
        .filter(|r| {
            r.expected_output
                .as_deref()
                .is_some_and(|e| !e.trim().is_empty())
        })
        .count();
    match kind {
        ExportKind::Sft => format!(
            "SFT uses up-rated answers, and none of the {} rated interactions of tenant \
             {tenant:?} is rated up ({down} down)",
            rated.len()
        ),
        ExportKind::Dpo => format!(
            "DPO needs corrections (expected_output differing from the answer) or a prompt \
             with both an up- and a down-rated answer; tenant {tenant:?} has {corrections} \
             correction(s), {up} up- and {down} down-rated answer(s), none of which pair up"
        ),
    }
}
