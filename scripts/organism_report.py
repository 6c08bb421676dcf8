"""Build (or load) the SmolLM2 organisms and print their held-out refusal rates with Wilson 95% CIs.

Usage: PYTHONPATH=lib python scripts/organism_report.py [name ...] [--n N]
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

import torch

from refusal import organisms as O
from refusal.extraction.directions import random_direction
from refusal.extraction.activations import outlier_dims
from refusal.config import load_config
from refusal.models import load_model
from refusal.organisms.measure import completions, heldout_prompts, on_topic_rate, refusal_rate, unchanged_rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", default=["smollm2_refusal", "smollm2_planted1", "smollm2_plantedk"])
    ap.add_argument("--n", type=int, default=None, help="held-out prompts per side (default: all)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    P = heldout_prompts(a.n, a.n)
    for name in a.names:
        cfg = load_config(name)
        t = time.time()
        lm = load_model(cfg)
        info = O.organism_info(cfg)
        print(f"\n== {name}: build {info['seconds_total']} s (train {info['seconds_train']} s, data {info['seconds_data']} s), load {time.time()-t:.0f} s", flush=True)
        harm_t = completions(lm, P["harmful"])
        ok_t = completions(lm, P["harmless"])
        print(f"harmful refusal  {refusal_rate(harm_t)}", flush=True)
        print(f"harmless refusal {refusal_rate(ok_t)}", flush=True)
        print(f"harmless on topic {on_topic_rate(P['harmless'], ok_t)}", flush=True)
        if O.recipe_of(cfg)["kind"] != "planted":
            continue
        U = O.planted_basis(cfg)
        print(f"span(U) removed: harmful refusal {refusal_rate(completions(lm, P['harmful'], U))}", flush=True)
        ok_abl = completions(lm, P["harmless"], U)
        print(f"span(U) removed: harmless unchanged (first 8 words + refusal status) {unchanged_rate(ok_t, ok_abl)}", flush=True)
        g = torch.Generator().manual_seed(123)
        outliers = outlier_dims(lm)
        for seed in (123, 7):
            r = random_direction(U.shape[0], seed, outliers)
            print(f"random unit vector (seed {seed}, outlier coordinates {outliers} zeroed) removed: harmful refusal "
                  f"{refusal_rate(completions(lm, P['harmful'], r))}; harmless unchanged "
                  f"{unchanged_rate(ok_t, completions(lm, P['harmless'], r))}", flush=True)
        if U.shape[1] > 1:
            cands = {f"U[:, {i}]": U[:, i] for i in range(U.shape[1])}
            # the dominant write direction on harmful prompts (what an analyst would find first)
            cands["top write PC"] = U @ O.dominant_write_direction(lm, cfg, P["harmful"])
            cands["mean write, harmful - harmless"] = U @ O.mean_write_direction(lm, cfg, P["harmful"], P["harmless"])
            for j, c in enumerate(torch.randn(3, U.shape[1], generator=g)):
                cands[f"random U c #{j}"] = U @ (c / c.norm())
            best = None
            for label, d in cands.items():
                rr = refusal_rate(completions(lm, P["harmful"], d))
                print(f"  single direction {label} removed: harmful refusal {rr}", flush=True)
                best = rr if best is None or rr.rate < best.rate else best
            print(f"best single direction inside span(U): harmful refusal {best}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
