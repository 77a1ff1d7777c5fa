//! Requests tests send to a running uno, in-process or the real binary:
//! chats under a chosen interaction id, feedback, and scrapes with an
//! optional bearer token. Each takes the server's base URL
//! (`http://host:port`) and panics when the request cannot be sent.

use serde_json::json;

/// The interaction id header uno reads and answers with.
pub const INTERACTION_ID: &str = "x-uno-interaction-id";

/// A GET of `url`, with `Authorization: Bearer <token>` when given.
///
/// # Panics
///
/// When the request cannot be sent.
pub async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let request = reqwest::Client::new().get(url);
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
    .send()
    .await
    .expect("the GET is sent")
}

/// A chat completion (one user message, `content`, to `mock-model`) with
/// `key`, under interaction id `id` when given.
///
/// # Panics
///
/// When the request cannot be sent.
pub async fn chat(
    client: &reqwest::Client,
    base_url: &str,
    key: &str,
    id: Option<&str>,
    content: &str,
) -> reqwest::Response {
    let mut request = client
        .post(format!("{base_url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": content}]}));
    if let Some(id) = id {
        request = request.header(INTERACTION_ID, id);
    }
    request.send().await.expect("the chat request is sent")
}

/// The interaction id a response names.
///
/// # Panics
///
/// When the response has no readable interaction id header.
pub fn interaction_id(response: &reqwest::Response) -> String {
    response.headers()[INTERACTION_ID]
        .to_str()
        .expect("a readable interaction id")
        .to_owned()
}

/// A thumbs-up on interaction `id` with `key`; the response's status.
///
/// # Panics
///
/// When the request cannot be sent.
pub async fn feedback(client: &reqwest::Client, base_url: &str, key: &str, id: &str) -> u16 {
    client
        .post(format!("{base_url}/v1/feedback"))
        .bearer_auth(key)
        .json(&json!({"interaction_id": id, "rating": "up"}))
        .send()
        .await
        .expect("the feedback is sent")
        .status()
        .as_u16()
}
