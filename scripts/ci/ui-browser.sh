#!/usr/bin/env bash
# The /ui dashboard in headless Chromium: installs Debian's chromium when it
# is missing, installs playwright-core (pinned by scripts/ui-test's
# package-lock.json; it never downloads a browser), then runs the ignored
# Rust test that seeds a SQLite database, starts `uno serve` and drives the
# page with scripts/ui-test/ui.spec.mjs. The screenshots land in
# target/ui-screenshot.png and target/ui-screenshot-rolled-back.png.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing chromium (Debian packages chromium, chromium-driver)"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y --no-install-recommends chromium chromium-driver; then
        $sudo apt-get update
        $sudo apt-get install -y --no-install-recommends chromium chromium-driver
    fi
fi
/usr/bin/chromium --version

command -v node >/dev/null || { echo "node is required for scripts/ui-test"; exit 1; }
echo "==> npm ci (scripts/ui-test)"
(cd scripts/ui-test && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)

echo "==> the dashboard in headless Chromium"
cargo test -p uno --locked --test ui_browser -- --ignored --nocapture
ls -l target/ui-screenshot.png
