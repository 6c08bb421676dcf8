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
# # 02 · Extract candidate directions
#
# For every layer and every **post-instruction template position** (the tokens the chat template adds
# after the user's text, e.g. `<|im_end|>\n<|im_start|>assistant\n`), we run the train split's harmful
# prompts and their safe twins through the model, read the residual stream at the input of the block
# (`resid_pre`), and take the **difference of means**, harmful minus safe, accumulated in float64. Its
# normalized version is a candidate refusal direction. A candidate whose difference is exactly zero
# (layer 0 at a fixed template token: every prompt has the same embedding there) is marked invalid instead
# of being saved as NaN.
#
# Prompts are batched by length with left padding **and an attention mask** (the original study omitted the
# mask, so real tokens attended to padding and its batched directions differed from sequential ones); we
# check on a subset that batched and sequential extraction give the same directions. The forward pass stops
# after the last layer we read: no unembedding.
#
# We also project the held-out test split onto the train directions, for stage 03.

# %% tags=["parameters"]
model = "qwen25_coder_05b"  # registry entry in params/
device = None  # torch device; None: $REFUSAL_DEVICE, else CUDA when available, else CPU
hook = "resid_pre"  # resid_pre | resid_mid | resid_post
batch_size = None  # prompts per forward pass; None: the entry's batch_size
compare_pairs = 16  # pairs used for the batched-vs-sequential check
project_splits = ["val", "test"]  # held-out splits projected onto the train directions (val: to choose; test: to report)
max_train_pairs = None  # cap on train pairs; None: all
backend = "hf"  # "hf" (PyTorch hooks on the HF model: same numbers as the bridge, tested, and faster) or "bridge" (TransformerLens hooks; needed for resid_mid)

# %%
import time

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

from refusal.extraction.activations import collect, template_positions
from refusal.artifacts import read_json, write_json, write_tensors
from refusal.extraction.directions import diff_of_means, extract_directions, write_directions
from refusal.models import float32_twin, load_bridge, load_model
from refusal.report.stage import require_stage, stage_setup, write_manifest
from refusal.extraction.separability import paired_cosine
from refusal.plots import save_figure

started = time.time()
cfg, P, out = stage_setup("02_extract", globals())
data_dir = require_stage(model, "01_data")
splits, pairs = read_json(data_dir / "splits.json"), read_json(data_dir / "pairs.json")
train = splits["train"][: P["max_train_pairs"]]
print(f"model: {cfg.name}; {len(train)} train pairs; artifacts in {out}")

# %% [markdown]
# ## Template positions
# Derived from the tokenizer's chat template by formatting a probe prompt and taking the tokens after it.

# %%
lm = load_model(cfg, P["device"])
# this stage never saves weights: the bridge may wrap lm.model itself (one copy in memory)
runner = load_bridge(lm, share=True) if P["backend"] == "bridge" else lm.model
tp = template_positions(lm)
display(pd.DataFrame({"position": tp.positions, "token": [repr(t) for t in tp.tokens], "id": tp.token_ids}))

# %% [markdown]
# ## Difference of means on the train split
# One batched pass; the activations at the template positions are kept in float16 only while the
# in-sample projections onto the new directions are computed (no second pass over train).

# %%
t0 = time.time()
dirs, proj_h, proj_s = extract_directions(runner, lm, [pairs[i][0] for i in train], [pairs[i][1] for i in train],
                                          hook=P["hook"], batch_size=P["batch_size"], keep=torch.float16)
extract_seconds = time.time() - t0
print(f"extraction: {extract_seconds:.1f} s for {2 * len(train)} prompts; "
      f"{int(dirs.valid.sum())} valid candidates of {dirs.valid.numel()}")
invalid = [(int(l), tp.positions[p]) for l, p in zip(*np.nonzero(~dirs.valid.numpy()))]
print(f"degenerate (zero difference) candidates, (layer, position): {invalid}")

# %%
norms = pd.DataFrame(dirs.norm.numpy(), columns=[f"{p} {t!r}" for p, t in zip(tp.positions, tp.tokens)])
ax = sns.heatmap(norms.T, cmap="viridis", cbar_kws={"label": "|mean harmful - mean safe|"})
ax.set(xlabel="layer", ylabel="position", title="Norm of the raw difference of means")
save_figure(ax, out, "difference_norms");

# %% [markdown]
# ## Held-out projections
# The test prompts are streamed once and only their projections onto the train directions are kept.

# %%
projections = {"train_harmful": proj_h, "train_safe": proj_s}
for split in P["project_splits"]:
    idx = splits[split]
    for k, kind in enumerate(("harmful", "safe")):
        st = collect(runner, lm, [pairs[i][k] for i in idx], tp.positions, hook=P["hook"],
                     batch_size=P["batch_size"], directions=dirs.directions, expect_tail=tp.token_ids,
                     desc=f"{split} {kind}")
        projections[f"{split}_{kind}"] = st.projections
print({k: tuple(v.shape) for k, v in projections.items()})

# %% [markdown]
# ## Batched equals sequential
# On the first `compare_pairs` train pairs, directions from batched extraction (left padding + mask, the
# chat template's shared opening computed once and reused as a key/value cache) and from one-prompt-at-a-time
# extraction of whole prompts must agree to rounding at every valid candidate. The check runs in float32 (on a float32
# copy where the entry runs in bf16), where rounding is far below what a masking fault would change.

# %%
sub = train[: P["compare_pairs"]]
exact = float32_twin(lm)
exact_runner = runner if exact is lm else load_bridge(exact, share=True) if P["backend"] == "bridge" else exact.model
by_mode = {}
for mode in ("batched", "sequential"):
    h = collect(exact_runner, exact, [pairs[i][0] for i in sub], tp.positions, hook=P["hook"], mode=mode,
                batch_size=P["batch_size"], desc="check harmful")
    s = collect(exact_runner, exact, [pairs[i][1] for i in sub], tp.positions, hook=P["hook"], mode=mode,
                batch_size=P["batch_size"], desc="check safe")
    by_mode[mode] = diff_of_means(h.mean, s.mean)
del exact, exact_runner
valid_both = (by_mode["batched"].valid & by_mode["sequential"].valid).numpy()
cos = paired_cosine(by_mode["batched"].directions, by_mode["sequential"].directions)  # [L, P]
per_layer = [float(cos[l][valid_both[l]].min()) if valid_both[l].any() else None for l in range(cos.shape[0])]
comparison = {"pairs": len(sub), "positions": tp.positions, "cosine": np.where(valid_both, cos, np.nan).tolist(),
              "min_cosine_per_layer": per_layer, "valid": valid_both.tolist(),
              "min_cosine": float(cos[valid_both].min()),
              "valid_masks_equal": bool((by_mode["batched"].valid == by_mode["sequential"].valid).all())}
comparison["cosine"] = [[None if np.isnan(c) else c for c in row] for row in comparison["cosine"]]
comparison["dtype"] = "float32"
print(f"min cosine batched vs sequential over valid candidates (float32): {comparison['min_cosine']:.7f}")
display(pd.DataFrame({"layer": range(len(per_layer)), "min cosine": per_layer}).set_index("layer").T.round(6))

# %% [markdown]
# ## Write the stage's artifacts

# %%
write_directions(out / "directions.safetensors", dirs)
write_tensors(out / "projections.safetensors", projections,
              {"positions": tp.positions, "layers": dirs.meta["layers"], "hook": P["hook"],
               "directions_split": "train", "index": {"train": train, **{s: splits[s] for s in P["project_splits"]}}})
write_json(out / "batched_vs_sequential.json", comparison)
write_manifest(out, cfg, P, started, extract_seconds=round(extract_seconds, 2), n_train_pairs=len(train),
               n_valid=int(dirs.valid.sum()), min_cosine_batched_sequential=comparison["min_cosine"])
print(f"wrote {sorted(p.name for p in out.iterdir())}")
