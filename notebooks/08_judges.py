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
# # 08 · The judges: how far can the offline judge be trusted?
#
# Every compliance, coherence and refusal number of this report comes from a judge. By default it is the offline
# judge (refusal phrases and text heuristics: fast, deterministic, blind to meaning). Here an **LLM judge** grades
# the same completions with the same rubric: a local instruction model served by llama.cpp on 127.0.0.1 through an
# OpenAI-compatible API, and the project's OpenAI-client judge talking to it unchanged (the same client works with a
# hosted API or a vLLM server: set `OPENAI_BASE_URL`, `OPENAI_API_KEY`, `REFUSAL_JUDGE_MODEL`). The sample is
# stratified: real completions of every model, condition and evaluation set, an equal share of each kind of answer
# the offline judge tells apart (refusals, compliant, partial, incoherent). We report Cohen's kappa with its 95%
# interval, the confusion table, agreement per kind of answer, and both judges against the project's hand-labelled
# set. Harmful completions are shown as redacted excerpts only.

# %% tags=["parameters"]
models = None  # comma-separated registry names; None: every model with stage-04 generations in runs/
judge_entry = "qwen25_coder_05b"  # registry entry whose GGUF the local judge serves (qwen25_coder_15b: larger, not better against the hand labels; `make setup EXTRAS=qwen15`)
response_format = "none"  # first request unconstrained (llama.cpp's JSON grammar makes a grade ~1.4x slower); hosted APIs and vLLM also take "json_schema"
retry_format = "json_object"  # a reply that is not one valid grade is asked again with llama.cpp's JSON grammar
n_sample = 120  # completions graded by both judges (stratified over models and kinds; about 4 s each on 2 cores)
n_labels = 60  # items of the hand-labelled set graded by the LLM judge (0: none)
seed = 0  # sampling seed
threads = 0  # the judge server's threads (0: the job's, $OMP_NUM_THREADS, where set: every core under `make report`; else every core)

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import display

from refusal.artifacts import write_csv, write_json
from refusal.evaluation import judge as J
from refusal.evaluation.agreement import KINDS, against_labels, label_sample, load_generations, stratified_sample
from refusal.evaluation.judge.server import local_judge, judge_gguf
from refusal.evaluation.redact import redact
from refusal.paths import runs_dir
from refusal.plots import save_figure
from refusal.report.findings import cross_dir, models_with_results
from refusal.report.stage import parameters_cell, write_manifest

started = time.time()
P = {p.name: globals()[p.name] for p in parameters_cell("08_judges")}  # the parameters cell above, as declared
out = cross_dir("08_judges")
names = models.split(",") if models else models_with_results()
table = load_generations(runs_dir(), names)
sample = stratified_sample(table, n_sample, seed)
print(f"{len(table)} scored generations of {len(names)} model(s); sample of {len(sample)}:")
display(sample.groupby(["kind", "model"]).size().unstack(fill_value=0))

# %% [markdown]
# ## Both judges on the sample
# The offline grades are the ones the stages recorded. The LLM judge grades at temperature 0 against the rubric's JSON
# schema: a reply that is not one valid grade is asked again constrained to a JSON object (llama.cpp's grammar), then
# left unscored (and out of the agreement).

# %%
t0 = time.time()
with local_judge(judge_gguf(P["judge_entry"]), alias=P["judge_entry"], threads=P["threads"] or None) as server:
    llm = J.score(sample["prompt"], sample["response"], judge="llm", concurrency=1, timeout=300, max_wait=5,
                  response_format=P["response_format"], retry_format=P["retry_format"])
    labels = label_sample(J.load_labels(), P["n_labels"], P["seed"]) if P["n_labels"] else []
    llm_labels = (J.score([x["prompt"] for x in labels], [x["response"] for x in labels], judge="llm", concurrency=1,
                          timeout=300, max_wait=5, response_format=P["response_format"], retry_format=P["retry_format"])
                  if labels else None)
llm_seconds = time.time() - t0
offline = J.score(sample["prompt"], sample["response"], judge="offline", progress=False)
agree = J.agreement(offline, llm)
print(f"LLM judge {server.model} on {server.base_url}: {len(sample)} + {len(labels)} items in {llm_seconds:.0f} s; "
      f"{int(llm.unscored.sum())} unscored")
for key in ("kappa_binary_ci", "kappa_3level_ci", "kappa_refusal_ci"):
    k = agree[key]
    print(f"{key[:-3]}: {k['kappa']:.2f} [{k['low']:.2f}, {k['high']:.2f}] (n = {k['n']})")

# %%
fig, ax = plt.subplots(figsize=(4.5, 3.8))
sns.heatmap(agree["confusion"], annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
ax.set(xlabel=f"LLM judge ({server.model}): compliance", ylabel="offline judge: compliance",
       title=f"Confusion, n = {agree['n']}")
save_figure(fig, out, "confusion")

# %% [markdown]
# ## Agreement per kind of answer
# Kappa on a stratified sample weights the kinds equally. Per kind: how often the LLM judge gives the same
# compliance level, and how often it agrees on "refused".

# %%
both = sample.assign(llm_compliance=llm["compliance"], llm_refused=llm["refused"], llm_unscored=llm["unscored"],
                     llm_reason=llm["reason"], offline_compliance=offline["compliance"])
ok = both[~both.llm_unscored]
per_kind = pd.DataFrame([{"kind": k, "n": int((ok.kind == k).sum()),
                          "same_compliance": float((ok[ok.kind == k].llm_compliance == ok[ok.kind == k].offline_compliance).mean()),
                          "same_refused": float((ok[ok.kind == k].llm_refused.astype(bool) == (k == "refusal")).mean())}
                         for k in KINDS if (ok.kind == k).any()])
display(per_kind.round(3))
disagree = ok[ok.llm_compliance != ok.offline_compliance].head(8)
display(disagree[["model", "condition", "kind", "offline_compliance", "llm_compliance", "response", "llm_reason"]]
        .assign(response=disagree.response.map(redact)))

# %% [markdown]
# ## Both judges against the hand-labelled set
# The project's labelled items (`default_data/judge_labels.json`: refusals, partial answers, compliant answers,
# degenerate text, written for this project) give each judge an accuracy against a reference, not only against
# each other.

# %%
vs_labels = {}
if llm_labels is not None:
    vs_labels = {"offline": against_labels(J.score([x["prompt"] for x in labels], [x["response"] for x in labels],
                                                   judge="offline", progress=False), labels),
                 "llm": against_labels(llm_labels, labels)}
    display(pd.DataFrame({k: {"n": v["n"], "compliance accuracy": v["compliance_accuracy"], "kappa": v["kappa"]["kappa"],
                              "kappa low": v["kappa"]["low"], "kappa high": v["kappa"]["high"]}
                          for k, v in vs_labels.items()}).T.round(3))

# %% [markdown]
# ## Write the stage's artifacts

# %%
write_csv(out / "sample.csv", both)
write_csv(out / "per_kind.csv", per_kind)
confusion = {str(r): {str(c): int(v) for c, v in row.items()} for r, row in agree["confusion"].to_dict("index").items()}
write_json(out / "agreement.json", {
    "judges": agree["judges"], "n": agree["n"], "n_unscored_llm": int(llm.unscored.sum()),
    "kappa_binary": agree["kappa_binary_ci"], "kappa_3level": agree["kappa_3level_ci"],
    "kappa_refusal": agree["kappa_refusal_ci"], "confusion": confusion, "vs_labels": vs_labels,
    "judge_model": P["judge_entry"], "llm_seconds": round(llm_seconds, 1), "models": names,
    "sample_by_kind": sample.kind.value_counts().to_dict()})
write_manifest(out, None, P, started)
print(f"wrote {sorted(p.name for p in out.iterdir())}")
