#!/usr/bin/env bash
# Checks the admin API against its own OpenAPI document with schemathesis.
#
# Installs schemathesis (pinned) from PyPI into target/schemathesis-venv if
# it is not there yet, then runs the ignored test
# crates/uno/tests/admin_schemathesis.rs: it seeds a SQLite database
# (uno_testkit::seed::seed_demo), starts the real `uno serve` with an admin
# key, and runs `st run …/admin/openapi.json` with every response check
# (no server error; status code, content type, headers and body as
# documented), a fixed seed and a bounded number of examples. Any finding
# fails the run; schemathesis's report is printed either way.
set -euo pipefail
cd "$(dirname "$0")/../.."

version="4.32.5"
target="${CARGO_TARGET_DIR:-target}"
venv="$target/schemathesis-venv"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
    echo "installing schemathesis $version into $venv"
    # --clear: a venv moved from another path (a copied target/) has stale
    # interpreter paths baked into its scripts.
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
"$venv/bin/st" --version

SCHEMATHESIS_BIN="$(cd "$venv/bin" && pwd)/st" \
    cargo test -p uno --locked --test admin_schemathesis -- --ignored --nocapture
