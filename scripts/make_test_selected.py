"""Write a stand-in runs/<model>/04_ablate/selected.safetensors (until the 04_ablate stage exists).

A quick difference of means of last-token residuals (input of layer ``--layer``) between harmful
and safe prompts of the default pairs' train split; meta marks it as a stand-in. For testing
notebooks 05/06 only: the real selection is 04_ablate's job.
Usage: REFUSAL_RUNS=/tmp/x python scripts/make_test_selected.py smollm2_135m --layer 12 --n 48
"""

from __future__ import annotations

import argparse

import torch

from refusal import data as D
from refusal.generation import tokenize_chat
from refusal.models import load_model
from refusal.intervention.orthogonalize import write_selected


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--n", type=int, default=48)
    a = ap.parse_args()
    lm = load_model(a.model)
    pairs = D.default_pair_splits(seed=0).take(D.default_pairs(), "train")[: a.n]
    means = []
    for side in (0, 1):
        enc = tokenize_chat(lm, [p[side] for p in pairs])
        with torch.no_grad():
            hs = lm.model(**enc, output_hidden_states=True).hidden_states[a.layer]  # [batch, pos, d_model]
        means.append(hs[:, -1].double().mean(0))
    diff = (means[0] - means[1]).float()
    p = write_selected(a.model, diff, {"layer": a.layer, "position": -1, "alpha": 1.0,
                                       "source": f"stand-in: scripts/make_test_selected.py diff of means, {a.n} train pairs"})
    print(f"wrote {p} (|diff| = {diff.norm():.3f})")


if __name__ == "__main__":
    main()
