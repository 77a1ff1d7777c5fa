//! Property tests of the code that turns client bytes into what goes
//! upstream (issue 22): the model id of a `/v1/models/{id}` path into an
//! upstream URI, and a chat body into the body uno forwards. Bounded (a few
//! thousand cases each, seeded by proptest), so they run in CI; cargo-fuzz
//! would need a nightly toolchain CI does not have.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use serde_json::{Value, json};
use uno_core::config::UpstreamConfig;
use uno_core::wire::ChatRequestView;
use uno_llm::Upstream;
use uno_server::experience::rewrite::with_block;
use uno_server::routes::models::model_id;

/// Pieces attackers and careless clients put in paths: dot segments in
/// every spelling, separators, escapes of escapes, controls, overlong and
/// real UTF-8, and ordinary id characters.
fn path_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        ".",
        "..",
        "/",
        "\\",
        "%2F",
        "%2f",
        "%2e",
        "%2E",
        "%5C",
        "%5c",
        "%25",
        "%252e",
        "%00",
        "%0a",
        "%0D",
        "%7F",
        "%C0%AE",
        "%E0%80%AE",
        "%C3%A9",
        "%",
        "%G1",
        "é",
        "\u{0}",
        "\n",
        " ",
        "?",
        "#",
        "~",
        ":",
        "@",
        "-",
        "_",
        "a",
        "Z",
        "9",
        "gpt",
        "ft",
        "org",
        "files",
    ])
}

fn upstream() -> Upstream {
    Upstream::from_config(&UpstreamConfig {
        name: "up".to_owned(),
        url: "http://upstream.example/v1".to_owned(),
        api_key: Some("sk-organisation".to_owned()),
        models: Vec::new(),
    })
    .unwrap()
}

/// No part between `/` or `\` that a server could resolve or merge.
fn has_no_dot_or_empty_part(text: &str) -> bool {
    text.split(['/', '\\'])
        .all(|part| !part.is_empty() && part != "." && part != "..")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Whatever the client writes after `/v1/models/`, the upstream is
    /// called at `{base}/models/{one segment}`, and the segment decodes to
    /// the id uno routed by; ids that could walk elsewhere are refused.
    #[test]
    fn a_model_path_reaches_only_the_models_route(
        pieces in prop::collection::vec(path_piece(), 0..10)
    ) {
        let tail = pieces.concat();
        let path = format!("/v1/models/{tail}");
        let Ok((id, segment)) = model_id(&path) else {
            return Ok(());
        };
        let uri = upstream().model_uri(&segment).unwrap();
        let upstream_path = uri.path();
        let rest = upstream_path.strip_prefix("/v1/models/").unwrap();
        prop_assert!(!rest.is_empty());
        prop_assert!(!rest.contains(['/', '\\', '?', '#']), "{rest}");
        prop_assert!(rest != "." && rest != "..", "{rest}");
        prop_assert!(uri.query().is_none());
        let decoded = percent_decode_str(rest).decode_utf8().unwrap();
        prop_assert_eq!(&decoded, &id);
        prop_assert!(!id.chars().any(char::is_control), "{id:?}");
        prop_assert!(has_no_dot_or_empty_part(&id), "{id:?}");
        let twice = percent_decode_str(&id).decode_utf8_lossy();
        prop_assert!(has_no_dot_or_empty_part(&twice), "{id:?} decodes to {twice:?}");
    }

    /// Ordinary ids (OpenAI's, fine-tuned, Hugging Face style) all pass,
    /// and reach the upstream as themselves.
    #[test]
    fn ordinary_model_ids_pass(
        org in "[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
        name in "[A-Za-z0-9][A-Za-z0-9._:-]{0,30}",
        with_org in any::<bool>(),
    ) {
        prop_assume!(![".", ".."].contains(&org.as_str()) && ![".", ".."].contains(&name.as_str()));
        let id = if with_org { format!("{org}/{name}") } else { name };
        let (parsed, segment) = model_id(&format!("/v1/models/{id}")).unwrap();
        prop_assert_eq!(&parsed, &id);
        let uri = upstream().model_uri(&segment).unwrap();
        let rest = uri.path().strip_prefix("/v1/models/").unwrap().to_owned();
        prop_assert_eq!(percent_decode_str(&rest).decode_utf8().unwrap(), id);
    }

    /// Any bytes at all: the chat parser answers or refuses, never panics.
    #[test]
    fn the_chat_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = ChatRequestView::parse(&body);
    }

    /// Valid chat bodies, then a few bytes changed: what parses is
    /// rewritten (primary's block) into a body that differs from the
    /// client's only by the block in its system message.
    #[test]
    fn a_parsed_body_is_forwarded_with_only_the_block_added(
        body in chat_body(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        block in "[ -~\\n]{1,60}",
    ) {
        let mut bytes = body.into_bytes();
        for (at, byte) in mutations {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if ChatRequestView::parse(&bytes).is_err() {
            return Ok(());
        }
        let Ok(before) = serde_json::from_slice::<Value>(&bytes) else {
            return Ok(());
        };
        let Ok(out) = with_block(&bytes, &block) else {
            return Ok(());
        };
        let after: Value = serde_json::from_slice(&out).expect("the forwarded body is not JSON");
        check_only_the_block_was_added(&before, &after, &block)?;
    }
}

/// A chat body with a varied first message, more turns, and extra fields,
/// compact or pretty.
fn chat_body() -> impl Strategy<Value = String> {
    let text = "[ -~é\\n\"\\\\]{0,30}";
    let content = prop_oneof![
        text.prop_map(Value::String),
        prop::collection::vec(text, 0..3).prop_map(|parts| {
            Value::Array(
                parts
                    .into_iter()
                    .map(|t| json!({"type": "text", "text": t}))
                    .collect(),
            )
        }),
        Just(Value::Null),
    ];
    let role = prop::sample::select(vec!["system", "developer", "user", "assistant"]);
    let message =
        (role, content).prop_map(|(role, content)| json!({"role": role, "content": content}));
    (
        prop::collection::vec(message, 1..4),
        "[a-z0-9-]{1,12}",
        any::<bool>(),
        prop::option::of(0.0f64..2.0),
        any::<bool>(),
    )
        .prop_map(|(messages, model, stream, temperature, pretty)| {
            let mut body = json!({"model": model, "messages": messages, "stream": stream});
            if let Some(t) = temperature {
                body["temperature"] = json!(t);
            }
            body["x_unknown"] = json!({"kept": [1, 2, 3]});
            if pretty {
                serde_json::to_string_pretty(&body).unwrap()
            } else {
                body.to_string()
            }
        })
}

fn check_only_the_block_was_added(
    before: &Value,
    after: &Value,
    block: &str,
) -> Result<(), TestCaseError> {
    let (b, a) = (before.as_object().unwrap(), after.as_object().unwrap());
    prop_assert_eq!(b.len(), a.len());
    for (key, value) in b {
        if key != "messages" {
            prop_assert_eq!(Some(value), a.get(key), "{} changed", key);
        }
    }
    let bm = b["messages"].as_array().unwrap();
    let am = a["messages"].as_array().unwrap();
    let first = &bm[0];
    let role = first["role"].as_str().unwrap_or_default();
    let leads = role == "system" || role == "developer";
    match (&first["content"], leads) {
        (Value::String(text), true) => {
            prop_assert_eq!(&am[0]["content"], &json!(format!("{text}\n\n{block}")));
            prop_assert_eq!(&am[0]["role"], &first["role"]);
            prop_assert_eq!(&am[1..], &bm[1..]);
        }
        (Value::Array(parts), true) => {
            let mut parts = parts.clone();
            parts.push(json!({"type": "text", "text": block}));
            prop_assert_eq!(&am[0]["content"], &Value::Array(parts));
            prop_assert_eq!(&am[1..], &bm[1..]);
        }
        _ => {
            prop_assert_eq!(&am[0], &json!({"role": "system", "content": block}));
            prop_assert_eq!(&am[1..], &bm[..]);
        }
    }
    Ok(())
}
