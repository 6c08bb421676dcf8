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
# judge, rank by compliance x coherence), (3) ablate it at every layer input, pre-MLP norm input and the final norm,
# at every position including generated tokens, `r <- r - alpha <r, v> v`, against **random directions matched**
# to it, on the evaluation prompts and on an **independent** evaluation set of other origin and styles, with the
# refusals it adds to harmless prompts, refusal by harm category and two **dose-response** curves, and (4) sweep the
# **rank** k of the removed subspace `r <- r - Q Q^T r`, k in `ks`, for three bases and k random directions as
# chance. The verdict — centralized, distributed or resistant — is shown with the numbers it rests on.
#
# Harmful completions are research data: this page shows scores and redacted excerpts only.

# %% tags=["parameters"]
model = "qwen25_coder_05b"  # registry entry in params/
device = None  # torch device; None: $REFUSAL_DEVICE, else CUDA when available, else CPU
n_val = 16  # validation pairs used to score candidates
n_eval = 100  # held-out harmful / harmless eval prompts judged per headline condition
n_independent = 60  # prompts per side of the independent evaluation set (0: all)
n_random = 5  # random directions of the single-direction control (the prompts are dealt between them)
n_grid = 8  # prompts per cell of the original study's layer x alpha grid
grid_layers = 2  # how many top layers enter that grid
alphas = [0.75, 1.0, 1.25]  # alpha values of the grid
max_new_tokens = 32  # greedy tokens per generation
k_max = 8  # largest subspace rank swept
ks = [1, 2, 4, 8]  # ranks swept
n_sweep = 24  # harmful / harmless eval prompts per rank-sweep point
dose_alphas = [0.25, 0.5, 0.75, 1.25]  # removal strengths of the dose-response curve (alpha = 1 is the headline condition)
induce_coeffs = [0.0, 0.5, 1.0, 2.0]  # strengths of the direction added to harmless prompts (x the raw mean difference)
n_dose = 24  # prompts per point of the two dose-response curves
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

import torch

from refusal.artifacts import write_csv, write_json, write_tensors
from refusal.data import default_refusals
from refusal.evaluation import judge as J
from refusal.evaluation.redact import redact
from refusal.extraction.activations import collect, pair_differences
from refusal.extraction.directions import Selected, matched_random_directions, random_basis, write_selected
from refusal.intervention.ablation import ablate
from refusal.intervention.conditions import (alpha_curve, condition_rates, direction_range, flips, induction_curve,
                                             rates_by, rows_on, run_condition)
from refusal.intervention.inputs import ablation_inputs
from refusal.intervention.rank import CONTROL, VerdictThresholds, bases_for_sweep, model_verdict, rank_sweep, verdict
from refusal.intervention.scoring import refusal_tokens
from refusal.intervention.selection import SelectionCriteria, drop_coordinates, judge_grid, score_candidates, select
from refusal.models import load_model
from refusal.plots import save_figure
from refusal.report.stage import stage_setup, write_manifest

started = time.time()
cfg, P, out = stage_setup("04_ablate", globals())
lm = load_model(cfg, P["device"])
X = ablation_inputs(cfg.name, lm, P["n_val"], P["n_eval"], P["seed"], P["harmless_val"], P["exclude_outliers"],
                    P["n_independent"])
harmful_eval, harmless_eval, positions = X.harmful_eval, X.harmless_eval, X.positions


def scored(prompts: list[str], responses: list[str]) -> pd.DataFrame:
    return J.score(prompts, responses, judge=P["judge"], progress=False)


def judge_name(table: pd.DataFrame) -> str:
    return "/".join(sorted(table["judge"].unique()))


def shown(text: str) -> str:
    return text if P["show_full_text"] else redact(text)


print(f"{cfg.name}: {X.describe()}")

# %% [markdown]
# ## Baseline: how often does the model refuse without intervention?
# Greedy completions of the held-out evaluation prompts (`n_eval` per side, drawn once) and of the independent
# evaluation set, judged. Every rate below is over the items the judge scored; unscored items are counted, never
# treated as refusals or as compliance.

# %%
gen = P["max_new_tokens"]
record = [run_condition(lm, "baseline", [None], X.sets, scored, gen)]
display(condition_rates(record[0]).round(3))

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
# induces refusal in a 135M model, so the twins stay the default here.
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
# and rank by mean compliance x coherence (on validation prompts).

# %%
ranked = scores[scores.bypass.notna() & (scores.pos_index == pos_index)].sort_values("bypass").layer.astype(int)
top = [layer] + [l for l in ranked if l != layer][: P["grid_layers"] - 1]
grid = judge_grid(lm, X.directions, [(l, pos_index) for l in top], P["alphas"], [h for h, _ in X.val][: P["n_grid"]],
                  scored, gen)
display(grid.round(3))
agree = int(grid.iloc[0].layer) == layer
print(f"original rule picks layer {int(grid.iloc[0].layer)} at alpha {grid.iloc[0].alpha}; "
      f"{'agrees' if agree else 'disagrees'} with the bypass selection (layer {layer})")

# %% [markdown]
# ## Ablating the selected direction, against random directions
#
# The headline conditions: the selected direction removed at every layer input, every pre-MLP norm input and the
# final norm, at every position including generated tokens; and the control, `n_random` seeded random directions
# with zeros on the model's outlier coordinates, **matched** to the selected direction: each removes as much of the
# residual stream of harmless prompts at the selected layer and position (RMS projection) as the selected direction
# does. A uniformly random unit vector removes far less (the residual's variance lives in few directions), which
# would make a weak control. The prompts are dealt between the random directions: the pooled rate has the full n,
# and each direction's own rate gives the range.

# %%
v = X.directions[layer, pos_index]
harmless_acts = collect(lm.model, lm, X.val_harmless + harmless_eval[: P["n_sweep"]], [positions[pos_index]],
                        layers=[layer], keep=torch.float32, progress=False).acts[:, 0, 0]  # [n, d_model]
controls, control_record = matched_random_directions(harmless_acts, v, P["n_random"], P["seed"], X.outliers)
print(f"RMS projection on harmless prompts: selected {control_record['target_rms_projection']:.3f}; random controls "
      f"{', '.join(f'{x:.3f}' for x in control_record['rms_projection'])} (mixing lam {control_record['lam']:.2f}); "
      f"outlier coordinates excluded: {X.outliers}")
record.append(run_condition(lm, "selected", [lambda: ablate(lm.model, v)], X.sets, scored, gen))
record.append(run_condition(lm, "random", [lambda r=r: ablate(lm.model, r) for r in controls], X.sets, scored, gen))
generations = pd.concat(record, ignore_index=True)
rates = condition_rates(generations)
display(rates.round(3))
random_range = direction_range(generations[generations.condition == "random"])
display(random_range.round(3))
excerpts = generations[(generations.condition == "selected") & (generations.side == "harmful")].head(5)
display(excerpts[["set", "prompt", "response", "compliance", "coherence"]].assign(response=excerpts.response.map(shown)))

# %% [markdown]
# ### Harmless prompts refused under the ablation
# Removing the direction can also *add* refusals of harmless prompts. Is that the model, or the detector? Below are
# the harmless prompts that were answered at baseline and are refused under the ablation, with what the judge read
# as a refusal (redacted excerpts): a phrase the detector misreads would show here as an answer that is not a refusal.

# %%
flipped = pd.concat([flips(generations, "baseline", "selected", s.name).assign(set=s.name) for s in X.sets])
print(f"harmless prompts newly refused under the selected ablation: "
      f"{', '.join(f'{s.name} {int((flipped.set == s.name).sum())} of {len(s.harmless)}' for s in X.sets)}")
display(flipped[["set", "prompt", "response_after", "reason"]].assign(response_after=flipped.response_after.map(redact)))

# %% [markdown]
# ### Refusal by harm category
# Baseline and ablated refusal per harm category of the evaluation prompts (Wilson 95% intervals; categories hold
# few prompts each, so read the intervals).

# %%
by_category = rates_by(generations[(generations.side == "harmful") & (generations.condition != "random")], "category")
display(by_category[["condition", "set", "category", "n", "refusal", "refusal_low", "refusal_high"]].round(3))
g = sns.catplot(by_category, x="refusal", y="category", hue="condition", col="set", kind="point", linestyle="none",
                dodge=0.4, height=4, aspect=1.1, errorbar=None)
for ax, (s, part) in zip(g.axes.flat, by_category.groupby("set", sort=False)):
    for i, cond in enumerate(part.condition.unique()):
        c = part[part.condition == cond]
        ax.errorbar(c.refusal, c.category, xerr=[c.refusal - c.refusal_low, c.refusal_high - c.refusal], fmt="none",
                    ecolor=sns.color_palette()[i], alpha=0.5)
save_figure(g, out, "refusal_by_category")

# %% [markdown]
# ## Dose-response: how much removal, how much addition?
# Refusal of harmful prompts as the removal strength `alpha` grows (`r <- r - alpha <r, v> v`; alpha = 1 is the
# headline condition), and refusal *induced* on harmless prompts by adding the raw mean difference at the selected
# layer with a coefficient (0 = none), both judged on generations.

# %%
dose_prompts = harmful_eval[: P["n_dose"]]
# alpha 0 and coefficient 0 are the baseline, alpha 1 the headline ablation: their rows are reused, not regenerated
alpha = alpha_curve(lm, v, sorted(set(P["dose_alphas"]) | {0.0, 1.0}), dose_prompts, scored, gen,
                    known={0.0: rows_on(generations, "baseline", "eval", "harmful", dose_prompts),
                           1.0: rows_on(generations, "selected", "eval", "harmful", dose_prompts)})
induce = induction_curve(lm, X.diffs[layer, pos_index], layer, P["induce_coeffs"], harmless_eval[: P["n_dose"]],
                         scored, gen,
                         known={0.0: rows_on(generations, "baseline", "eval", "harmless", harmless_eval[: P["n_dose"]])})
display(alpha.round(3), induce.round(3))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, c, x, title in ((axes[0], alpha, "alpha", "harmful prompts, direction removed"),
                        (axes[1], induce, "coeff", "harmless prompts, direction added")):
    ax.errorbar(c[x], c.refusal, yerr=[c.refusal - c.refusal_low, c.refusal_high - c.refusal], marker="o", capsize=3)
    ax.set(xlabel=x, ylabel="refusal (Wilson 95%)", ylim=(-0.02, 1.02), title=f"{title} (n = {int(c.n.iloc[0])})")
plt.tight_layout()
save_figure(fig, out, "dose_response")

# %% [markdown]
# ## Rank sweep: compliance as more directions are removed
# Three bases of k directions: the selected direction's position at the k best layers (QR), the principal
# components of per-pair harmful-minus-safe differences at the selected layer and position, and the top singular
# vectors of the stack of per-layer directions; and, as chance, k seeded random orthonormal directions (zeros on the
# outlier coordinates), removed the same way at every k.

# %%
pair_diffs = drop_coordinates(pair_differences(lm.model, lm, X.train[:128], layer, positions[pos_index],
                                               hook=X.candidates.meta["hook"]), X.dropped, renormalize=False)
bases = bases_for_sweep(X.directions, X.valid, scores, pos_index, layer, pair_diffs, P["k_max"])
bases[CONTROL] = random_basis(v.shape[0], P["k_max"], P["seed"] + 1, X.outliers)
# rank 1 of top_layers is the selected direction: the headline ablation's rows on these prompts are reused
curve, judged = rank_sweep(lm, bases, P["ks"], harmful_eval[: P["n_sweep"]], harmless_eval[: P["n_sweep"]], scored, gen,
                           known={("top_layers", 1): rows_on(generations, "selected", "eval", "harmful",
                                                             harmful_eval[: P["n_sweep"]])})
display(curve.round(3))
fig, ax = plt.subplots(figsize=(7, 4))
for name, c in curve.groupby("basis"):
    ax.errorbar(c.k, c.full_compliance, yerr=[c.full_compliance - c.full_compliance_low,
                                              c.full_compliance_high - c.full_compliance],
                marker="o", capsize=3, label=name, ls="--" if name == CONTROL else "-")
base_full = rates[(rates.condition == "baseline") & (rates.set == "eval") & (rates.side == "harmful")].full_compliance.iloc[0]
ax.axhline(base_full, ls=":", c="gray", label="baseline")
ax.set(xlabel="rank k of the removed subspace", ylabel="share fully compliant (Wilson 95%)", ylim=(0, 1.05),
       title=f"n = {int(curve.n.max())} harmful prompts per point")
ax.legend()
save_figure(fig, out, "rank_curve")

# %% [markdown]
# ## Verdict
# The question is whether ONE direction suffices, whichever construction finds it, so the three bases are pooled:
# the single direction is the best coherent k = 1 ablation of any basis, the maximum is over every (basis, k), and
# the effective rank is the smallest k, in any basis, reaching 90% of that maximum. The gain over k = 1 that would
# make the model "distributed" is measured against chance: what removing as many random directions gains by itself
# is subtracted. Thresholds are parameters, shown with the numbers. A model that barely refuses at baseline (the
# SmolLM2 control) gets "no refusal": compliance under ablation says nothing there.

# %%
thresholds = VerdictThresholds()
base_refusal = rates[(rates.condition == "baseline") & (rates.set == "eval") & (rates.side == "harmful")].refusal.iloc[0]
verdicts = {name: verdict(c, thresholds, base_refusal) for name, c in curve.groupby("basis") if name != CONTROL}
final = model_verdict(curve, thresholds, base_refusal)
display(pd.DataFrame(verdicts).T)
print(f"verdict for {cfg.name}: {final['verdict']} (best coherent single direction: {final['k1_basis']} k=1, "
      f"compliance {final['k1_compliance']:.2f}, coherence {final['k1_coherence']:.2f}; max compliance "
      f"{final['max_compliance']:.2f}; effective rank {final['effective_rank']} ({final['basis']}); gain over k = 1 "
      f"{final['gain_over_k1']:.2f}, over chance {final['gain_over_chance']:.2f})")
for s in X.sets:
    r = rates[(rates.set == s.name) & (rates.side == "harmful")].set_index("condition")
    print(f"{s.name} set: harmful refusal baseline {r.refusal['baseline']:.2f}, selected removed "
          f"{r.refusal['selected']:.2f}, random {r.refusal['random']:.2f} (n = {int(r.n['baseline'])})")

# %% [markdown]
# ## Artifacts
# The weight edit of stage 05 removes the selected direction (k = 1): the one chosen on validation pairs by
# bypass / induce / KL. The rank sweep's bases were compared on evaluation prompts; they are recorded, not edited in.

# %%
write_selected(out / "selected.safetensors", Selected(
    direction=v, basis=v[:, None].clone(),
    meta={"layer": layer, "position": positions[pos_index], "pos_index": pos_index, "alpha": 1.0, "k": 1,
          "basis": "selected", "source": "02_extract difference of means at this layer and position, selected on "
                                         "validation pairs by bypass / induce / KL (Arditi et al.)"}))
write_tensors(out / "controls.safetensors", {"random_directions": controls, "random_basis": bases[CONTROL]},
              {"seed": P["seed"], "outlier_dims_zeroed": X.outliers, **control_record})
write_csv(out / "candidates.csv", scores)
write_csv(out / "judge_grid.csv", grid)
write_csv(out / "generations.csv", generations)
write_csv(out / "rates.csv", rates)
write_csv(out / "random_range.csv", random_range)
write_csv(out / "by_category.csv", by_category)
write_csv(out / "harmless_flips.csv", flipped)
write_csv(out / "dose_alpha.csv", alpha)
write_csv(out / "dose_induce.csv", induce)
write_csv(out / "rank_curve.csv", curve)
write_csv(out / "rank_generations.csv", judged)
write_json(out / "summary.json", {
    "rates": rates.to_dict(orient="records"), "n_unscored": int(generations.unscored.sum()),
    "refusal_tokens": token_record, "judge": judge_name(generations),
    "selected": {"layer": layer, "position": positions[pos_index], "bypass": best.bypass, "induce": best.induce,
                 "kl": best.kl, "note": selection_note, "kl_floor": scores.attrs["kl_floor"],
                 "kl_max_used": scores.attrs["kl_max_used"], "outlier_dims_zeroed": X.dropped},
    "original_rule": {"layer": int(grid.iloc[0].layer), "alpha": float(grid.iloc[0].alpha), "agrees": agree},
    "random_control": {"seed": P["seed"], "n_directions": P["n_random"], "outlier_dims_zeroed": X.outliers,
                       **control_record, "range": random_range.to_dict(orient="records")},
    "harmless_flips": {s.name: int((flipped.set == s.name).sum()) for s in X.sets},
    "verdicts": verdicts, "verdict": final,
})
write_manifest(out, cfg, P, started)
print(f"stage 04 took {time.time() - started:.0f} s")
