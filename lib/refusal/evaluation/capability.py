"""Capability benchmarks before/after an edit: lm-eval-harness tasks, KL and cross-entropy.

- :data:`HUB_TASKS`: the original study's lm-eval task list (zero-shot; ``acc_norm``
  where the task reports it). Their data come from the HF hub, so they need a
  machine with hub access (not this project's offline default).
- :data:`LOCAL_TASK`: a multiple-choice task written by this project
  (``default_data/general_mc.jsonl``, built by ``scripts/build_general_mc.py``),
  registered with lm-eval through a YAML written at run time with an absolute
  data path (relative ``data_files`` would resolve against the current directory).
- :func:`run_lm_eval`: lm-eval on an in-memory model (``HFLM(pretrained=model)``); :func:`parse_results`
  reads its output (or a recorded one), :func:`benchmark_summary` the study's per-task scores and their mean.
- :func:`capability_signals`: first-token KL and mean KL between a base and an
  edited model over the base model's own greedy completions of harmless prompts,
  and cross-entropy of both on those texts.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from refusal.batching import length_sorted_batches, pad
from refusal.device import device_of
from refusal.data.defaults import default_data_path

__all__ = [
    "HUB_TASKS",
    "LOCAL_TASK",
    "local_task_data",
    "write_local_task",
    "run_lm_eval",
    "parse_results",
    "lm_eval_table",
    "compare_lm_eval",
    "benchmark_summary",
    "CapabilitySignals",
    "capability_signals",
]

log = logging.getLogger(__name__)

# The original study's benchmark (Qwen-1.8B): task -> metric reported (acc_norm where present).
HUB_TASKS: dict[str, str] = {
    "arc_easy": "acc_norm",
    "arc_challenge": "acc_norm",
    "boolq": "acc",
    "hellaswag": "acc_norm",
    "piqa": "acc_norm",
    "truthfulqa_mc1": "acc",
    "winogrande": "acc",
}
LOCAL_TASK = "refusal_general_mc"
_LOCAL_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def local_task_data() -> Path:
    """Absolute path of the local task's JSONL (question, choices [4], answer index, category)."""
    return Path(default_data_path("general_mc.jsonl")).resolve()


def write_local_task(folder: str | Path, data: str | Path | None = None, name: str = LOCAL_TASK) -> Path:
    """Write the lm-eval YAML of the local task into ``folder`` (an ``include_path``); returns the YAML."""
    data = Path(data).resolve() if data is not None else local_task_data()
    if not data.exists():
        raise FileNotFoundError(f"{data}: local benchmark data missing (run scripts/build_general_mc.py)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(_LOCAL_YAML.format(name=name, data=data.as_posix()))
    return path


def _metric(res: dict[str, Any], metric: str) -> tuple[float, float]:
    """(value, stderr) of ``metric`` from an lm-eval task result (keys like ``acc,none``)."""
    v = res.get(f"{metric},none")
    se = res.get(f"{metric}_stderr,none")
    if v is None:
        raise KeyError(f"lm-eval result has no '{metric}' (keys: {sorted(res)})")
    return float(v), float(se) if isinstance(se, (int, float)) else math.nan


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str] = (LOCAL_TASK,),
    limit: int | float | None = None,
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate an in-memory HF model with lm-eval (zero-shot); lm-eval's own output, reduced to what JSON holds.

    The local task is registered from a temporary folder; hub tasks are looked up in lm-eval's own task index (and
    need hub access for their data). Read the result with :func:`parse_results`.

    Returns:
        ``{"results", "n-samples", "versions", "higher_is_better"}`` of ``lm_eval.simple_evaluate``.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    hub = [t for t in tasks if t != LOCAL_TASK]
    with tempfile.TemporaryDirectory(prefix="refusal-lmeval-") as tmp:
        write_local_task(tmp)
        tm = TaskManager(include_path=tmp, include_defaults=bool(hub))
        tok = tokenizer
        pad_side = tok.padding_side
        tok.padding_side = "left"
        try:
            hflm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=str(device_of(model)))
            out = lm_eval.simple_evaluate(
                model=hflm, tasks=list(tasks), num_fewshot=0, limit=limit, task_manager=tm,
                log_samples=False, bootstrap_iters=1000, random_seed=seed, numpy_random_seed=seed,
                torch_random_seed=seed, fewshot_random_seed=seed,
            )
        finally:
            tok.padding_side = pad_side
    return {k: out.get(k, {}) for k in ("results", "n-samples", "versions", "higher_is_better")}


def parse_results(out: dict[str, Any], tasks: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Per-task metrics from lm-eval's output (:func:`run_lm_eval`, or a recorded results JSON).

    Returns:
        ``{task: {"acc": v, "acc_stderr": se, "acc_norm": v, "acc_norm_stderr": se, "n": n}}`` (``acc_norm`` only
        where the task reports it).

    Raises:
        KeyError: a task of ``tasks`` has no result, or reports neither acc nor acc_norm.
    """
    results: dict[str, dict[str, float]] = {}
    for task in tasks if tasks is not None else sorted(out["results"]):
        if task not in out["results"]:
            raise KeyError(f"lm-eval output has no result for task '{task}' (has: {sorted(out['results'])})")
        r = out["results"][task]
        row: dict[str, float] = {}
        for metric in ("acc", "acc_norm"):
            if f"{metric},none" in r:
                row[metric], row[f"{metric}_stderr"] = _metric(r, metric)
        if not row:
            raise KeyError(f"lm-eval result of task '{task}' reports neither acc nor acc_norm (keys: {sorted(r)})")
        n = out.get("n-samples", {}).get(task, {})
        row["n"] = float(n.get("effective", math.nan)) if isinstance(n, dict) else math.nan
        results[task] = row
    return results


def lm_eval_table(outputs: dict[str, dict[str, Any]], tasks: Sequence[str] | None = None) -> Any:
    """A long DataFrame of several models' lm-eval outputs (``{"base": out0, "orthogonalized": out1}``).

    Columns: model, task, metric, value, stderr, n.
    """
    import pandas as pd

    rows = []
    for label, out in outputs.items():
        for task, r in parse_results(out, tasks).items():
            for metric in ("acc", "acc_norm"):
                if metric in r:
                    rows.append({"model": label, "task": task, "metric": metric, "value": r[metric],
                                 "stderr": r[f"{metric}_stderr"], "n": r["n"]})
    return pd.DataFrame(rows, columns=["model", "task", "metric", "value", "stderr", "n"])


def compare_lm_eval(models: dict[str, Any], tokenizer: Any, tasks: Sequence[str] = (LOCAL_TASK,),
                    **kw: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """lm-eval on several models (e.g. ``{"base": m0, "orthogonalized": m1}``).

    Returns:
        (the long table of :func:`lm_eval_table`, lm-eval's own output per model, for the record).
    """
    outputs = {label: run_lm_eval(m, tokenizer, tasks, **kw) for label, m in models.items()}
    return lm_eval_table(outputs, tasks), outputs


def benchmark_summary(table: Any, edited: str = "orthogonalized", base: str = "base") -> Any:
    """Per task and on average, the score the study reports and how the edit moves it.

    Each task is scored by ``acc_norm`` where it reports it, else ``acc`` (the study's rule). Rows: one per
    task, then ``mean (study tasks)`` over the study's tasks present (:data:`HUB_TASKS`), as the study reports
    its benchmark. Columns: task, metric, base, edited, delta (edited - base), n, tasks (how many the mean is over).
    """
    import pandas as pd

    rows = []
    for task, t in table.groupby("task", sort=False):
        metric = "acc_norm" if (t["metric"] == "acc_norm").any() else "acc"
        v = t[t["metric"] == metric].set_index("model")
        for who in (base, edited):
            if who not in v.index:
                raise KeyError(f"lm-eval table has no '{metric}' of task '{task}' for model '{who}'")
        rows.append({"task": task, "metric": metric, "base": float(v.loc[base, "value"]),
                     "edited": float(v.loc[edited, "value"]), "n": float(v.loc[base, "n"]), "tasks": 1})
    out = pd.DataFrame(rows, columns=["task", "metric", "base", "edited", "n", "tasks"])
    study = out[out["task"].isin(list(HUB_TASKS))]
    if len(study):
        out = pd.concat([out, pd.DataFrame([{"task": "mean (study tasks)", "metric": "acc_norm / acc",
                                             "base": study["base"].mean(), "edited": study["edited"].mean(),
                                             "n": study["n"].sum(), "tasks": len(study)}])], ignore_index=True)
    out["delta"] = out["edited"] - out["base"]
    return out


# --------------------------------------------------------------------------- KL and cross-entropy


@dataclass
class CapabilitySignals:
    """Per-prompt KL(base || edited) and cross-entropy on harmless text (nats).

    ``first_token_kl[i]``: KL of the next-token distributions at the first generated
    position of prompt ``i``; ``mean_kl[i]``: mean over that prompt's completion positions;
    ``ce_base[i]`` / ``ce_edited[i]``: mean next-token cross-entropy over prompt + completion
    tokens (everything after the first token, padding excluded).
    """

    first_token_kl: list[float]
    mean_kl: list[float]
    ce_base: list[float]
    ce_edited: list[float]

    def summary(self) -> dict[str, float]:
        def mean(xs: list[float]) -> float:
            return float(sum(xs) / len(xs)) if xs else math.nan

        return {"first_token_kl": mean(self.first_token_kl), "mean_kl": mean(self.mean_kl),
                "ce_base": mean(self.ce_base), "ce_edited": mean(self.ce_edited),
                "ce_delta": mean(self.ce_edited) - mean(self.ce_base), "n_prompts": len(self.first_token_kl)}


def _encode(lm: Any, prompts: list[str], completions: list[str]) -> list[tuple[list[int], int]]:
    """Token ids of chat(prompt) + completion and the number of prompt tokens, per item."""
    tok = lm.tokenizer
    out = []
    for chat, comp in zip(lm.chat(prompts), completions):
        p = tok(chat, add_special_tokens=False)["input_ids"]
        c = tok(comp, add_special_tokens=False)["input_ids"]
        out.append((p + c, len(p)))
    return out


@torch.no_grad()
def capability_signals(lm: Any, edited: Any, prompts: list[str], completions: list[str],
                       batch_size: int = 8, base: Any = None, progress: bool = True) -> CapabilitySignals:
    """KL(base || edited) over the base model's completions, and CE of both models.

    Args:
        lm: the :class:`refusal.models.LoadedModel` (tokenizer, chat template; ``lm.model`` is the base
            unless ``base`` is given).
        edited: the edited model (same tokenizer).
        prompts: harmless user prompts; completions: the base model's greedy completions of them
            (:func:`refusal.generation.generate`).
    Sequences are right-padded into ``[batch, pos]`` (:func:`refusal.batching.pad`); logits ``[batch, pos, vocab]`` are
    compared in float32 at completion positions ``n_prompt-1 .. len-2`` (each predicts the next
    completion token); the first of these is the first-token KL.
    """
    base = lm.model if base is None else base
    items = _encode(lm, prompts, completions)
    pad_id = lm.tokenizer.pad_token_id or 0
    dev = device_of(base)
    first, mean_kl, ce_b, ce_e = [0.0] * len(items), [0.0] * len(items), [0.0] * len(items), [0.0] * len(items)
    batches = length_sorted_batches([len(ids) for ids, _ in items], batch_size)
    for idx in tqdm(batches, desc="KL/CE", disable=not progress):
        ids, mask = pad([items[i][0] for i in idx], pad_id, side="right", device=dev)
        lp_b = F.log_softmax(base(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        lp_e = F.log_softmax(edited(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        tgt = ids[:, 1:]
        nll_b = -lp_b[:, :-1].gather(-1, tgt[..., None])[..., 0]
        nll_e = -lp_e[:, :-1].gather(-1, tgt[..., None])[..., 0]
        for r, i in enumerate(idx):
            n, n_p = len(items[i][0]), items[i][1]
            ce_b[i] = float(nll_b[r, : n - 1].mean())
            ce_e[i] = float(nll_e[r, : n - 1].mean())
            pos = slice(n_p - 1, max(n - 1, n_p))  # at least the first generated position
            pb, pe = lp_b[r, pos], lp_e[r, pos]
            kl = (pb.exp() * (pb - pe)).sum(-1).clamp_min(0.0)  # [n_completion]
            first[i] = float(kl[0])
            mean_kl[i] = float(kl.mean())
    return CapabilitySignals(first, mean_kl, ce_b, ce_e)
