# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Weight orthogonalization
#
# Runtime ablation removes the refusal direction from the residual stream with hooks. The same edit can
# be baked into the weights: everything that *writes* into the residual stream (the token embedding, every
# block's attention output `o_proj` and MLP output `down_proj`, and their biases) loses its component
# along the direction, `W <- W - alpha Q Q^T W`. With `alpha = 1` the stream then never carries the
# direction, so the edited model computes exactly what the original computes under runtime ablation (at
# every layer input, every pre-MLP norm input and the final norm input). We check that on real prompts
# (max |logit difference|, float32 rounding only), compare generations, and save the edited model as a
# normal HF checkpoint with a model card. For `alpha != 1` the two are not equivalent (runtime ablation
# compounds over layers). Tied embeddings are untied first (logged and noted in the model card).

# %% tags=["parameters"]
model = "qwen25_coder_05b"  # registry entry in params/
device = None  # torch device; None: $REFUSAL_DEVICE, else CUDA when available, else CPU
alpha = None  # fraction removed; None: the alpha chosen by 04_ablate (selected.safetensors meta)
norm_preserving = False  # restore each written vector's norm after projecting (then not equivalent to runtime ablation)
n_check = 16  # prompts (half harmful, half harmless) for the equivalence check
judge = "auto"  # as stage 04: "auto" (LLM judge if OPENAI_BASE_URL/OPENAI_API_KEY are set, else offline), "offline", "llm"

# %%
import copy
import time

import pandas as pd
import torch
from IPython.display import display

from refusal.artifacts import read_json, write_csv, write_json
from refusal.evaluation import judge as J
from refusal.evaluation.redact import redact
from refusal.extraction.directions import read_selected
from refusal.generation import tokenize_chat
from refusal.intervention.conditions import condition_rates, prompt_sets, run_condition
from refusal.intervention.orthogonalize import equivalence_error, orthogonalize, save_orthogonalized
from refusal.models import float32_twin, fresh_copy, load_model
from refusal.report.stage import read_manifest, require_stage, stage_setup, write_manifest

started = time.time()
cfg, P, out = stage_setup("05_orthogonalize", globals())
data_dir = require_stage(cfg.name, "01_data")
harmful, harmless = read_json(data_dir / "harmful_eval.json"), read_json(data_dir / "harmless_eval.json")
sel = read_selected(require_stage(cfg.name, "04_ablate") / "selected.safetensors")
P["alpha"] = float(sel.meta["alpha"]) if P["alpha"] is None else float(P["alpha"])
lm = load_model(cfg, P["device"])
print(f"model: {cfg.name}; direction from {sel.path} (layer {sel.meta['layer']}, position {sel.meta['position']}, "
      f"rank {sel.q.shape[1]}, source: {sel.meta['source']}); alpha = {P['alpha']}")

# %% [markdown]
# ## Edit a fresh copy of the weights
# The loaded model stays untouched (it is the runtime-ablation reference); the edit runs on a separate float32 copy
# (where the entry runs in bf16, `cpu_dtype: auto`, a float32 twin is loaded for the edit and the check, so that the
# check sees float32 rounding and the saved checkpoint keeps full precision).

# %%
exact = float32_twin(lm)
edited = fresh_copy(exact)
res = orthogonalize(edited, sel.q, alpha=P["alpha"], norm_preserving=P["norm_preserving"], progress=True)
print(f"orthogonalized {len(res.edited)} tensors in {res.seconds:.2f} s (untied embeddings: {res.untied})")

# %% [markdown]
# ## Equivalence with runtime ablation
# Max |logit difference| over every non-padded position of chat-formatted prompts, both models in float32. Expected:
# float32 rounding (~1e-4) for `alpha = 1`; the unablated original is shown for scale.

# %%
check_prompts = harmful[: P["n_check"] // 2] + harmless[: P["n_check"] - P["n_check"] // 2]
rows = []
for i in range(0, len(check_prompts), 8):
    enc = tokenize_chat(lm, check_prompts[i : i + 8])
    err = equivalence_error(exact.model, edited, sel.q, enc["input_ids"], enc["attention_mask"], alpha=P["alpha"])
    with torch.no_grad():
        raw = (exact.model(**enc).logits - edited(**enc).logits).abs()[enc["attention_mask"].bool()].max().item()
    rows.append({"batch": i // 8, "prompts": len(enc["input_ids"]), "max_abs_logit_diff_vs_runtime": err,
                 "max_abs_logit_diff_vs_unablated": raw})
equiv = pd.DataFrame(rows)
display(equiv)
max_diff = float(equiv.max_abs_logit_diff_vs_runtime.max())
print(f"max |logit diff| edited vs runtime ablation: {max_diff:.2e} (float32)")
del exact

# %% [markdown]
# ## The edited model on the headline prompts
# Greedy completions of stage 04's evaluation samples (the evaluation set and the independent one, harmful and
# harmless sides) by the edited weights, in the dtype stage 04 ran in, judged as stage 04 judges them. With
# `alpha = 1` they should equal stage 04's runtime ablation of the same direction token for token (rare float ties
# aside in float32; in bf16 the two roundings part more greedy paths after a few tokens); on the harmless side they
# measure the **over-refusal** of the edited model. Excerpts are redacted.

# %%
ablate_dir = require_stage(cfg.name, "04_ablate")
record = pd.read_csv(ablate_dir / "generations.csv", keep_default_na=False, na_values=[""])
gen_tokens = read_manifest(cfg.name, "04_ablate")["params"]["max_new_tokens"]
run_edited = edited if edited.dtype == lm.model.dtype else copy.deepcopy(edited).to(lm.model.dtype)
edited_record = run_condition(lm, "edited", [None], prompt_sets(record, "selected"),
                              lambda p, r: J.score(p, r, judge=P["judge"], progress=False), gen_tokens, model=run_edited)
del run_edited
both = pd.concat([record[record.condition.isin(["baseline", "selected"])], edited_record], ignore_index=True)
rates = condition_rates(both)
display(rates.round(3))
key = ["set", "side", "index"]
pair = record[record.condition == "selected"].merge(edited_record, on=key, suffixes=("_runtime", "_edited"))
summary = {
    "identical_runtime_vs_edited": float((pair.response_runtime == pair.response_edited).mean()),
    "n": len(pair),
    **{f"{r.set}_{r.side}_refusal_{r.condition}": r.refusal for r in rates.itertuples()},
}
display(pd.Series(summary).round(3).to_frame("value"))
shown = pair[pair.side == "harmful"].head(6)
display(shown[["set", "prompt_runtime", "response_runtime", "response_edited"]].assign(
    response_runtime=shown.response_runtime.map(redact), response_edited=shown.response_edited.map(redact)))

# %% [markdown]
# ## Save the edited model
# A normal HF checkpoint (safetensors) with a model card (direction hash, source layer/position, alpha,
# rank, dataset hash, untying note), then reloaded to check that its logits are unchanged.

# %%
from transformers import AutoModelForCausalLM  # noqa: E402

info = {"model_id": cfg.model_id, "layer": sel.meta["layer"], "position": sel.meta["position"],
        "basis": sel.meta["basis"], "k": sel.k, "source": sel.meta["source"],
        "dataset_sha256": read_manifest(cfg.name, "01_data").get("dataset_sha256")}
model_dir = save_orthogonalized(edited, lm.tokenizer, out / "model", res, info)
reloaded = AutoModelForCausalLM.from_pretrained(model_dir, dtype=edited.dtype).to(edited.device).eval()
enc = tokenize_chat(lm, check_prompts[:4])
with torch.no_grad():
    reload_diff = (reloaded(**enc).logits - edited(**enc).logits).abs().max().item()
print(f"saved to {model_dir}; reloaded max |logit diff| = {reload_diff:.2e}")
print((model_dir / "README.md").read_text())

# %% [markdown]
# ## Write the stage's artifacts

# %%
write_json(out / "equivalence.json", {"max_abs_logit_diff": max_diff, "batches": rows, "reload_max_abs_logit_diff": reload_diff,
                                      "edit_seconds": res.seconds, "alpha": P["alpha"]})
write_csv(out / "generations.csv", edited_record)
write_csv(out / "rates.csv", rates)
write_json(out / "generations.json", {"summary": summary})
write_json(out / "orthogonalization.json", {"result": res.to_dict(), "info": info, "selected": str(sel.path)})
write_manifest(out, cfg, P, started, basis_sha256=res.basis_sha256, edit_seconds=round(res.seconds, 3),
               max_abs_logit_diff=max_diff, model_dir="model")
print(f"wrote {sorted(p.name for p in out.iterdir())}")
