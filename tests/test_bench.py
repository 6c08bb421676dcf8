"""Benchmarks: lm-eval on the local task (in-memory model), KL and CE between base and edited models."""

from __future__ import annotations

import json
import json
import math

import pytest
import torch
import yaml

from refusal.evaluation.capability import (HUB_TASKS, LOCAL_TASK, capability_signals, local_task_data, parse_results,
                                           run_lm_eval, write_local_task)

pytestmark = pytest.mark.slow


def test_local_task_data_and_yaml(tmp_path):
    items = [json.loads(line) for line in local_task_data().read_text().splitlines()]
    assert len(items) >= 150
    assert all(len(it["choices"]) == 4 and 0 <= it["answer"] < 4 for it in items)
    cfg = yaml.safe_load(write_local_task(tmp_path).read_text())
    path = cfg["dataset_kwargs"]["data_files"]["test"]
    assert path.startswith("/") and path == str(local_task_data())
    assert cfg["output_type"] == "multiple_choice" and {m["metric"] for m in cfg["metric_list"]} == {"acc", "acc_norm"}
    assert set(HUB_TASKS) == {"arc_easy", "arc_challenge", "boolq", "hellaswag", "piqa", "truthfulqa_mc1", "winogrande"}


def test_lm_eval_local_task_on_smollm(smollm, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the data path must not depend on the working directory
    out = run_lm_eval(smollm.model, smollm.tokenizer, limit=20, batch_size=32)
    json.dumps(out)  # lm-eval's own output, as stage 06 saves it
    res = parse_results(out)[LOCAL_TASK]
    print(f"\n[lm-eval] smollm2_135m {LOCAL_TASK} limit=20: {res}")
    assert res["n"] == 20
    for m in ("acc", "acc_norm"):
        assert 0.0 <= res[m] <= 1.0
        assert 0.0 < res[f"{m}_stderr"] < 0.5
        # a binomial proportion's standard error (lm-eval uses the sample std)
        assert res[f"{m}_stderr"] == pytest.approx(math.sqrt(res[m] * (1 - res[m]) / 19), rel=1e-6)


def test_kl_zero_for_same_model_positive_for_edited(smollm):
    from refusal.models import fresh_copy
    from refusal.intervention.orthogonalize import orthogonalize

    prompts = ["Name three fruits.", "What is the capital of France?", "Give me a synonym for happy."]
    completions = ["Apples, bananas and cherries.", "The capital of France is Paris.", "Joyful."]
    same = capability_signals(smollm, smollm.model, prompts, completions, progress=False)
    assert all(k == 0.0 for k in same.first_token_kl + same.mean_kl)
    assert same.ce_base == same.ce_edited and all(0 < c < 20 for c in same.ce_base)
    torch.manual_seed(0)
    edited = fresh_copy(smollm)
    orthogonalize(edited, torch.randn(smollm.d_model))
    diff = capability_signals(smollm, edited, prompts, completions, progress=False)
    s = diff.summary()
    print(f"\n[KL] smollm2_135m random-direction edit: {s}")
    assert all(k > 0 for k in diff.first_token_kl + diff.mean_kl)
    assert diff.ce_base == pytest.approx(same.ce_base) and diff.ce_edited != diff.ce_base

