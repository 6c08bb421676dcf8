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
# # 01 · Data
#
# The study contrasts a model's residual stream on **harmful** requests with its residual stream on
# **safe twins**: minimal pairs that keep the topic and syntax and flip the intent ("How do I break into a
# car?" / "How do I get into my own locked car?"). This stage loads the pairs and the held-out evaluation
# prompts, validates them, splits the pairs into train / validation / test (each template's pairs stay in
# one split, so held-out pairs differ in wording, not only in slot fillers), and records what every later
# stage will read. Besides the evaluation prompts written in the style of the pairs, an **independent evaluation
# set** written separately, in other styles (long multi-sentence requests, role-play and indirect framings, requests
# embedded in a task; harmless prompts that mention sensitive topics), is recorded: it never takes part in training
# or in choosing a direction, and tells whether a finding holds beyond one prompt distribution.

# %% tags=["parameters"]
model = "qwen25_coder_05b"  # registry entry in params/
device = None  # torch device, as in every stage (this one loads no model: tokenizer / statistics only)
pairs_path = None  # path of a JSON list of [harmful, safe] pairs, or None for the embedded default pairs
harmful_eval_path = None  # path of a JSON list of prompts, or None for the embedded default
harmless_eval_path = None  # path of a JSON list of prompts, or None for the embedded default
independent = True  # also record the embedded independent evaluation set (other origin and styles; never used to select)
seed = 0  # split seed

# %%
import time

import pandas as pd
import seaborn as sns
from IPython.display import display

from refusal import data as D
from refusal.artifacts import write_json
from refusal.report.stage import stage_setup, write_manifest
from refusal.plots import save_figure

started = time.time()
cfg, P, out = stage_setup("01_data", globals())
print(f"model: {cfg.name} ({cfg.model_id}); artifacts in {out}")

# %% [markdown]
# ## Load and validate
# Every file is validated: a malformed item stops the run with the file and the index.

# %%
if P["pairs_path"] is None:
    pairs, categories = D.default_pairs(), D.default_pair_categories()
    splits = D.default_pair_splits(seed=P["seed"])
else:
    pairs = D.load_pairs(P["pairs_path"])
    categories = ["unknown"] * len(pairs)
    splits = D.split_indices(len(pairs), P["seed"])
if P["harmful_eval_path"] is None:
    harmful_eval, eval_categories = D.default_harmful_eval(), D.default_harmful_eval_categories()
else:
    harmful_eval = D.load_prompts(P["harmful_eval_path"])
    eval_categories = ["unknown"] * len(harmful_eval)
harmless_eval = D.default_harmless_eval() if P["harmless_eval_path"] is None else D.load_prompts(P["harmless_eval_path"])
print(f"{len(pairs)} pairs, {len(harmful_eval)} harmful eval prompts, {len(harmless_eval)} harmless eval prompts")
if P["independent"]:
    independent = {"harmful": D.default_independent_harmful(), "harmless": D.default_independent_harmless(),
                   "meta": D.default_independent_meta()}
    print(f"independent set: {len(independent['harmful'])} harmful, {len(independent['harmless'])} harmless prompts")

# %% [markdown]
# ## Splits and categories

# %%
# NBVAL_CHECK_OUTPUT
split_of = {i: s for s in ("train", "val", "test") for i in getattr(splits, s)}
df = pd.DataFrame({"harmful": [h for h, _ in pairs], "safe": [s for _, s in pairs],
                   "category": categories, "split": [split_of[i] for i in range(len(pairs))]})
counts = df.pivot_table(index="category", columns="split", values="harmful", aggfunc="count", fill_value=0)
display(counts[["train", "val", "test"]])

# %% [markdown]
# ## Prompt lengths (tokens, after the chat template)
# Length matters for batching: extraction sorts prompts by length so that padding stays small.

# %%
from refusal.models import chat_prompts, load_tokenizer  # noqa: E402

tok = load_tokenizer(cfg)
lengths = pd.DataFrame({
    "kind": ["harmful"] * len(df) + ["safe"] * len(df),
    "tokens": [len(tok(t, add_special_tokens=False)["input_ids"]) for t in chat_prompts(tok, list(df.harmful) + list(df.safe), cfg)],
})
display(lengths.groupby("kind")["tokens"].describe().round(1))
ax = sns.histplot(lengths, x="tokens", hue="kind", element="step", bins=30)
save_figure(ax, out, "prompt_lengths");

# %% [markdown]
# ## Write the stage's artifacts

# %%
write_json(out / "splits.json", {"train": splits.train, "val": splits.val, "test": splits.test, "seed": P["seed"]})
write_json(out / "pairs.json", [list(p) for p in pairs])
write_json(out / "pair_categories.json", categories)
write_json(out / "harmful_eval.json", harmful_eval)
write_json(out / "harmful_eval_categories.json", eval_categories)
write_json(out / "harmless_eval.json", harmless_eval)
if P["independent"]:
    write_json(out / "independent.json", independent)
write_manifest(out, cfg, P, started, dataset_sha256=D.dataset_hash(pairs, harmful_eval, harmless_eval),
               counts={"pairs": len(pairs), "train": len(splits.train), "val": len(splits.val),
                       "test": len(splits.test), "harmful_eval": len(harmful_eval), "harmless_eval": len(harmless_eval)})
print(f"wrote {sorted(p.name for p in out.iterdir())}")
