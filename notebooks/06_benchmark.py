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
# # 06 · Benchmarks: what does orthogonalization cost?
#
# Removing the refusal direction should leave general capability intact. We compare the base model with
# the orthogonalized checkpoint written by 05 on
#
# - **lm-eval-harness**, zero-shot, on the project's local multiple-choice task (general knowledge and
#   easy reasoning, written for this project; accuracy and length-normalized accuracy with lm-eval's
#   standard errors). The original study's task list (ARC, BoolQ, HellaSwag, PIQA, TruthfulQA MC1,
#   WinoGrande) needs hub access for its data: set `hub_tasks = True` on such a machine.
# - **KL divergence** KL(base || edited) of the next-token distributions over the base model's own greedy
#   completions of harmless prompts: at the first generated token and averaged over the completion.
# - **Cross-entropy** of both models on those harmless texts (prompt + base completion).

# %% tags=["parameters"]
model = "qwen25_coder_05b"  # registry entry in params/
device = None  # torch device; None: $REFUSAL_DEVICE, else CUDA when available, else CPU
limit = None  # lm-eval items per task; None: all
batch_size = None  # lm-eval and KL batch size; None: the model's batch_size
n_kl_prompts = 32  # harmless eval prompts for KL / CE
max_new_tokens = None  # completion length for KL / CE; None: the model's max_new_tokens
hub_tasks = False  # also run the original study's seven lm-eval tasks (their data come from the hub)

# %%
import time

import pandas as pd
import seaborn as sns
from IPython.display import display
from transformers import AutoModelForCausalLM

from refusal.artifacts import read_json, write_csv, write_json
from refusal.evaluation import capability
from refusal.generation import generate
from refusal.models import load_model
from refusal.report.stage import require_stage, stage_setup, write_manifest
from refusal.plots import save_figure

started = time.time()
cfg, P, out = stage_setup("06_benchmark", globals())
harmless = read_json(require_stage(cfg.name, "01_data") / "harmless_eval.json")
ortho_dir = require_stage(cfg.name, "05_orthogonalize")
lm = load_model(cfg, P["device"])
edited = AutoModelForCausalLM.from_pretrained(ortho_dir / "model", dtype=lm.model.dtype).to(lm.model.device).eval()
ortho = read_json(ortho_dir / "orthogonalization.json")
print(f"model: {cfg.name}; edited checkpoint {ortho_dir / 'model'} (alpha {ortho['result']['alpha']}, "
      f"rank {ortho['result']['rank']}, basis {ortho['result']['basis_sha256'][:12]})")

# %% [markdown]
# ## lm-eval, before and after

# %%
tasks = [capability.LOCAL_TASK] + (list(capability.HUB_TASKS) if P["hub_tasks"] else [])
bs = P["batch_size"] or cfg.batch_size
t0 = time.time()
lmeval, lm_eval_outputs = capability.compare_lm_eval({"base": lm.model, "orthogonalized": edited}, lm.tokenizer,
                                                     tasks, limit=P["limit"], batch_size=bs)
lm_eval_seconds = time.time() - t0
display(lmeval.round(4))
# the study's score per task (acc_norm where the task has it, else acc) and their mean, before and after the edit
bench_summary = capability.benchmark_summary(lmeval)
display(bench_summary.round(4))
ax = sns.pointplot(lmeval, x="value", y="metric", hue="model", linestyle="none", dodge=0.3, errorbar=None)
save_figure(ax, out, "lm_eval");
print(f"lm-eval: {lm_eval_seconds:.1f} s for {len(tasks)} task(s) x 2 models")

# %% [markdown]
# ## KL and cross-entropy on harmless text
# The base model's greedy completions of harmless prompts are the reference text; both models are scored
# on the same tokens.

# %%
prompts = harmless[: P["n_kl_prompts"]]
completions = generate(lm, prompts, max_new_tokens=P["max_new_tokens"] or cfg.max_new_tokens, desc="base completions")
signals = capability.capability_signals(lm, edited, prompts, completions, batch_size=bs)
kl_summary = signals.summary()
display(pd.Series(kl_summary).round(4).to_frame("value"))
per_prompt = pd.DataFrame({"prompt": prompts, "first_token_kl": signals.first_token_kl, "mean_kl": signals.mean_kl,
                           "ce_base": signals.ce_base, "ce_edited": signals.ce_edited})
ax = sns.histplot(per_prompt, x="first_token_kl", bins=20)
save_figure(ax, out, "first_token_kl");

# %% [markdown]
# ## Write the stage's artifacts

# %%
write_csv(out / "lm_eval.csv", lmeval)
write_csv(out / "benchmark_summary.csv", bench_summary)
write_json(out / "lm_eval_results.json", lm_eval_outputs)  # lm-eval's own results, per model
write_csv(out / "kl_ce_per_prompt.csv", per_prompt)
write_json(out / "capability.json", {"kl_ce": kl_summary, "tasks": tasks, "lm_eval_seconds": lm_eval_seconds,
                                     "basis_sha256": ortho["result"]["basis_sha256"]})
write_manifest(out, cfg, P, started, basis_sha256=ortho["result"]["basis_sha256"])
print(f"wrote {sorted(p.name for p in out.iterdir())}")
