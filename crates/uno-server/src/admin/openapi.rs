//! The admin API's OpenAPI 3.0 document, written by hand beside the
//! handlers (no code generator: the document is the contract people and
//! schemathesis check the API against, and it reads best as written).

use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /admin/openapi.json`: public, so tools can discover the API before
/// they hold the key.
pub async fn document() -> Response {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_json_and_openapi_3() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json parses");
        assert_eq!(doc["openapi"], "3.0.3");
        assert!(doc["paths"].as_object().is_some_and(|p| p.len() > 10));
    }
}
