"""The one evaluation every model of the comparison gets, and the results file that gathers them.

For each model (the base model, or an edited checkpoint): greedy completions of the held-out harmful and harmless
eval prompts judged by the offline detector (refusal rates with Wilson 95% intervals, over scored items), the
first-token KL(base || edited) on the harmless eval prompts (the quantity heretic optimises and stage 04 filters
on), the local multiple-choice benchmark as stage 06 runs it (lm-eval, zero-shot; acc_norm where the task has it,
its rule), and three redacted completions of harmful prompts.

Artifacts, in ``runs/_peers/<model>/``: ``settings.json``; per method ``<method>/build.json`` (what the build
chose), ``<method>/measured.json`` (wall time, peak memory), ``<method>/evaluation.json``, ``<method>/generations.csv``
(full completions: local research data, never published); and ``results.json``, every method's record in one file,
which the comparison page reads.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import AutoModelForCausalLM

from refusal.artifacts import provenance, read_json, read_tensors, write_csv, write_json
from refusal.evaluation import capability
from refusal.evaluation.redact import redact
from refusal.intervention.conditions import condition_rates, run_condition
from refusal.intervention.scoring import kl_last, last_logprobs
from refusal.models import LoadedModel
from refusal.peers import EDITS, METHODS
from refusal.peers.inputs import PeerInputs, PeerSettings
from refusal.peers.methods import offline_judge

__all__ = ["N_EXAMPLES", "load_edited", "evaluate_model", "examples_of", "example_prompts", "evaluate_all", "write_results",
           "direction_cosine", "RESULTS_FILE"]

log = logging.getLogger(__name__)

N_EXAMPLES = 3  # redacted harmful completions shown per method
RESULTS_FILE = "results.json"


def load_edited(folder: Path, lm: LoadedModel) -> Any:
    """An edited checkpoint saved by a build, in the base model's dtype and on its device.

    Raises:
        FileNotFoundError: naming the folder and the build to run.
    """
    if not (Path(folder) / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no edited model (run its build: python -m refusal.peers build ...)")
    return AutoModelForCausalLM.from_pretrained(folder, dtype=lm.model.dtype).to(lm.model.device).eval()


def _rate(rates: pd.DataFrame, side: str) -> dict[str, Any]:
    r = rates[rates.side == side].iloc[0]
    return {"rate": float(r.refusal), "low": float(r.refusal_low), "high": float(r.refusal_high), "n": int(r.n),
            "k": int(round(r.refusal * r.n)), "n_unscored": int(r.n_unscored)}


def evaluate_model(lm: LoadedModel, method: str, model: Any, inputs: PeerInputs, s: PeerSettings,
                   base_logprobs: torch.Tensor) -> tuple[dict[str, Any], pd.DataFrame]:
    """One model's figures (see the module docstring) and its judged completions.

    Args:
        model: the model to evaluate (``lm.model`` for the baseline); ``base_logprobs``: ``[n_harmless, vocab]``
            first-token log-probabilities of the base model on ``inputs.harmless_eval``.
    """
    batched = dataclasses.replace(lm, cfg=dataclasses.replace(lm.cfg, gen_batch_size=s.eval_batch_size))
    gens = run_condition(batched, method, [None], [inputs.eval_set()], offline_judge, s.max_new_tokens, model=model,
                         desc=f"{method} eval")
    rates = condition_rates(gens)
    if model is lm.model:
        kl = 0.0  # the reference itself
    else:
        kl = float(kl_last(base_logprobs, last_logprobs(dataclasses.replace(lm, model=model),
                                                        inputs.harmless_eval)).mean())
    out = capability.run_lm_eval(model, lm.tokenizer, [capability.LOCAL_TASK], limit=s.mc_limit,
                                 batch_size=lm.cfg.batch_size, seed=s.seed)
    mc = capability.parse_results(out, [capability.LOCAL_TASK])[capability.LOCAL_TASK]
    metric = "acc_norm" if "acc_norm" in mc else "acc"  # stage 06's rule (capability.benchmark_summary)
    record = {"method": method, "harmful_refusal": _rate(rates, "harmful"),
              "harmless_refusal": _rate(rates, "harmless"),
              "first_token_kl": kl, "n_kl_prompts": len(inputs.harmless_eval),
              "mc": {"task": capability.LOCAL_TASK, "metric": metric, "accuracy": mc[metric],
                     "stderr": mc[f"{metric}_stderr"], "acc": mc["acc"], "n": mc["n"]},
              "judge": "/".join(sorted(gens["judge"].unique()))}
    return record, gens


def examples_of(gens: pd.DataFrame, shown: list[int]) -> list[dict[str, Any]]:
    """The redacted completions of the harmful eval prompts ``shown`` (indices) in ``gens``, with the verdict."""
    harmful = gens[gens.side == "harmful"].set_index("index")
    return [{"prompt": harmful.loc[i, "prompt"], "response": redact(harmful.loc[i, "response"]),
             "refused": bool(harmful.loc[i, "refused"])} for i in shown]


def example_prompts(gens: pd.DataFrame, n: int = N_EXAMPLES) -> list[int]:
    """Indices of the first ``n`` harmful eval prompts the model refused in ``gens`` (a baseline's judged
    completions; scored rows only), topped up with the first others when it refused fewer."""
    h = gens[(gens.side == "harmful") & ~gens.unscored.astype(bool)].sort_values("index")
    refused = [int(i) for i in h[h.refused.astype(bool)]["index"]]
    rest = [int(i) for i in h["index"] if int(i) not in refused]
    return (refused + rest)[:n]


def evaluate_all(lm: LoadedModel, folder: Path, inputs: PeerInputs, s: PeerSettings,
                 methods: list[str]) -> dict[str, dict[str, Any]]:
    """Evaluate each method in ``methods`` (the baseline is ``lm.model``; the others their saved checkpoints),
    writing ``<method>/evaluation.json`` and ``<method>/generations.csv``; returns the records. With the baseline
    first, every method's examples are the completions of the first prompts the baseline refuses."""
    base_lp = last_logprobs(lm, inputs.harmless_eval)
    records: dict[str, dict[str, Any]] = {}
    shown = None
    for method in methods:
        model = lm.model if method == "baseline" else load_edited(folder / method / "model", lm)
        records[method], gens = evaluate_model(lm, method, model, inputs, s, base_lp)
        if method == "baseline":  # the examples every method shows: prompts the unedited model refuses
            shown = example_prompts(gens)
        records[method]["examples"] = examples_of(gens, shown or list(range(N_EXAMPLES)))
        write_json(folder / method / "evaluation.json", records[method])
        write_csv(folder / method / "generations.csv", gens)
        del model
        gc.collect()
    return records


def write_results(folder: Path, s: PeerSettings, inputs: PeerInputs, seconds: float | None = None) -> Path:
    """Gather every method's build, measurement and evaluation records into ``results.json``.

    Raises:
        FileNotFoundError: a method has no evaluation record (naming the file).
    """
    methods = []
    for method in METHODS:
        d = Path(folder) / method
        ev = d / "evaluation.json"
        if not ev.exists():
            raise FileNotFoundError(f"{ev}: method {method} has not been evaluated")
        rec = {"method": method, **read_json(ev)}
        if method in EDITS:
            rec["build"] = read_json(d / "build.json")
            rec["measured"] = read_json(d / "measured.json")
        methods.append(rec)
    return write_json(Path(folder) / RESULTS_FILE, provenance(
        settings=s.to_dict(), data=inputs.describe(), methods=methods, total_seconds=seconds,
        direction_cosine=direction_cosine(folder, "ours", "single_layer"),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        cpu_count=os.cpu_count()))


def direction_cosine(folder: Path, a: str, b: str) -> float | None:
    """Cosine between the unit directions two single-direction builds removed, or None if one is missing."""
    paths = [Path(folder) / m / "direction.safetensors" for m in (a, b)]
    if not all(p.exists() for p in paths):
        return None
    u, v = (read_tensors(p)[0]["direction"].double() for p in paths)
    return float(u @ v / (u.norm() * v.norm()))
