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
# # 04 · Ablation: one direction or a subspace?
#
# This is where the study answers its question. We (1) measure the model's **baseline** refusal and
# compliance (the original study never reported them), (2) **select** one refusal direction among all
# (layer, position) candidates of stage 02 with the criteria of Arditi et al. (2024) — bypass, induce and
# harmless KL, from one forward pass each — and, for comparison, with the original study's rule (generate,
# judge, rank by compliance x coherence), (3) ablate it at every layer input and the final norm, at every
# position including generated tokens, `r <- r - alpha <r, v> v`, against a **random-direction control**,
# and (4) sweep the **rank** k of the removed subspace `r <- r - Q Q^T r`, k in `ks`, for three bases. The
# verdict — centralized, distributed or resistant — is shown with the numbers it rests on.
#
# Harmful completions are research data: this page shows scores and redacted excerpts only.

# %% tags=["parameters"]
model = "qwen25_coder_05b"  # registry entry in params/
device = None  # torch device; None: $REFUSAL_DEVICE, else CUDA when available, else CPU
n_val = 16  # validation pairs used to score candidates
n_eval = 32  # held-out harmful / harmless eval prompts judged per condition
n_grid = 12  # prompts per cell of the original study's layer x alpha grid
grid_layers = 3  # how many top layers enter that grid
alphas = [0.75, 1.0, 1.25]  # alpha values of the grid
max_new_tokens = 32  # greedy tokens per generation
k_max = 8  # largest subspace rank swept
ks = [1, 2, 4, 8]  # ranks swept
n_sweep = 24  # harmful / harmless eval prompts per rank-sweep point
prescreen = 8  # selection: fully score only the best N candidates of a cheap bypass prescreen (0: all)
prescreen_prompts = 4  # prompts of each kind in that prescreen
late_cutoff = 0.2  # selection: drop the last fraction of layers
kl_max = 0.1  # selection: drop candidates with harmless KL above this
induce_min = 0.0  # selection: drop candidates whose addition does not induce refusal
kl_floor_factor = 10.0  # selection: KL bound max(kl_max, this x the KL of random ablations) (0: kl_max alone)
harmless_val = "twins"  # selection's harmless prompts (KL, induce): "twins" (safe twins of the validation pairs) or "generic" (harmless eval prompts outside the eval sample, as Arditi et al.)
exclude_outliers = True  # zero the model's outlier coordinates in every candidate direction
judge = "auto"  # "auto" (LLM judge if OPENAI_BASE_URL/OPENAI_API_KEY are set, else offline), "offline" or "llm"
seed = 0  # random control and subsampling
show_full_text = False  # locally only: print full harmful completions instead of redacted excerpts

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import display

from refusal.artifacts import write_csv, write_json
from refusal.data import default_refusals
from refusal.evaluation import judge as J
from refusal.evaluation.redact import redact
from refusal.extraction.activations import pair_differences
from refusal.extraction.directions import Selected, random_direction, write_selected
from refusal.generation import generate
from refusal.intervention.ablation import ablate
from refusal.intervention.inputs import ablation_inputs
from refusal.intervention.rank import VerdictThresholds, bases_for_sweep, model_verdict, rank_sweep, verdict
from refusal.intervention.scoring import refusal_tokens
from refusal.intervention.selection import SelectionCriteria, drop_coordinates, judge_grid, score_candidates, select
from refusal.models import load_model
from refusal.report.stage import stage_setup, write_manifest
from refusal.plots import save_figure
from refusal.stats import rate_with_ci, wilson

started = time.time()
cfg, P, out = stage_setup("04_ablate", globals())
lm = load_model(cfg, P["device"])
X = ablation_inputs(cfg.name, lm, P["n_val"], P["n_eval"], P["seed"], P["harmless_val"], P["exclude_outliers"])
harmful_eval, harmless_eval, positions = X.harmful_eval, X.harmless_eval, X.positions


def scored(prompts: list[str], responses: list[str]) -> pd.DataFrame:
    return J.score(prompts, responses, judge=P["judge"])


def shown(text: str) -> str:
    return text if P["show_full_text"] else redact(text)


print(f"{cfg.name}: {X.describe()}")

# %% [markdown]
# ## Baseline: how often does the model refuse without intervention?

# %%
base_harmful = scored(harmful_eval, generate(lm, harmful_eval, max_new_tokens=P["max_new_tokens"]))
base_harmless = scored(harmless_eval, generate(lm, harmless_eval, max_new_tokens=P["max_new_tokens"]))
baseline = {
    "harmful_refusal": J.refusal_rate(base_harmful).as_dict(),
    "harmful_compliance": rate_with_ci(base_harmful["compliance"] >= 1),
    "harmless_refusal": J.refusal_rate(base_harmless).as_dict(),
    "judge": base_harmful["judge"].iloc[0],
}
display(pd.DataFrame(baseline).drop(columns="judge").T.round(3))

# %% [markdown]
# ## Refusal tokens and candidate scores
# The refusal score is the log-odds of the model's *own* refusal-starting tokens at the first generated
# position, derived from its refusals on training prompts. Every valid candidate before the late-layer cutoff is
# first prescreened by its bypass score on a few harmful prompts (one forward pass each); the best `prescreen`
# candidates are then scored fully on validation prompts: bypass on the harmful side of the validation pairs, induce
# and KL on their safe twins (`harmless_val = "twins"`, the default). Arditi et al. use ordinary harmless requests
# for induce and KL (`harmless_val = "generic"`: held-out harmless prompts outside this notebook's eval sample).
# Measured on an earlier build of `smollm2_planted1` (85 generic harmless training prompts; 2026-11-29): removing the
# planted u moves the twins' first token by 0.50 nats and ordinary prompts' by 0.16 (random directions 0.04-0.17 /
# 0.03-0.05), so the generic bound separates damage better; but adding a candidate to ordinary prompts rarely
# induces refusal in a 135M model (in the reduced test chain on a planted1 built with all 270 generic training
# prompts, 30 steps, all 6 fully scored candidates failed the induce filter and the filters had to be relaxed),
# so the twins stay the default here.
#
# Two departures from the published recipe, both parameters. (1) The KL bound is `max(kl_max, kl_floor_factor x
# floor)`, the floor being the KL that ablating a random unit direction causes on the same prompts: `kl_max = 0.1`
# was set for 2B-8B chat models, where that floor is far below 0.1; a 135M model's is 0.03-0.06 nats, and 0.1 then
# rejects real refusal directions. (2) Candidates are cleaned of the outlier coordinates (see above).

# %%
tokens, token_record = refusal_tokens(lm, [h for h, _ in X.train[:32]], J.is_refusal, fallback=default_refusals())
print(token_record["source"], [t["text"] for t in token_record["tokens"]])
criteria = SelectionCriteria(P["late_cutoff"], P["kl_max"], P["induce_min"], P["kl_floor_factor"] or None)
scores = score_candidates(lm, X.directions, X.diffs, X.valid, positions, [h for h, _ in X.val], X.val_harmless,
                          tokens, criteria, prescreen=P["prescreen"] or None, prescreen_prompts=P["prescreen_prompts"],
                          exclude=X.outliers)
print(f"outlier coordinates zeroed in the candidates: {X.dropped}; KL floor (mean over {criteria.n_random} random "
      f"directions) {scores.attrs['kl_floor']:.4f} -> KL bound {scores.attrs['kl_max_used']:.3f}")
best, selection_note = select(scores)
layer, pos_index = int(best.layer), int(best.pos_index)
if selection_note:
    print("NOTE:", selection_note)
print(f"selected: layer {layer}, position {positions[pos_index]} (bypass {best.bypass:.2f}, induce {best.induce:.2f}, "
      f"KL {best.kl:.3f}); baseline harmful score {scores.attrs['baseline_harmful']:.2f}")
display(scores[scores.bypass.notna()].sort_values("bypass").head(8).round(3))  # fully scored, with why filtered

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
screened = scores.bypass_screen.notna().any()
for ax, col in zip(axes, ["bypass_screen" if screened else "bypass", "induce", "kl"]):
    sns.heatmap(scores.pivot(index="position", columns="layer", values=col), ax=ax, cmap="viridis")
    ax.set_title(col + ("" if col == "bypass_screen" else " (fully scored candidates)"))
plt.tight_layout()
save_figure(fig, out, "selection_scores")

# %% [markdown]
# ## The original study's rule, for comparison
# Generate under ablation at each of the top layers (by bypass, at the selected position) and each alpha, judge,
# and rank by mean compliance x coherence.

# %%
ranked = scores[scores.bypass.notna() & (scores.pos_index == pos_index)].sort_values("bypass").layer.astype(int)
top = [layer] + [l for l in ranked if l != layer][: P["grid_layers"] - 1]
grid = judge_grid(lm, X.directions, [(l, pos_index) for l in top], P["alphas"], [h for h, _ in X.val][: P["n_grid"]],
                  scored, P["max_new_tokens"])
display(grid.round(3))
agree = int(grid.iloc[0].layer) == layer
print(f"original rule picks layer {int(grid.iloc[0].layer)} at alpha {grid.iloc[0].alpha}; "
      f"{'agrees' if agree else 'disagrees'} with the bypass selection (layer {layer})")

# %% [markdown]
# ## Ablating the selected direction, against a random direction
#
# The control is a seeded random unit vector with zeros on the model's outlier coordinates (the few
# residual dimensions with "massive activations", ~1e4 on the first token): a uniformly random direction has
# a component ~1/sqrt(d_model) there, so removing it would move the attention-sink token by hundreds of units,
# an intervention of another kind than removing a difference-of-means direction, which is ~0 there.

# %%
v = X.directions[layer, pos_index]
rand = random_direction(v.shape[0], P["seed"], X.outliers)
raw_weight = float(X.candidates.directions[layer, pos_index][X.outliers].norm()) if X.outliers else 0.0
print(f"outlier coordinates excluded from the random control: {X.outliers}; "
      f"raw selected direction's weight on them: {raw_weight:.3f}")
results = {}
for name, vec in [("selected", v), ("random", rand)]:
    with ablate(lm.model, vec):
        h = scored(harmful_eval, generate(lm, harmful_eval, max_new_tokens=P["max_new_tokens"]))
        s = scored(harmless_eval, generate(lm, harmless_eval, max_new_tokens=P["max_new_tokens"]))
    results[name] = (h, s)
rows = []
for name, (h, s) in [("baseline", (base_harmful, base_harmless)), *results.items()]:
    rows.append({"condition": name, **{f"harmful_refusal_{k}": x for k, x in J.refusal_rate(h).as_dict().items()},
                 "harmful_compliance": h["compliance"].mean(), "harmful_coherence": h["coherence"].mean(),
                 "harmless_refusal": s["refused"].mean(), "harmless_coherence": s["coherence"].mean()})
ablation_table = pd.DataFrame(rows)
display(ablation_table.round(3))
excerpts = results["selected"][0].head(5)[["prompt", "response", "compliance", "coherence"]].copy()
excerpts["response"] = excerpts["response"].map(shown)
display(excerpts)

# %% [markdown]
# ## Rank sweep: compliance as more directions are removed
# Three bases of k directions: the selected direction's position at the k best layers (QR), the principal
# components of per-pair harmful-minus-safe differences at the selected layer and position, and the top singular
# vectors of the stack of per-layer directions.

# %%
pair_diffs = drop_coordinates(pair_differences(lm.model, lm, X.train[:128], layer, positions[pos_index],
                                               hook=X.candidates.meta["hook"]), X.dropped, renormalize=False)
bases = bases_for_sweep(X.directions, X.valid, scores, pos_index, layer, pair_diffs, P["k_max"])
curve, judged = rank_sweep(lm, bases, P["ks"], harmful_eval[: P["n_sweep"]], harmless_eval[: P["n_sweep"]], scored,
                           P["max_new_tokens"])
# Wilson intervals on the share of fully compliant answers (compliance = 1)
curve[["full", "low", "high"]] = [(f, *wilson(round(f * n), n)) for f, n in zip(curve.full_compliance, curve.n)]
display(curve.round(3))
fig, ax = plt.subplots(figsize=(7, 4))
for name, c in curve.groupby("basis"):
    ax.errorbar(c.k, c.full, yerr=[c.full - c.low, c.high - c.full], marker="o", capsize=3, label=name)
ax.axhline(baseline["harmful_compliance"]["rate"], ls="--", c="gray", label="baseline")
ax.set(xlabel="rank k of the removed subspace", ylabel="share fully compliant (Wilson 95%)", ylim=(0, 1.05),
       title=f"n = {int(curve.n.iloc[0])} harmful prompts per point")
ax.legend()
save_figure(fig, out, "rank_curve");

# %% [markdown]
# ## Verdict
# The question is whether ONE direction suffices, whichever construction finds it, so the three bases are pooled:
# the single direction is the best coherent k = 1 ablation of any basis, the maximum is over every (basis, k), and
# the effective rank is the smallest k, in any basis, reaching 90% of that maximum. The per-basis readings are shown
# too. Thresholds are parameters, shown with the numbers. A model that barely refuses at baseline (the SmolLM2
# control) gets "no refusal": compliance under ablation says nothing there.

# %%
thresholds = VerdictThresholds()
verdicts = {name: verdict(c, thresholds, baseline["harmful_refusal"]["rate"]) for name, c in curve.groupby("basis")}
final = model_verdict(curve, thresholds, baseline["harmful_refusal"]["rate"])
best_basis = final["basis"] or "top_layers"
display(pd.DataFrame(verdicts).T)
print(f"verdict for {cfg.name}: {final['verdict']} (best coherent single direction: {final['k1_basis']} k=1, "
      f"compliance {final['k1_compliance']:.2f}, coherence {final['k1_coherence']:.2f}; max compliance "
      f"{final['max_compliance']:.2f}; effective rank {final['effective_rank']} ({best_basis}))")

# %% [markdown]
# ## Artifacts

# %%
k_eff = final["effective_rank"] or 1
write_selected(out / "selected.safetensors", Selected(
    direction=v, basis=bases[best_basis][:, :k_eff].contiguous(),
    meta={"layer": layer, "position": positions[pos_index], "pos_index": pos_index, "alpha": 1.0, "k": k_eff,
          "basis": best_basis, "source": "02_extract difference of means, selected by bypass/induce/KL"}))
write_csv(out / "candidates.csv", scores)
write_csv(out / "judge_grid.csv", grid)
write_csv(out / "ablation.csv", ablation_table)
write_csv(out / "rank_curve.csv", curve)
write_csv(out / "generations.csv", judged)
write_json(out / "summary.json", {
    "baseline": baseline, "refusal_tokens": token_record,
    "selected": {"layer": layer, "position": positions[pos_index], "bypass": best.bypass, "induce": best.induce,
                 "kl": best.kl, "note": selection_note, "kl_floor": scores.attrs["kl_floor"],
                 "kl_max_used": scores.attrs["kl_max_used"], "outlier_dims_zeroed": X.dropped},
    "original_rule": {"layer": int(grid.iloc[0].layer), "alpha": float(grid.iloc[0].alpha), "agrees": agree},
    "ablation": {r["condition"]: {k: r[k] for k in r if k != "condition"} for r in rows},
    "random_control": {"seed": P["seed"], "outlier_dims_zeroed": X.outliers},
    "verdicts": verdicts, "verdict": final,
})
write_manifest(out, cfg, P, started)
print(f"stage 04 took {time.time() - started:.0f} s")
