"""Greedy generation time at several batch sizes, measured side by side in one run (the entry's ``gen_batch_size``).

The same ``--n`` harmful eval prompts, chat-formatted, greedy, ``--new-tokens`` new tokens, through
``refusal.generation.generate`` (KV cache, length-sorted left-padded batches, shared chat prefix, early stop when
every row of a batch has stopped), on one torch thread as a `make report` job runs. Prints the seconds of each batch
size and its speed-up over the first.

Usage::

    python bench/batch_size.py                                   # qwen25_coder_05b, batch 16, 32, 64
    python bench/batch_size.py --model gemma3_270m --sizes 16,32,64
    python bench/batch_size.py --model smollm2_135m --sizes 32,64,128

Measured 2026-12-01 on this project's 2-core machine (64 prompts x 32 tokens, one thread; the numbers behind the
offline entries' ``gen_batch_size: 64``): Qwen2.5-Coder-0.5B 65.4 / 44.3 / 35.5 s at 16 / 32 / 64 (1.85x);
Gemma 3 270M 37.9 / 24.7 / 18.2 s at 16 / 32 / 64 (2.1x); SmolLM2-135M 14.6 / 12.2 / 12.2 s at 32 / 64 / 128
(1.2x; 64 prompts make one batch at 64 and 128).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from refusal.config import load_config  # noqa: E402
from refusal.data import default_harmful_eval  # noqa: E402
from refusal.generation import generate  # noqa: E402
from refusal.models import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen25_coder_05b")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--sizes", default="16,32,64", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(load_config(args.model), "cpu")
    prompts = list(default_harmful_eval())[: args.n]
    first = None
    for size in (int(s) for s in args.sizes.split(",")):
        t = time.perf_counter()
        generate(lm, prompts, max_new_tokens=args.new_tokens, batch_size=size, progress=False)
        secs = time.perf_counter() - t
        first = first or secs
        print(f"{args.model}: batch {size}: {secs:.1f} s ({first / secs:.2f}x the first)", flush=True)


if __name__ == "__main__":
    main()
