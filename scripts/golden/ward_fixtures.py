#!/usr/bin/env python3
"""Golden fixtures for uno's Ward clustering (crates/uno-core/src/cluster).

Writes crates/uno-core/tests/fixtures/ward_golden.json, which
crates/uno-core/tests/ward_golden.rs checks our Ward clustering against:
scikit-learn's labels for several distance thresholds, and its merge heights.

Run from the repository root:

    python3 -m venv /tmp/ward-venv
    /tmp/ward-venv/bin/pip install numpy scikit-learn
    /tmp/ward-venv/bin/python scripts/golden/ward_fixtures.py

The output is deterministic for given numpy/scikit-learn/scipy versions
(recorded in the file). The clustering being tested is

    AgglomerativeClustering(n_clusters=None, distance_threshold=t,
                            linkage="ward", metric="euclidean",
                            compute_distances=True)

i.e. merges of height < t are applied and there are #{distances_ >= t} + 1
clusters.

Points are quantised to multiples of 2**-scale_log2 and stored as integers,
so each value is exactly representable in float32 (what uno clusters) and in
float64 (what scikit-learn computes with): both sides see identical inputs,
and the file stays small. Value = q * 2**-scale_log2.
"""

import json
import os
import sys

import numpy as np
import scipy
import sklearn
from sklearn.cluster import AgglomerativeClustering

THRESHOLDS = [0.5, 1.0, 2.0, 4.0, 8.0]
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "uno-core", "tests", "fixtures", "ward_golden.json",
)


def quantise(x, scale_log2):
    """Integer grid values q with x ~= q * 2**-scale_log2 (exact in float32)."""
    q = np.round(np.asarray(x, dtype=np.float64) * 2.0**scale_log2).astype(np.int64)
    assert np.abs(q).max() < 2**24, "must stay exact in float32"
    return q


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def topics(rng, n, dim, n_topics, noise):
    """Topic-like unit vectors: a shared direction plus a topic direction plus
    isotropic noise, normalised (like sentence embeddings of task families)."""
    common = rng.standard_normal(dim)
    centres = unit_rows(0.6 * common / np.linalg.norm(common) + unit_rows(rng.standard_normal((n_topics, dim))))
    sizes = rng.dirichlet(np.full(n_topics, 2.0)) * n
    assign = np.repeat(np.arange(n_topics), np.maximum(1, np.round(sizes).astype(int)))[:n]
    assign = np.concatenate([assign, rng.integers(0, n_topics, n - len(assign))])
    rng.shuffle(assign)
    x = centres[assign] + noise * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return unit_rows(x)


def datasets():
    rng = np.random.default_rng(20240611)
    out = []

    out.append(("pair", 0, np.array([[0, 0, 0], [3, 4, 0]])))
    out.append(("line3", 0, np.array([[0], [1], [10]])))

    # Integer grid with duplicates: many exact ties, and singleton merge
    # heights of exactly 1 and 2 (= thresholds), to pin down ">=" vs ">".
    grid = np.array([[i, j] for i in range(5) for j in range(4)])
    grid = np.concatenate([grid, grid[[0, 0, 7, 13]], [[10, 10], [10, 12], [14, 10]]])
    out.append(("grid_ties", 0, grid))

    # Gaussian blobs in 8-d, not normalised: a wide spread of heights.
    centres = rng.uniform(-6, 6, (6, 8))
    lab = rng.integers(0, 6, 2000)
    blobs = centres[lab] + 0.6 * rng.standard_normal((2000, 8))
    out.append(("blobs8", 10, quantise(blobs, 10)))

    # Heavy exact duplicates: 600 draws from 150 distinct points.
    pool = quantise(rng.standard_normal((150, 8)), 8)
    out.append(("dups8", 8, pool[rng.integers(0, 150, 600)]))

    # 384-d unit vectors from topics.
    out.append(("topics384", 12, quantise(topics(rng, 500, 384, 12, 1.0), 12)))

    # The method's combined vectors: normalise(normalise(q) ++ normalise(r)),
    # 192-d halves (384-d in all), rules correlated with the query's topic;
    # some logs repeated verbatim.
    q = topics(rng, 640, 192, 10, 0.9)
    r = topics(rng, 640, 192, 10, 1.3)
    combined = unit_rows(np.concatenate([q, r], axis=1))
    combined = np.concatenate([combined, combined[rng.integers(0, 640, 60)]])
    out.append(("combined384", 12, quantise(combined, 12)))
    return out


def main():
    result = {
        "generator": "scripts/golden/ward_fixtures.py",
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "sklearn": sklearn.__version__},
        "thresholds": THRESHOLDS,
        "datasets": [],
    }
    for name, scale_log2, q in datasets():
        x = q.astype(np.float64) * 2.0**-scale_log2
        assert np.array_equal(x.astype(np.float32).astype(np.float64), x)
        cuts = []
        heights = None
        for t in THRESHOLDS:
            m = AgglomerativeClustering(
                n_clusters=None, distance_threshold=t, linkage="ward", metric="euclidean", compute_distances=True
            ).fit(x)
            heights = m.distances_
            cuts.append({"threshold": t, "n_clusters": int(m.n_clusters_), "labels": m.labels_.tolist()})
        result["datasets"].append({
            "name": name,
            "n": int(x.shape[0]),
            "dim": int(x.shape[1]),
            "scale_log2": scale_log2,
            "points": q.reshape(-1).tolist(),
            "heights": [float(h) for h in heights],
            "cuts": cuts,
        })
        print(f"{name}: n={x.shape[0]} dim={x.shape[1]} clusters={[c['n_clusters'] for c in cuts]}", file=sys.stderr)
    with open(OUT, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
