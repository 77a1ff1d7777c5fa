"""End-to-end checks of a running uno server with the official `openai` SDK.

uno claims to be a drop-in OpenAI endpoint: whatever works against
api.openai.com with the SDK must work against uno. This script drives a real
uno (in front of uno-testkit's mock upstream) the way users do, with the
pinned SDK from requirements.txt, and checks what the SDK hands back.

Run by `cargo test -p uno --test openai_sdk`, which builds the virtualenv,
starts the mock and the `uno` binary, and afterwards checks on the mock's side
what uno forwarded. Run by hand:

    UNO_BASE_URL=http://127.0.0.1:8080/v1 UNO_KEY=<key> python test_openai_sdk.py

against a uno whose upstream is the mock (the expected texts are the mock's
echo replies). Every check runs even when an earlier one fails; the last line
is `N passed, M failed` and the exit status is non-zero on any failure.
"""

import asyncio
import os
import sys
import traceback
import uuid

import openai

BASE_URL = os.environ.get("UNO_BASE_URL", "")
KEY = os.environ.get("UNO_KEY", "")
MODEL = "mock-model"
WRONG_KEY = "wrong-key-0123456789"
# The Rust side looks for this field on the request the mock received.
CUSTOM_FIELD = {"x_custom_field": {"a": 1}}

CHECKS = []


def check(fn):
    """Registers a check; checks run in definition order."""
    CHECKS.append(fn)
    return fn


def client(api_key=None):
    return openai.OpenAI(
        base_url=BASE_URL, api_key=api_key or KEY, max_retries=0, timeout=30.0
    )


def expect_error(cls, call):
    """Runs `call`, which must raise `cls`; returns the exception."""
    try:
        result = call()
    except cls as err:
        return err
    except openai.APIStatusError as err:
        raise AssertionError(
            f"expected {cls.__name__}, got {type(err).__name__} "
            f"(HTTP {err.status_code}): {err.body!r}"
        ) from err
    raise AssertionError(f"expected {cls.__name__}, the call succeeded: {result!r}")


def error_message(err):
    """The `error.message` uno (or the upstream) sent; the SDK keeps the
    inner `error` object as `body`."""
    body = err.body if isinstance(err.body, dict) else {}
    return str(body.get("message", ""))


def assert_uuid(value, what):
    assert value, f"{what} is missing"
    try:
        uuid.UUID(value)
    except ValueError as err:
        raise AssertionError(f"{what} is not a UUID: {value!r}") from err


@check
def chat_completion():
    completion = client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello sdk"}]
    )
    assert isinstance(completion, openai.types.chat.ChatCompletion), type(completion)
    assert len(completion.choices) == 1, completion
    choice = completion.choices[0]
    assert choice.message.content == "echo: hello sdk", choice.message.content
    assert choice.message.role == "assistant", choice.message.role
    assert choice.finish_reason == "stop", choice.finish_reason
    assert completion.model == MODEL, completion.model
    assert completion.usage is not None, "no usage"
    assert completion.usage.total_tokens > 0, completion.usage
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    ), completion.usage
    # A field the SDK does not know (the mock adds one) still reaches it.
    extra = completion.model_extra or {}
    assert extra.get("mock_extra") == {"kept": True}, completion.model_extra


@check
def chat_completion_raw_response_has_interaction_id():
    raw = client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hello raw"}]
    )
    assert raw.status_code == 200, raw.status_code
    assert_uuid(raw.headers.get("x-uno-interaction-id"), "x-uno-interaction-id")
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello raw", completion


@check
def chat_completion_stream():
    stream = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks, "the stream had no chunks"
    text = "".join(
        choice.delta.content or ""
        for chunk in chunks
        for choice in chunk.choices
    )
    assert text == "echo: hello stream", repr(text)
    finish_reasons = [c.finish_reason for chunk in chunks for c in chunk.choices]
    assert "stop" in finish_reasons, finish_reasons
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk", chunk
    last = chunks[-1]
    assert last.usage is not None, f"the last chunk carries no usage: {last!r}"
    assert last.usage.total_tokens > 0, last.usage
    assert last.choices == [], last
    assert all(c.usage is None for c in chunks[:-1]), "usage before the last chunk"


@check
def chat_completion_stream_raw_response_has_interaction_id():
    with client().chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello raw stream"}],
        stream=True,
    ) as response:
        assert response.status_code == 200, response.status_code
        assert response.headers.get("content-type", "").startswith(
            "text/event-stream"
        ), response.headers
        assert_uuid(response.headers.get("x-uno-interaction-id"), "x-uno-interaction-id")
        text = "".join(
            choice.delta.content or ""
            for chunk in response.parse()
            for choice in chunk.choices
        )
    assert text == "echo: hello raw stream", repr(text)


@check
def async_client_chat_completion():
    async def run():
        async with openai.AsyncOpenAI(
            base_url=BASE_URL, api_key=KEY, max_retries=0, timeout=30.0
        ) as aclient:
            plain, stream = await asyncio.gather(
                aclient.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hello async"}]
                ),
                aclient.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "hello async stream"}],
                    stream=True,
                ),
            )
            text = ""
            async for chunk in stream:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
            return plain, text

    plain, text = asyncio.run(run())
    assert plain.choices[0].message.content == "echo: hello async", plain
    assert text == "echo: hello async stream", repr(text)


@check
def models_list_and_retrieve():
    c = client()
    ids = [model.id for model in c.models.list()]
    assert MODEL in ids, ids
    model = c.models.retrieve(MODEL)
    assert model.id == MODEL, model
    assert model.object == "model", model


@check
def embeddings():
    result = client().embeddings.create(model="mock-embed", input=["a", "b"])
    assert len(result.data) == 2, result
    assert [d.index for d in result.data] == [0, 1], result.data
    for d in result.data:
        assert len(d.embedding) == 8, d.embedding
        assert all(isinstance(x, float) for x in d.embedding), d.embedding
    assert result.data[0].embedding != result.data[1].embedding, "identical vectors"
    assert result.model == "mock-embed", result.model


@check
def wrong_key_is_authentication_error():
    err = expect_error(
        openai.AuthenticationError,
        lambda: client(WRONG_KEY).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        ),
    )
    assert err.status_code == 401, err.status_code
    message = error_message(err)
    assert "API key" in message, message
    assert WRONG_KEY not in message, f"the key was echoed unredacted: {message}"
    assert err.code == "invalid_api_key", err.code
    assert err.type == "authentication_error", err.type
    assert_uuid(err.response.headers.get("x-uno-interaction-id"), "x-uno-interaction-id on 401")


@check
def wrong_key_on_models_is_authentication_error():
    err = expect_error(
        openai.AuthenticationError, lambda: client(WRONG_KEY).models.list()
    )
    assert err.status_code == 401, err.status_code


@check
def empty_messages_is_bad_request():
    err = expect_error(
        openai.BadRequestError,
        lambda: client().chat.completions.create(model=MODEL, messages=[]),
    )
    assert err.status_code == 400, err.status_code
    assert err.param == "messages", (err.param, error_message(err))
    assert "messages" in error_message(err), error_message(err)


@check
def invalid_extra_body_is_bad_request():
    err = expect_error(
        openai.BadRequestError,
        lambda: client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"messages": [{"role": "user", "content": 5}]},
        ),
    )
    assert err.status_code == 400, err.status_code
    assert err.param == "messages[0].content", (err.param, error_message(err))


@check
def unknown_model_is_not_found():
    err = expect_error(
        openai.NotFoundError, lambda: client().models.retrieve("no-such-model")
    )
    assert err.status_code == 404, err.status_code
    # Passed on from the mock upstream unchanged.
    assert err.code == "model_not_found", (err.code, err.body)
    assert "no-such-model" in error_message(err), error_message(err)


@check
def unknown_request_field_is_accepted():
    completion = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello custom field"}],
        extra_body=CUSTOM_FIELD,
    )
    assert completion.choices[0].message.content == "echo: hello custom field", completion


def main():
    if not BASE_URL or not KEY:
        print("set UNO_BASE_URL (e.g. http://127.0.0.1:8080/v1) and UNO_KEY", file=sys.stderr)
        return 2
    print(f"openai {openai.__version__}, Python {sys.version.split()[0]}, uno at {BASE_URL}")
    passed, failed = 0, []
    for fn in CHECKS:
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - every failure is reported
            failed.append(fn.__name__)
            print(f"FAIL {fn.__name__}: {type(err).__name__}: {err}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {fn.__name__}")
    if failed:
        print("failed checks: " + ", ".join(failed))
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
