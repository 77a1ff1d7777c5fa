#!/usr/bin/env bash
# Serves SmolLM2-135M-Instruct over an OpenAI-compatible HTTP API with
# llama-cpp-python's server, on the CPU, in the foreground:
#
#   base URL     http://127.0.0.1:PORT/v1   (PORT defaults to 8091)
#   model name   smollm2                     (the only model; /v1/models)
#   endpoints    /v1/chat/completions, /v1/completions, /v1/models
#                (/v1/embeddings answers 500 unless started with
#                `--embedding True`)
#
# llama-cpp-python 0.3.36 quirks: response_format {"type":"json_schema",...}
# is rejected (HTTP 500, validation error); {"type":"json_object","schema":
# {...}} is the grammar-constrained form. logprobs need both
# "logprobs": true and "top_logprobs": N. Request errors other than
# context_length_exceeded (HTTP 400) come back as HTTP 500.
#
# Usage: scripts/serve-smollm2.sh [PORT] [EXTRA_SERVER_FLAGS...]
#   e.g. scripts/serve-smollm2.sh 8091 --verbose False
#   (see `target/llama-venv/bin/python -m llama_cpp.server --help`)
#
# Runs scripts/install-llama-server.sh first (a no-op once installed; the
# first run compiles llama.cpp, which takes several minutes). The context
# window is 4096 tokens; the chat template is the one the GGUF carries.
# Stop it with Ctrl-C (or kill its pid: it execs the server).
#
# Threads: 2 by default (UNO_LLAMA_THREADS). When other work (cargo) keeps
# the cores busy, 2 OpenMP threads slow down badly (measured on 2 cores
# beside a cargo build: 6-35 s per 100 tokens with 2 threads, 2-3 s with 1),
# so use UNO_LLAMA_THREADS=1 there.
#
# Environment: UNO_LLAMA_THREADS (default 2); UNO_LLAMA_VENV and
# UNO_MODELS_DIR, as for the install scripts.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${UNO_MODELS_DIR:-$root/target/models}"
threads="${UNO_LLAMA_THREADS:-2}"

port=8091
case "${1:-}" in
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    [0-9]*)
        port="$1"
        shift
        ;;
esac

# Progress goes to stderr; stdout is just the venv python path.
vpy="$("$root/scripts/install-llama-server.sh")"

exec "$vpy" -m llama_cpp.server \
    --model "$models/smollm2-135m-instruct.gguf" \
    --model_alias smollm2 \
    --host 127.0.0.1 \
    --port "$port" \
    --n_ctx 4096 \
    --n_threads "$threads" \
    --n_threads_batch "$threads" \
    "$@"
