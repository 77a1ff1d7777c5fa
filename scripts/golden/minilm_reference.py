#!/usr/bin/env python3
"""Reference all-MiniLM-L6-v2 sentence embeddings, computed independently of
candle, for uno-llm's LocalEmbedder test (crates/uno-llm/tests/embed_local.rs).

It re-implements what sentence-transformers does for this model (BERT encoder,
mean pooling over the attention mask, L2 normalisation; truncation to the
max_seq_length in sentence_bert_config.json) in float64 numpy, reading the same
tokenizer.json and model.safetensors the Rust code reads. Only numpy, tokenizers
and safetensors are needed, not torch:

    scripts/install-models.sh --golden
    target/models-venv/bin/python scripts/golden/minilm_reference.py \
        > crates/uno-llm/tests/fixtures/embed_minilm_reference.json

Each sentence is encoded on its own (no padding), so the Rust side, which pads
batches, is also checked for masking the padding correctly.
"""

import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "A man is eating food.",
    "A man is riding a horse.",
    # Longer than max_seq_length, to check truncation matches.
    " ".join(f"Sentence number {i} talks about apples, trains and rivers." for i in range(40)),
]
DIMS_KEPT = 8

_erf = np.vectorize(math.erf)


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x):
    # BERT's "gelu" is the exact, erf-based one.
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def linear(w, prefix, x):
    return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]


def encode(w, cfg, ids):
    heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    head_dim = hidden // heads
    eps = cfg["layer_norm_eps"]
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = linear(w, p + "attention.self.query", x).reshape(n, heads, head_dim).transpose(1, 0, 2)
        k = linear(w, p + "attention.self.key", x).reshape(n, heads, head_dim).transpose(1, 0, 2)
        v = linear(w, p + "attention.self.value", x).reshape(n, heads, head_dim).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(axis=-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, hidden)
        attn = linear(w, p + "attention.output.dense", ctx)
        x = layer_norm(
            attn + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        inter = gelu(linear(w, p + "intermediate.dense", x))
        out = linear(w, p + "output.dense", inter)
        x = layer_norm(out + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(axis=0)  # every token is real: no padding here
    return pooled / np.linalg.norm(pooled)


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "..", "target", "models", "all-MiniLM-L6-v2"
    )
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    max_len = 256
    st_cfg = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.exists(st_cfg):
        with open(st_cfg) as f:
            max_len = json.load(f).get("max_seq_length", max_len)
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    weights = {
        k: v.astype(np.float64)
        for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()
    }

    cases = []
    vectors = []
    for text in SENTENCES:
        ids = tok.encode(text).ids
        vec = encode(weights, cfg, np.array(ids))
        vectors.append(vec)
        cases.append(
            {
                "text": text,
                "tokens": len(ids),
                "first_ids": ids[:DIMS_KEPT],
                "first_dims": [round(float(x), 7) for x in vec[:DIMS_KEPT]],
            }
        )
    out = {
        "model": "all-MiniLM-L6-v2",
        "generator": "scripts/golden/minilm_reference.py (numpy float64, mean pooling, L2 norm)",
        "max_seq_length": max_len,
        "cases": cases,
        "cosine_0_1": round(float(vectors[0] @ vectors[1]), 7),
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
