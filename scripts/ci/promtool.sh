#!/usr/bin/env bash
# Checks uno's /metrics page with Prometheus's own linter.
#
# The metrics test (crates/uno-server/tests/metrics.rs) scrapes /metrics
# after real traffic, feedback and a published snapshot, on both backends,
# and saves each page under target/. This runs it, then hands every page to
# `promtool check metrics` (Debian package `prometheus`, installed if
# missing). Any lint finding fails the run.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found; installing Debian's prometheus package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || {
        apt-get update -qq && apt-get install -y --no-install-recommends prometheus
    }
fi
promtool --version | head -1

target="${CARGO_TARGET_DIR:-target}"
rm -f "$target"/metrics-sample-*.txt
cargo test -p uno-server --locked --test metrics

shopt -s nullglob
pages=("$target"/metrics-sample-*.txt)
if [ "${#pages[@]}" -eq 0 ]; then
    echo "the metrics test saved no page under $target/; nothing to check" >&2
    exit 1
fi
for page in "${pages[@]}"; do
    echo "promtool check metrics < $page ($(grep -c '^uno_' "$page") samples)"
    promtool check metrics < "$page"
done
echo "promtool: every page passes"
