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
# # 03 · Separability and cross-layer structure
#
# How well does each candidate direction (layer x template position, from stage 02) separate harmful from
# safe prompts? We project prompts onto it and measure **Cohen's d** (pooled SD, harmful minus safe):
# in-sample (direction and d on the train split, as the original study did) and **held out** (direction
# from train, d on the test split), each with a seeded bootstrap 95% interval over pairs. A one-threshold
# classifier on the projection (threshold chosen on train, accuracy on test) gives the same answer in a
# more familiar unit.
#
# Then the cheap first signal of "one direction or a subspace": the cosine between layers' directions,
# between positions, and the **effective rank** of the stack of per-layer directions (participation ratio
# of the singular values; how many singular values hold 90% of the energy). One shared direction gives a
# rank near 1; a direction that rotates through depth gives more.

# %% tags=["parameters"]
model = "qwen25_coder_05b"  # registry entry in params/
device = None  # torch device, as in every stage (this one loads no model: tokenizer / statistics only)
n_boot = 1000  # bootstrap resamples
seed = 0  # bootstrap seed
exclude_last_frac = 0.2  # fraction of last layers not eligible as "best" (stage 04's late-layer cut)
test_split = "test"  # held-out split projected in 02

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display

from refusal.artifacts import read_json, read_tensors, write_csv, write_json
from refusal.extraction.directions import read_directions
from refusal.report.stage import require_stage, stage_setup, write_manifest
from refusal.extraction.separability import best_candidate, candidate_table, cross_layer
from refusal.plots import save_figure

started = time.time()
cfg, P, out = stage_setup("03_separability", globals())
ex = require_stage(model, "02_extract")
dirs = read_directions(ex / "directions.safetensors")
proj, pmeta = read_tensors(ex / "projections.safetensors")
positions, tokens = dirs.meta["positions"], dirs.meta.get("position_tokens") or [str(p) for p in dirs.meta["positions"]]
labels = [f"{p} {t!r}" for p, t in zip(positions, tokens)]
print(f"model: {cfg.name}; {len(dirs.meta['layers'])} layers x {len(positions)} positions; "
      f"train {dirs.meta['n_harmful']} pairs, {P['test_split']} {proj[P['test_split'] + '_harmful'].shape[0]} pairs")

# %% [markdown]
# ## Cohen's d per candidate: in-sample vs held out

# %%
table = candidate_table(proj, dirs.valid, positions, tokens, n_boot=P["n_boot"], seed=P["seed"], test=P["test_split"])
fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=True)
for ax, col, title in zip(axes, ("d_train", "d_test"), ("in-sample d (train)", "held-out d (test)")):
    grid = table.pivot(index="pos_index", columns="layer", values=col)
    sns.heatmap(grid, ax=ax, cmap="magma", cbar_kws={"label": "Cohen's d"})
    ax.set(title=title, xlabel="layer", ylabel="position")
    ax.set_yticklabels(labels, rotation=0)
plt.tight_layout()
save_figure(fig, out, "cohens_d_train_vs_test")

# %%
fig, ax = plt.subplots(figsize=(10, 4))
for p, lab in enumerate(labels):
    t = table[(table.pos_index == p) & table.valid]
    ax.plot(t.layer, t.d_test, marker="o", ms=3, label=lab)
    ax.fill_between(t.layer, t.d_test_lo, t.d_test_hi, alpha=0.15)
ax.set(xlabel="layer", ylabel="held-out Cohen's d (95% CI)", title="Held-out separability by layer and position")
ax.legend(fontsize=8)
save_figure(fig, out, "heldout_d_by_layer");

# %% [markdown]
# ## The best candidate by held-out d
# Chosen on the **validation** split (d of its projections onto the train directions), among layers before the
# late-layer cut, so that its test d is an honest held-out figure; the test split only reports. (Separability is not
# yet causality: stage 04 selects the direction to ablate by what removing it does, on validation prompts; the
# findings table reports the d of *that* direction, with this best-by-d candidate beside it.)

# %%
# NBVAL_CHECK_OUTPUT
choose_by = "d_val" if "d_val" in table else "d_test"
li, pi = best_candidate(table.pivot(index="layer", columns="pos_index", values=choose_by).to_numpy(),
                        dirs.valid.numpy(), exclude_last_frac=P["exclude_last_frac"])
best = table[(table.layer == li) & (table.pos_index == pi)].iloc[0].to_dict()
best = {k: (v.item() if hasattr(v, "item") else v) for k, v in best.items()}
display(pd.DataFrame([best]).round(3))
top = table[table.valid].sort_values("d_test", ascending=False).head(10)
display(top[[c for c in ("layer", "position", "token", "d_train", "d_val", "d_test", "d_test_lo", "d_test_hi", "acc_test")
             if c in top]].round(3))

# %% [markdown]
# ## Cross-layer structure
# Cosine between the per-layer directions at the best position, and the singular-value spectrum of the
# stack of per-layer directions at each position.

# %%
cl = cross_layer(dirs.directions, dirs.valid)
ax = sns.heatmap(np.array(cl["layer_cosine"][pi]), cmap="coolwarm", vmin=-1, vmax=1, square=True,
                 cbar_kws={"label": "cosine"})
ax.set(title=f"Cosine between layers' directions at position {labels[pi]}", xlabel="layer", ylabel="layer")
save_figure(ax, out, "layer_cosine");

# %%
rank = pd.DataFrame([{"position": lab, "layers": len(r["singular_values"]), "participation_ratio": r["participation_ratio"],
                      "n_for_90%_energy": r["n_for_energy"]} for lab, r in zip(labels, cl["effective_rank"]) if r])
display(rank.round(2))
fig, ax = plt.subplots(figsize=(7, 3.5))
for lab, r in zip(labels, cl["effective_rank"]):
    if r:
        ax.plot(range(1, len(r["energy"]) + 1), r["energy"], marker="o", ms=3, label=lab)
ax.axhline(0.9, color="grey", ls="--", lw=1)
ax.set(xlabel="number of singular values", ylabel="share of energy", title="Spectrum of the per-layer direction stack")
ax.legend(fontsize=8)
save_figure(fig, out, "direction_stack_spectrum");

# %% [markdown]
# ## Cosine between positions (within each layer), and batched vs sequential extraction

# %%
pos_cos = np.array(cl["position_cosine"])  # [L, P, P]
adjacent = pd.DataFrame({f"{positions[p]}~{positions[p + 1]}": pos_cos[:, p, p + 1] for p in range(len(positions) - 1)})
ax = sns.heatmap(adjacent.T, cmap="coolwarm", vmin=-1, vmax=1, cbar_kws={"label": "cosine"})
ax.set(xlabel="layer", title="Cosine between adjacent positions' directions")
save_figure(ax, out, "adjacent_position_cosine");

# %%
bvs = read_json(ex / "batched_vs_sequential.json")
print(f"batched vs sequential ({bvs['pairs']} pairs): min cosine over valid candidates = {bvs['min_cosine']:.7f}")
display(pd.DataFrame({"min cosine": bvs["min_cosine_per_layer"]}).T.round(6))

# %% [markdown]
# ## Write the stage's artifacts

# %%
write_csv(out / "separability.csv", table)
write_json(out / "best_candidate.json", {"by": choose_by, "exclude_last_frac": P["exclude_last_frac"],
                                         "layer": li, "pos_index": pi, "position": positions[pi], **best})
write_json(out / "cross_layer.json", {"positions": positions, "layers": dirs.meta["layers"], **cl,
                                      "batched_vs_sequential_min_cosine": bvs["min_cosine"]})
write_manifest(out, cfg, P, started, best={"layer": li, "position": positions[pi], "d_test": best["d_test"]})
print(f"wrote {sorted(p.name for p in out.iterdir())}")
