"""GPU check: the study's architectures at full size, with random weights, through the library's GPU route.

For a machine with a GPU but no network and no model weights: only this repository, PyTorch and transformers.
Each model is built from its real configuration (``lib/refusal/default_data/hub_models/<entry>.json``; Qwen-1
from the stand-in of its remote code in ``tests/support/qwen1.py``) with random weights directly on the device,
with a byte-level tokenizer that has the model's real special tokens and chat template. Then, timed, with the
peak device memory of each step:

1. batched extraction (all layers, every post-instruction position; streamed sums) and its agreement with
   one-prompt-at-a-time extraction (min cosine of the per-layer mean differences);
2. generation under a runtime ablation, with the KV cache;
3. the weight edit on a second copy, and its max |logit difference| from runtime ablation, in bf16 and float32.

Usage (PYTHONPATH=lib): ``python scripts/gpu_check.py [--models a,b] [--device cuda] [--tiny] [--out results.json]``.
``--tiny`` shrinks every model (a CPU smoke test of this script; the test suite runs it that way).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests"))

from refusal import hub_models as H  # noqa: E402
from refusal.config import load_config  # noqa: E402
from refusal.extraction.activations import collect, template_positions  # noqa: E402
from refusal.extraction.directions import random_direction  # noqa: E402
from refusal.families import prepare_tokenizer  # noqa: E402
from refusal.generation import generate_ids, tokenize_chat  # noqa: E402
from refusal.intervention.ablation import ablate  # noqa: E402
from refusal.intervention.orthogonalize import equivalence_error, orthogonalize  # noqa: E402
from refusal.models import LoadedModel, fresh_copy  # noqa: E402

DEFAULT = ["llama32_1b", "llama32_3b", "llama31_8b", "qwen3_1_7b", "gemma_2b_it", "phi3_mini", "qwen1_8b_chat"]
TOPICS = ["bread", "rivers", "the moon", "chess", "tax forms", "a poem about rain", "python lists", "volcanoes",
          "the French revolution", "gardening", "a cover letter", "sourdough", "prime numbers", "bicycles"]


def prompts(n: int) -> list[str]:
    """``n`` user prompts of varied lengths (so that batches are padded)."""
    return [f"Please tell me about {TOPICS[i % len(TOPICS)]}" + " and explain it in detail" * (i % 4) + "."
            for i in range(n)]


def build(entry: str, device: torch.device, dtype: torch.dtype, tiny: bool) -> LoadedModel:
    """A random-weight model of the entry's real configuration, built on ``device``."""
    spec = H.load_hub_spec(entry)
    tok = H.byte_tokenizer(spec)
    over = H.tiny_overrides(spec) if tiny else {}
    with torch.device(device):
        torch.manual_seed(0)
        if entry == "qwen1_8b_chat":
            from support.qwen1 import QWenConfig, QWenLMHeadModel, register

            register()
            cfg = H.hub_config(spec, config_class=QWenConfig, **over)
            model = QWenLMHeadModel(cfg).to(dtype)
            tok.chat_template = None  # as shipped: the family supplies make_context's format
            tok.pad_token = None
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_config(H.hub_config(spec, **over), dtype=dtype)
    model.eval()
    prepare_tokenizer(tok, model.config.model_type)
    return LoadedModel(cfg=load_config(entry), model=model, tokenizer=tok)


class Step:
    """Times a block and records the peak device memory it reached."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> "Step":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_gb = torch.cuda.max_memory_allocated() / 2**30
        else:
            self.peak_gb = None
        self.seconds = time.perf_counter() - self.t0


def check(entry: str, device: torch.device, tiny: bool, n_prompts: int, new_tokens: int) -> dict:
    row: dict = {"entry": entry}
    with Step(device) as s:
        lm = build(entry, device, torch.bfloat16, tiny)
    row["build_s"], row["params_b"] = round(s.seconds, 1), sum(p.numel() for p in lm.model.parameters()) / 1e9
    row["weights_gb"] = s.peak_gb and round(s.peak_gb, 1)
    ps = prompts(n_prompts)
    tp = template_positions(lm)
    kw = dict(positions=tp.positions, expect_tail=tp.token_ids, progress=False)
    with Step(device) as s:
        st = collect(lm.model, lm, ps, batch_size=16, **kw)
    row["extract_s"], row["extract_peak_gb"] = round(s.seconds, 2), s.peak_gb and round(s.peak_gb, 1)
    seq = collect(lm.model, lm, ps[:8], mode="sequential", **kw)
    bat = collect(lm.model, lm, ps[:8], batch_size=8, **kw)
    cos = torch.nn.functional.cosine_similarity(bat.mean.flatten(0, 1), seq.mean.flatten(0, 1), dim=-1)
    row["batched_vs_sequential_min_cos"] = round(float(cos.min()), 6)
    v = random_direction(lm.d_model, 0)
    with Step(device) as s, ablate(lm.model, v):
        out = generate_ids(lm, ps[:32], max_new_tokens=new_tokens, batch_size=16, progress=False)
    row["ablated_generate_s"], row["generate_peak_gb"] = round(s.seconds, 2), s.peak_gb and round(s.peak_gb, 1)
    row["generated_tokens"] = sum(map(len, out))
    enc = tokenize_chat(lm, ps[:4])
    for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        if dt != lm.model.dtype:
            lm.model.to(dt)
        with Step(device) as s:
            edited = fresh_copy(lm)
            orthogonalize(edited, v)
        row[f"edit_{name}_s"], row[f"edit_{name}_peak_gb"] = round(s.seconds, 2), s.peak_gb and round(s.peak_gb, 1)
        row[f"equivalence_{name}_max_abs_logit_diff"] = float(f"{equivalence_error(lm.model, edited, v, enc['input_ids'], enc['attention_mask']):.3g}")
        del edited
        if device.type == "cuda":
            torch.cuda.empty_cache()
    del lm
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(DEFAULT))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny versions (a CPU smoke test)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out", default=os.environ.get("OUT") and str(Path(os.environ["OUT"]) / "gpu_check.json"))
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"}
    import transformers

    env["transformers"] = transformers.__version__
    print(json.dumps(env), flush=True)
    rows, t0 = [], time.time()
    for entry in a.models.split(","):
        try:
            rows.append(check(entry, device, a.tiny, a.prompts, a.new_tokens))
        except Exception as e:  # report and go on: one architecture's failure must not hide the others
            rows.append({"entry": entry, "error": f"{type(e).__name__}: {e}"[:500]})
        print(json.dumps(rows[-1]), flush=True)
    print(f"total {time.time() - t0:.0f} s", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
