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
# # 07 · Comparison across models
#
# The cross-model answer: for every model that has results in `runs/`, the selected direction, its held-out
# separability, what removing it does (with 95% Wilson intervals and n), the compliance-vs-rank curve, the
# effective rank and the verdict, and the capability cost of the weight edit. Every number is read from the
# stages' artifacts. The original study's published figures for its seven models are shown beside ours as a
# reference: they are **published numbers, not re-measured here**.

# %% tags=["parameters"]
models = None  # comma-separated registry names; None = every model with results in runs/

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display

from refusal.artifacts import provenance, read_json, sha256_file, write_json
from refusal.report.findings import comparison_dir, export_findings, findings_table, models_with_results, published_table
from refusal.paths import runs_dir
from refusal.plots import save_figure

have_results = models_with_results()
names = [m for m in models.split(",") if m in have_results] if models else have_results
table = findings_table(names)
out = comparison_dir()  # runs/_compare/07_compare/: this stage's artifacts
print(f"{len(names)} model(s) with results: {', '.join(names) or '(none: run make report)'}")

# %% [markdown]
# ## Findings, one row per model

# %%
# NBVAL_CHECK_OUTPUT
cols = ["model", "layer", "position", "d_test", "baseline_refusal", "baseline_refusal_low", "baseline_refusal_high",
        "ablated_refusal", "ablated_refusal_low", "ablated_refusal_high", "random_refusal", "harmless_refusal",
        "ablated_harmless_refusal", "independent_baseline_refusal", "independent_ablated_refusal", "edited_refusal",
        "ablated_compliance", "ablated_coherence", "k1_compliance", "max_compliance", "gain_over_chance",
        "effective_rank", "verdict", "benchmark_delta", "harmless_first_token_kl", "n_eval", "n_unscored", "judge"]
with pd.option_context("display.max_columns", None):
    display(table[[c for c in cols if c in table]].round(3) if not table.empty else table)

# %% [markdown]
# Every column of the table, for reuse: [findings.csv](findings.csv), [findings.json](findings.json) (written to
# `runs/_compare/07_compare/`; the site publishes copies next to this page).

# %%
exported = export_findings(table, out)
write_json(out / "manifest.json", provenance(models=names, artifacts={p.name: sha256_file(p) for p in exported.values()}))
print("written:", ", ".join(p.name for p in exported.values()))

# %% [markdown]
# ## Compliance by rank k of the removed subspace

# %%
curves = []
for m in names:
    p = runs_dir() / m / "04_ablate" / "rank_curve.csv"
    if p.exists():
        curves.append(pd.read_csv(p).assign(model=m))
if curves:
    curve = pd.concat(curves)
    g = sns.relplot(curve, x="k", y="compliance", hue="basis", col="model", kind="line", marker="o", height=3,
                    col_wrap=min(3, len(names)))
    g.set(ylim=(0, 1.05))
    save_figure(g, out, "rank_curves")
    display(curve.pivot_table(index=["model", "basis"], columns="k", values="compliance").round(2))

# %% [markdown]
# ## Cross-layer cosine structure, side by side
# Cosine between the per-layer directions at each model's selected position.

# %%
have = [m for m in names if (runs_dir() / m / "03_separability" / "cross_layer.json").exists()]
if have:
    fig, axes = plt.subplots(1, len(have), figsize=(4.2 * len(have), 3.6), squeeze=False)
    for ax, m in zip(axes[0], have):
        cl = read_json(runs_dir() / m / "03_separability" / "cross_layer.json")
        summary = read_json(runs_dir() / m / "04_ablate" / "summary.json") if (runs_dir() / m / "04_ablate" / "summary.json").exists() else None
        pos = summary["selected"]["position"] if summary else cl["positions"][-1]
        mat = np.array(cl["layer_cosine"][cl["positions"].index(pos)], dtype=float)  # [L, L], NaN where invalid
        sns.heatmap(mat, ax=ax, vmin=-1, vmax=1, cmap="RdBu_r", square=True, cbar=False)
        ax.set_title(f"{m} (position {pos})", fontsize=9)
    plt.tight_layout()
    save_figure(fig, out, "layer_cosine")

# %% [markdown]
# ## The original study's published figures (reference, not re-measured)

# %%
display(published_table())

# %% [markdown]
# ## Side by side with the tools people use instead
# This project's weight edit against two peers on the same model, the same training and validation prompts, the same
# held-out evaluation prompts, the same greedy generation settings and the same refusal detector (the offline judge):
# **heretic** (PyPI `heretic-llm`: its own directions, its own optimisation of refusals against first-token KL, its own
# choice of trial) and **single-layer abliteration** (FailSpy / mlabonne: the last token's difference of means at the
# one layer that removes the most refusals on the validation prompts), with the unedited model as the baseline. Produced
# by `bench/peers/compare.py` (a benchmark, not a stage of the report); every number below is read from its
# `results.json`, where the settings (trial budget, sample sizes) are recorded: this machine's run
# (`runs/_peers/<model>/`) where there is one, else the measured run kept in the repository (`bench/peers/results/`).

# %%
from pathlib import Path  # noqa: E402

from IPython.display import Markdown  # noqa: E402

from refusal.report.outputs import rel  # noqa: E402
from refusal.report.peers import (direction_note, examples_table, heretic_version, how_to_produce,  # noqa: E402
                                  peer_models, peers_table, read_results, scatter, verdict)

peer_names = [m for m in peer_models() if not models or m in models.split(",")]
if not peer_names:
    display(Markdown(how_to_produce()))
for m in peer_names:
    res = read_results(m)
    peers = peers_table(res, res["source"])
    st = res["settings"]
    display(Markdown(f"### `{m}`\n\nMeasured {res.get('measured_at') or '(date not recorded)'} at commit "
                     f"{str(res.get('git_commit'))[:7]}, heretic-llm {heretic_version(res) or '?'}; read from "
                     f"`{rel(Path(res['source']))}`.\n\n"
                     f"{res['data']}; evaluation completions of {st['max_new_tokens']} greedy tokens; "
                     f"heretic: {st['heretic_trials']} trials ({st['heretic_startup_trials']} random), choices by "
                     f"{st['choice_tokens']}-token generations; whole comparison "
                     f"{(res.get('total_seconds') or float('nan')) / 60:.0f} min on {st['threads']} threads "
                     f"({st['device']})."))
    shown_cols = ["label", "harmful_refusal", "harmful_low", "harmful_high", "n_harmful", "harmless_refusal",
                  "n_harmless", "first_token_kl", "mc_accuracy", "mc_stderr", "build_seconds", "build_cpu_seconds",
                  "peak_rss_gb", "chose"]
    display(peers[shown_cols].round(3))
    ax = scatter(peers)
    save_figure(ax, out, f"peers_{m}")
    plt.show()
    display(Markdown("**Who wins on what.** " + verdict(peers) + " " + direction_note(res)))
    display(examples_table(res))
