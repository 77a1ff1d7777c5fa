//! The layer every `/v1` request passes first: it fixes the interaction id,
//! authenticates, opens the request's tracing span, and puts the id on the
//! response, whatever the route answers (errors included).

use std::time::{Instant, SystemTime};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument;
use uno_core::{ApiError, InteractionId};

use crate::app::AppState;
use crate::auth::Tenant;
use crate::reply::error_response;

/// The request header a client may use to choose the interaction id, and the
/// response header that always carries it.
pub const INTERACTION_ID_HEADER: &str = "x-uno-interaction-id";

/// What the context layer established, for the route handlers.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The interaction id (client-chosen or new).
    pub id: InteractionId,
    /// The authenticated tenant.
    pub tenant: Tenant,
    /// When uno received the request (monotonic, for latencies).
    pub received: Instant,
    /// When uno received the request (wall clock, for storage).
    pub received_at: SystemTime,
}

/// The middleware function; see the module docs.
pub async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let received = Instant::now();
    let received_at = SystemTime::now();
    let id = match request.headers().get(INTERACTION_ID_HEADER) {
        None => Ok(InteractionId::new()),
        Some(value) => value
            .to_str()
            .map_err(|_| "non-ASCII value".to_owned())
            .and_then(|v| v.parse::<InteractionId>().map_err(|e| e.to_string()))
            .map_err(|problem| ApiError::bad_request(problem).with_param(INTERACTION_ID_HEADER)),
    };
    let (id, response) = match id {
        Err(error) => (InteractionId::new(), error_response(&error)),
        Ok(id) => match state.auth().authenticate(request.headers()) {
            Err(error) => (id, error_response(&error)),
            Ok(tenant) => {
                let span = tracing::info_span!(
                    "request",
                    interaction_id = %id,
                    tenant = %tenant,
                    path = request.uri().path(),
                );
                request.extensions_mut().insert(RequestContext {
                    id,
                    tenant,
                    received,
                    received_at,
                });
                (id, next.run(request).instrument(span).await)
            }
        },
    };
    with_interaction_id(response, id)
}

fn with_interaction_id(mut response: Response, id: InteractionId) -> Response {
    let mut buf = [0u8; 36];
    if let Ok(value) = HeaderValue::from_str(id.encode(&mut buf)) {
        response.headers_mut().insert(INTERACTION_ID_HEADER, value);
    }
    response
}
