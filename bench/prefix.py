"""Benchmark of the shared chat-template prefix (``refusal.batching``), measured side by side in one run.

For each of the three users: first-token log-probs (``last_logprobs``, what candidate selection runs hundreds
of times), activation collection over every layer (``collect``, stage 02) and greedy generation
(``generate_ids``), the same prompts (harmful eval prompts) are run with ``share_prefix=False`` (whole
left-padded prompts) and ``share_prefix=True`` (the common prefix once, then the suffixes), under a runtime
ablation as in stage 04. Prints seconds, the ratio whole/shared, and the largest difference of the outputs.

Usage::

    python bench/prefix.py                            # qwen25_coder_05b, 32 prompts, 32 new tokens
    python bench/prefix.py --model smollm2_135m

Measured on 2 CPU cores (2026-11-29), 32 prompts of ~45 tokens, whole / shared prefix:
SmolLM2-135M last_logprobs 2.3 / 1.2 s (1.82x), collect 2.0 / 1.1 s (1.72x), generate 7.1 / 6.4 s (1.11x,
32/32 identical); Qwen2.5-Coder-0.5B 7.5 / 3.5 s (2.14x), 6.5 / 3.7 s (1.74x), 27.3 / 24.0 s (1.14x, 32/32).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from refusal.extraction.directions import random_direction
from refusal.intervention.ablation import ablate  # noqa: E402
from refusal.extraction.activations import collect, template_positions  # noqa: E402
from refusal.data import default_harmful_eval  # noqa: E402
from refusal.generation import generate_ids  # noqa: E402
from refusal.models import load_model  # noqa: E402
from refusal.intervention.scoring import last_logprobs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen25_coder_05b")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    prompts = default_harmful_eval()[: args.n]
    seqs = lm.tokenizer(lm.chat(prompts), add_special_tokens=False)["input_ids"]
    positions = template_positions(lm).positions
    v = random_direction(lm.d_model, 0, [])
    jobs = {
        "last_logprobs": lambda share: last_logprobs(lm, prompts, share_prefix=share),
        "collect (all layers)": lambda share: collect(lm.model, lm, prompts, positions, keep=torch.float32,
                                                      progress=False, share_prefix=share).acts,
        f"generate ({args.new_tokens} tokens)": lambda share: generate_ids(lm, prompts, args.new_tokens, progress=False,
                                                                           share_prefix=share),
    }
    last_logprobs(lm, prompts[:2])  # warm-up
    print(f"{args.model}: {args.n} prompts, mean {sum(map(len, seqs)) / len(seqs):.1f} tokens, "
          f"{args.threads} threads, under ablation of a random unit direction")
    with ablate(lm.model, v):
        for name, job in jobs.items():
            out, t = {}, {}
            for share in (False, True):
                t0 = time.perf_counter()
                out[share] = job(share)
                t[share] = time.perf_counter() - t0
            if isinstance(out[True], list):
                diff = f"identical tokens: {sum(a == b for a, b in zip(out[False], out[True]))}/{len(prompts)}"
            else:
                diff = f"max |diff| {(out[False] - out[True]).abs().max().item():.1e}"
            print(f"  {name:22s} whole {t[False]:7.1f} s   shared prefix {t[True]:7.1f} s   "
                  f"{t[False] / t[True]:.2f}x   {diff}", flush=True)


if __name__ == "__main__":
    main()
