"""Greedy generation in float32 and in bfloat16 on the CPU, side by side in one run (the entries' ``cpu_dtype``).

The same ``--n`` harmful eval prompts, chat-formatted, greedy, ``--new-tokens`` new tokens, one batch of
``--batch`` rows, through ``refusal.generation.generate``, on ``--threads`` torch threads; the model loaded once per
dtype. Prints the seconds of each dtype, the speed-up of bfloat16, and how many completions are the same text in both.
Whether the CPU has native bf16 (what ``cpu_dtype: auto`` follows) is printed first; ``ONEDNN_MAX_CPU_ISA=AVX2`` in the
environment holds oneDNN to AVX2, as on a CPU without bf16 instructions.

Measured 2026-12-01 on this project's 2-core machine (AMX-BF16; defaults, one thread): Qwen2.5-Coder-0.5B 43.4 s
float32, 13.6 s bfloat16 (3.20x), 50 of 64 completions identical. With ``ONEDNN_MAX_CPU_ISA=AVX2`` the same comparison
(by an earlier script with the same calls) took 32.8 s float32 and 186.2 s bfloat16.

Usage::

    python bench/cpu_dtype.py                        # qwen25_coder_05b, 64 prompts x 32 tokens, batch 64, 1 thread
    python bench/cpu_dtype.py --model smollm2_135m
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/cpu_dtype.py
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
from refusal.device import native_bf16  # noqa: E402
from refusal.generation import generate  # noqa: E402
from refusal.models import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen25_coder_05b")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"native bf16 on this CPU: {native_bf16()}", flush=True)
    prompts = list(default_harmful_eval())[: args.n]
    seconds, texts = {}, {}
    for dtype in ("float32", "bfloat16"):
        lm = load_model(load_config(args.model), "cpu", dtype=dtype)
        t = time.perf_counter()
        texts[dtype] = generate(lm, prompts, max_new_tokens=args.new_tokens, batch_size=args.batch, progress=False)
        seconds[dtype] = time.perf_counter() - t
        print(f"{args.model}: {dtype}: {seconds[dtype]:.1f} s", flush=True)
        del lm
    same = sum(a == b for a, b in zip(texts["float32"], texts["bfloat16"]))
    print(f"{args.model}: bfloat16 {seconds['float32'] / seconds['bfloat16']:.2f}x the speed of float32; "
          f"{same} of {len(prompts)} completions identical")


if __name__ == "__main__":
    main()
