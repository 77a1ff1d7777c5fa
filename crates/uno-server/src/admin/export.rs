//! Training data export over HTTP: the same SFT and DPO lines as
//! `uno export`, streamed as NDJSON.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use serde::Deserialize;
use uno_store::export::{ExportFormat, ExportKind};

use super::extract::{Path, Query};
use super::{known_tenant, storage_error, store};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// `sft` or `dpo`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sft,
    Dpo,
}

/// `openai` or `trl`.
#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Openai,
    Trl,
}

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    format: Option<Format>,
}

/// `GET …/export/{sft|dpo}?format=openai|trl`.
pub async fn export(
    State(state): State<AppState>,
    Path((tenant, kind)): Path<(String, Kind)>,
    Query(params): Query<Params>,
) -> Result<Response, ErrorReply> {
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let rated = store
        .rated_interactions(&tenant)
        .await
        .map_err(storage_error)?;
    let kind_name = match kind {
        Kind::Sft => "sft",
        Kind::Dpo => "dpo",
    };
    let kind = match kind {
        Kind::Sft => ExportKind::Sft,
        Kind::Dpo => ExportKind::Dpo,
    };
    let format = match params.format.unwrap_or_default() {
        Format::Openai => ExportFormat::OpenAi,
        Format::Trl => ExportFormat::Trl,
    };
    let lines = uno_store::export::build(&rated, kind, format);
    // One chunk per line: the client sees lines as they are sent, and the
    // body is never assembled as one string.
    let chunks = lines.into_iter().map(|mut line| {
        line.push('\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    Ok((
        [
            (CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"uno-{kind_name}.jsonl\""),
            ),
        ],
        body,
    )
        .into_response())
}
