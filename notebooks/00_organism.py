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
# # 00 · Model organism
#
# A **model organism** is a refusing model we build ourselves, so that we know the truth the later stages
# should find. `smollm2_refusal` fine-tunes the upper layers of SmolLM2-135M-Instruct (which by itself
# answers almost every harmful request) to refuse the TRAIN-split harmful pairs, with refusals drawn from
# several styles, while it keeps its own greedy answers to harmless prompts (self-distillation).
# `gemma3_refusal` (second architecture) starts from Gemma 3 270M *base*, which cannot follow an instruction:
# every layer is fine-tuned on a plain `User: ... / Assistant:` format to give short project-written answers to
# harmless prompts and to refuse the harmful ones. The *planted* organisms change the model below the readers
# only by a rank-k write `W_down += U A^T` into one layer's MLP output, and train the layers above it to refuse
# from that write alone: whatever makes them refuse lies in `span(U)` by construction, and `U` is saved with
# the organism.
# This stage builds (or loads from the cache) the organism, shows its training curve, measures refusal on
# held-out prompts (TEST split harmful side; the harmless eval set) with Wilson 95% intervals, and, for
# planted organisms, what removing `span(U)`, single directions inside it, or a random direction does.
# Refusal is decided by the project's one refusal detector, the judge (the offline judge by default, the rule
# stage 04 uses too), on 32-token greedy completions.

# %% tags=["parameters"]
model = "smollm2_planted1"  # an organism entry in params/ (source.kind: organism)
device = None  # torch device; None: $REFUSAL_DEVICE, else CUDA when available, else CPU
n_eval = 0  # held-out prompts per side (0: all, i.e. the 107 test-split harmful and 149 harmless eval prompts)
max_new_tokens = 32  # tokens generated to decide refusal
judge = "offline"  # refusal detector: "offline" (the default everywhere), "llm" or "auto"

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from refusal.artifacts import write_csv, write_json
from refusal.evaluation.redact import redact
from refusal.extraction.activations import outlier_dims
from refusal.extraction.directions import random_direction
from refusal.models import load_model
from refusal.organisms import measure as M
from refusal.organisms import recipe as R
from refusal.organisms.build import build
from refusal.report.stage import stage_setup, write_manifest
from refusal.plots import save_figure

started = time.time()
cfg, P, out = stage_setup("00_organism", globals())
if cfg.source.kind != "organism":
    raise ValueError(f"{cfg.path}: 00_organism runs only on organisms (source.kind: organism), not '{cfg.source.kind}'")
recipe = R.recipe_of(cfg)
print(f"organism {cfg.name} from {cfg.source.base}; recipe {recipe}")

# %% [markdown]
# ## Build or load
# Building is this stage's job (loading a registry entry only locates a built organism). The cache entry is keyed
# by the base weights' SHA-256, the training data and the recipe; its weight files are checksummed on every load
# (a corrupted entry is rebuilt here).

# %%
t = time.time()
entry = build(cfg)
lm = load_model(cfg, P["device"])
info = R.organism_info(cfg)
print(f"entry {lm.weights_dir}; load {time.time() - t:.0f} s; built in {info['seconds_total']} s "
      f"(training {info['seconds_train']} s on {info['torch_threads']} threads); data {info['data']}")

# %% [markdown]
# ## Training curve

# %%
tl = pd.DataFrame(info["train_log"]).drop(columns="seconds")
fig, ax = plt.subplots(figsize=(7, 3.5))
for col in [c for c in tl.columns if c.startswith("loss_")]:
    if tl[col].notna().any():
        ax.plot(tl["step"], tl[col].rolling(5, min_periods=1).mean(), label=col)
ax.set(xlabel="step", ylabel="response cross-entropy (5-step mean)", yscale="log")
ax.legend()
save_figure(fig, out, "training_curve");

# %% [markdown]
# ## Refusal on held-out prompts

# %%
H = M.heldout_prompts(P["n_eval"] or None, P["n_eval"] or None)
gen = lambda prompts, q=None: M.completions(lm, prompts, q, P["max_new_tokens"])  # noqa: E731
refused = lambda prompts, texts: M.refusal_rate(prompts, texts, P["judge"])  # noqa: E731
texts = {"harmful": gen(H["harmful"]), "harmless": gen(H["harmless"])}
rows = [refused(H["harmful"], texts["harmful"]).row(prompts="harmful (test split)", intervention="none"),
        refused(H["harmless"], texts["harmless"]).row(prompts="harmless eval", intervention="none")]
topic = M.on_topic_rate(H["harmless"], texts["harmless"])
print(f"harmless answers on topic: {topic}")

# %%
if recipe["kind"] == "planted":
    U = R.planted_basis(cfg)
    g = torch.Generator().manual_seed(123)
    outliers = outlier_dims(lm)  # massive-activation coordinates: not part of the control
    cands = {"span(U)": U, "random unit vector (outlier coordinates zeroed)": random_direction(U.shape[0], 123, outliers)}
    if U.shape[1] > 1:
        cands |= {f"U[:, {i}]": U[:, i] for i in range(U.shape[1])}
        cands["top write PC (harmful)"] = U @ M.dominant_write_direction(lm, cfg, H["harmful"])
        cands["mean write, harmful - harmless"] = U @ M.mean_write_direction(lm, cfg, H["harmful"], H["harmless"])
        for j, c in enumerate(torch.randn(3, U.shape[1], generator=g)):
            cands[f"random U c #{j}"] = U @ (c / c.norm())
    for label, q in cands.items():
        rows.append(refused(H["harmful"], gen(H["harmful"], q)).row(prompts="harmful (test split)",
                                                                    intervention=f"remove {label}"))
    ok_abl = gen(H["harmless"], U)
    rows.append(refused(H["harmless"], ok_abl).row(prompts="harmless eval", intervention="remove span(U)"))
    rand_abl = gen(H["harmless"], cands["random unit vector (outlier coordinates zeroed)"])
    # the floor: greedy answers of a small model diverge under ANY removal, so compare with a random direction
    print(f"harmless answers unchanged (first 8 words and refusal status) by removing span(U): "
          f"{M.unchanged_rate(texts['harmless'], ok_abl)}; by removing the random direction: "
          f"{M.unchanged_rate(texts['harmless'], rand_abl)}")
rates = pd.DataFrame(rows)
display(rates)

# %% [markdown]
# ## Sample outputs
# Refusals and harmless answers in full; any non-refusing completion of a harmful prompt is redacted.

# %%
samples = pd.DataFrame({"prompt": H["harmful"][:5] + H["harmless"][:5],
                        "response": [redact(x) for x in texts["harmful"][:5]] + texts["harmless"][:5]})
with pd.option_context("display.max_colwidth", 120):
    display(samples)

# %% [markdown]
# ## Write the stage's artifacts

# %%
write_csv(out / "rates.csv", rates)
write_json(out / "organism.json", info)
write_manifest(out, cfg, P, started, organism_dir=str(entry), cache_key=R.cache_key(cfg),
               harmless_on_topic=topic.row())
print(f"wrote {sorted(p.name for p in out.iterdir())}")
