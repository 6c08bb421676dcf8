"""Benchmark of activation extraction (stage 02), measured side by side in one run.

Times, over the same chat-formatted prompts (harmful and safe prompts of the default pairs):

(a) floor: a bare HF forward (un-bridged model, its default attention, no hooks), the decoder
    truncated to the layers needed (resid_pre of the last layer = output of layer L-2), no
    unembedding; same length-sorted, left-padded batches with attention mask;
(b) our batched extraction (:func:`refusal.extraction.activations.collect`, mode="batched") through the
    bridge, and ``batched_hf``: the same through plain PyTorch hooks on the HF model;
(c) our sequential extraction (one prompt per forward);
(d) the original study's approach: one prompt at a time, no mask, full forward WITH the
    unembedding, ``run_with_cache`` caching every hook of every layer, then the last-token
    resid_pre read from the cache.

Memory: for each size in ``--mem-sizes`` a fresh subprocess loads the model and bridge, resets
its peak-RSS counter (``echo 5 > /proc/self/clear_refs`` resets VmHWM; if that is refused
the ru_maxrss of the whole process is used and the report says so), runs the default streaming
batched extraction, and reports the peak RSS (VmHWM) and its increment over the RSS after loading.

Usage::

    python bench/extract.py                         # full: --n 256, memory at 128 and 1024
    python bench/extract.py --n 32 --mem-sizes 32,128   # reduced (shared CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from refusal import data as D  # noqa: E402
from refusal.extraction.activations import left_pad, collect, template_positions, tokenize_prompts  # noqa: E402
from refusal.generation import length_sorted_batches  # noqa: E402
from refusal.models import load_bridge, load_model  # noqa: E402
from refusal.batching import mask_positions  # noqa: E402


def prompts(n: int) -> list[str]:
    """``n`` prompts: harmful and safe halves of the default pairs, interleaved."""
    flat = [p for pair in D.default_pairs() for p in pair]
    if n > len(flat):
        raise SystemExit(f"--n {n}: only {len(flat)} default prompts")
    return flat[:n]


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@torch.inference_mode()
def floor(lm, texts_ids: list[list[int]], batch_size: int, n_layers_needed: int) -> None:
    """Bare HF forward over the truncated decoder (no hooks, no unembedding)."""
    base = lm.model.model
    saved = base.layers
    base.layers = saved[:n_layers_needed]
    try:
        for batch in length_sorted_batches([len(s) for s in texts_ids], batch_size):
            ids, mask = left_pad([texts_ids[i] for i in batch], lm.tokenizer.pad_token_id)
            base(input_ids=ids, attention_mask=mask, position_ids=mask_positions(mask), use_cache=False)
    finally:
        base.layers = saved


@torch.inference_mode()
def original(bridge, lm, texts_ids: list[list[int]]) -> torch.Tensor:
    """The original study: per prompt, full forward + unembedding, cache everything, no mask."""
    L = lm.n_layers
    acc = torch.zeros(L, lm.d_model, dtype=torch.float64)
    for s in texts_ids:
        _, cache = bridge.run_with_cache(torch.tensor([s]), prepend_bos=False)
        for i in range(L):
            acc[i] += cache[f"blocks.{i}.hook_resid_pre"][0, -1].double()
        del cache
    return acc / len(texts_ids)


def mem_child(model: str, n: int, batch_size: int) -> None:
    lm = load_model(model)
    bridge = load_bridge(lm, share=True)
    tp = template_positions(lm)
    texts = prompts(n)
    collect(bridge, lm, texts[:2], tp.positions, progress=False)  # warm-up
    rss0 = _status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        how = "VmHWM after reset via /proc/self/clear_refs"
    except OSError:
        how = "ru_maxrss of the whole process (VmHWM reset refused)"
    collect(bridge, lm, texts, tp.positions, batch_size=batch_size, progress=False)
    peak = _status_kb("VmHWM") if how.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "rss_after_load_mb": rss0 / 1024, "peak_mb": peak / 1024,
                      "increment_mb": (peak - rss0) / 1024, "how": how}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen25_coder_05b")
    ap.add_argument("--n", type=int, default=256, help="prompts for the timing comparison")
    ap.add_argument("--mem-sizes", default="128,1024", help="comma-separated prompt counts for peak memory ('' to skip)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated of floor,batched,batched_hf,sequential,original")
    ap.add_argument("--mem-child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.mem_child is not None:
        mem_child(a.model, a.mem_child, a.batch_size or 16)
        return

    lm = load_model(a.model)
    bs = a.batch_size or lm.cfg.batch_size
    bridge = load_bridge(lm)  # separate copy: lm.model stays a bare HF model for the floor
    tp = template_positions(lm)
    texts = prompts(a.n)
    ids = tokenize_prompts(lm, texts)
    skip = set(filter(None, a.skip.split(",")))
    L = lm.n_layers
    print(f"model {a.model}: {a.n} prompts, {sum(map(len, ids))} tokens (mean {sum(map(len, ids)) / len(ids):.1f}), "
          f"batch {bs}, {L} layers x {len(tp.positions)} positions, torch threads {torch.get_num_threads()}")
    runs = {
        "floor": lambda: floor(lm, ids, bs, L - 1),
        "batched": lambda: collect(bridge, lm, texts, tp.positions, batch_size=bs, progress=False),
        "batched_hf": lambda: collect(lm.model, lm, texts, tp.positions, batch_size=bs, progress=False),
        "sequential": lambda: collect(bridge, lm, texts, tp.positions, mode="sequential", progress=False),
        "original": lambda: original(bridge, lm, ids),
    }
    # warm-up on 2 prompts each (first-call allocations, lazy init)
    floor(lm, ids[:2], bs, L - 1)
    collect(bridge, lm, texts[:2], tp.positions, progress=False)
    original(bridge, lm, ids[:2])
    times = {}
    for name, fn in runs.items():
        if name in skip:
            continue
        t = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t
        print(f"  {name:10s} {times[name]:8.2f} s  ({times[name] / a.n * 1000:.0f} ms/prompt)", flush=True)
    if "floor" in times:
        for k in ("batched", "batched_hf", "sequential", "original"):
            if k in times:
                print(f"  {k} / floor = {times[k] / times['floor']:.2f}x")
    if "batched" in times and "original" in times:
        print(f"  original / batched = {times['original'] / times['batched']:.2f}x (speed-up of batched over the original)")
    if "batched" in times and "sequential" in times:
        print(f"  sequential / batched = {times['sequential'] / times['batched']:.2f}x")

    sizes = [int(x) for x in a.mem_sizes.split(",") if x]
    mems = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--model", a.model, "--mem-child", str(n), "--threads", str(a.threads),
               "--batch-size", str(bs)]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if r.returncode != 0:
            raise SystemExit(f"memory child for n={n} failed:\n{r.stderr[-3000:]}")
        rec = json.loads(r.stdout.strip().splitlines()[-1])
        mems.append(rec)
        print(f"  memory n={n:5d}: peak {rec['peak_mb']:.0f} MB, after load {rec['rss_after_load_mb']:.0f} MB, "
              f"increment {rec['increment_mb']:.1f} MB  [{rec['how']}]", flush=True)
    if len(mems) >= 2:
        print(f"  peak({mems[-1]['n']}) / peak({mems[0]['n']}) = {mems[-1]['peak_mb'] / mems[0]['peak_mb']:.3f}x")


if __name__ == "__main__":
    main()
