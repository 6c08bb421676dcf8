"""Benchmark of generation under runtime ablation, measured side by side in one run.

Over the same prompts (harmful eval prompts, chat-formatted, greedy, the same number of new tokens):

(a) plain HF ``generate`` (KV cache, left padding + mask, length-sorted batches): the reference;
(b) the same under runtime ablation of a unit direction (``refusal.intervention.ablation.ablate``: hooks on every
    layer input, every pre-MLP norm input and the final norm);
(c) the original study's loop: no KV cache, the whole sequence re-run at every step, batched
    without an attention mask (its bug; timing only), and the ablation applied through the same hooks.

Every run generates exactly ``--new-tokens`` tokens (no early stop), so the work is the same.
Prints seconds and the ratios (b)/(a) and (c)/(b).

Usage::

    python bench/generate.py                       # qwen25_coder_05b, 32 prompts x 64 new tokens
    python bench/generate.py --model smollm2_135m     # full size on SmolLM2-135M: ~5.5 min on 2 CPU cores
    python bench/generate.py --model smollm2_135m --n 8 --new-tokens 16
    python bench/generate.py --n 8 --new-tokens 32 --batch-size 8   # ~4 min on 2 CPU cores

On 2 CPU cores the defaults take more than 15 minutes: the no-cache loop re-runs 32 sequences of
~50-114 tokens 64 times (measured: not finished after 15 min, 6.5 GB RSS). At full size on SmolLM2-135M
(2026-11-29): plain 10.4 s, ablated 11.9 s, no-cache loop 302.4 s: 1.14x and 25.4x.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from refusal.intervention.ablation import ablate  # noqa: E402
from refusal.data import default_harmful_eval  # noqa: E402
from refusal.generation import length_sorted_batches  # noqa: E402
from refusal.models import load_model  # noqa: E402


@torch.inference_mode()
def hf_generate(lm, texts: list[str], new_tokens: int, batch_size: int) -> None:
    lengths = [len(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    for idx in length_sorted_batches(lengths, batch_size):
        enc = lm.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        lm.model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          temperature=None, top_p=None, top_k=None, pad_token_id=lm.tokenizer.pad_token_id)


@torch.inference_mode()
def no_cache_loop(lm, texts: list[str], new_tokens: int, batch_size: int) -> None:
    """The original study's loop: re-run the whole (unmasked) sequence for every new token."""
    for start in range(0, len(texts), batch_size):
        ids = lm.tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True,
                           add_special_tokens=False)["input_ids"]
        for _ in range(new_tokens):
            logits = lm.model(input_ids=ids).logits[:, -1, :]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen25_coder_05b")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    texts = lm.chat(default_harmful_eval()[: args.n])
    v = torch.nn.functional.normalize(torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0)), dim=0)
    hf_generate(lm, texts[:2], 2, 2)  # warm-up
    t = {}
    t0 = time.perf_counter()
    hf_generate(lm, texts, args.new_tokens, args.batch_size)
    t["plain"] = time.perf_counter() - t0
    print(f"  plain                {t['plain']:8.1f} s", flush=True)
    t0 = time.perf_counter()
    with ablate(lm.model, v):
        hf_generate(lm, texts, args.new_tokens, args.batch_size)
    t["ablated"] = time.perf_counter() - t0
    print(f"  ablated              {t['ablated']:8.1f} s", flush=True)
    t0 = time.perf_counter()
    with ablate(lm.model, v):
        no_cache_loop(lm, texts, args.new_tokens, args.batch_size)
    t["original_no_cache"] = time.perf_counter() - t0
    print(f"{args.model}: {args.n} prompts x {args.new_tokens} new tokens, batch {args.batch_size}, {args.threads} threads")
    for k, s in t.items():
        print(f"  {k:20s} {s:8.1f} s")
    print(f"ablated / plain            = {t['ablated'] / t['plain']:.2f}x   (target <= 1.3x)")
    print(f"original no-cache / ablated = {t['original_no_cache'] / t['ablated']:.2f}x   (target >= 5x)")


if __name__ == "__main__":
    main()
