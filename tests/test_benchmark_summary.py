"""The study's benchmark summary: per-task scores (acc_norm where the task has it) and their mean."""

from __future__ import annotations


def test_summary_of_a_seven_task_lm_eval_result(tmp_path):
    """The study's benchmark: seven lm-eval tasks, acc_norm where the task reports it, else acc, and their mean.
    Read from lm-eval's own output format (a recorded file), through the same parser as a live run."""
    import json

    import pandas as pd

    from refusal.artifacts import write_csv
    from refusal.evaluation.capability import HUB_TASKS, benchmark_summary, lm_eval_table
    from refusal.paths import REPO_ROOT
    from refusal.report.findings import model_row

    rec = json.loads((REPO_ROOT / "tests" / "data" / "lm_eval_seven_tasks.json").read_text())
    table = lm_eval_table({k: rec[k] for k in ("base", "orthogonalized")})
    s = benchmark_summary(table).set_index("task")
    assert list(s.index) == sorted(HUB_TASKS) + ["mean (study tasks)"]
    for task, metric in HUB_TASKS.items():  # the metric the study reports per task
        assert s.loc[task, "metric"] == metric
        r = rec["base"]["results"][task]
        assert s.loc[task, "base"] == r[f"{metric},none"]
        assert s.loc[task, "n"] == rec["base"]["n-samples"][task]["effective"]
    per_task = s.drop(index="mean (study tasks)")
    assert s.loc["mean (study tasks)", "tasks"] == 7
    assert abs(s.loc["mean (study tasks)", "base"] - per_task["base"].mean()) < 1e-12
    assert abs(s.loc["mean (study tasks)", "delta"] - (per_task["edited"] - per_task["base"]).mean()) < 1e-12
    # the findings table reads the stage's summary without error and reports the study's mean
    write_csv(tmp_path / "m" / "06_benchmark" / "benchmark_summary.csv", benchmark_summary(table))
    row = model_row("m", root=tmp_path)
    assert row["benchmark"] == "mean (study tasks) (acc_norm / acc)"
    assert row["benchmark_delta"] == pd.read_csv(tmp_path / "m" / "06_benchmark" / "benchmark_summary.csv")["delta"].iloc[-1]


def test_summary_of_the_local_task_alone():
    from refusal.evaluation.capability import LOCAL_TASK, benchmark_summary

    import pandas as pd

    t = pd.DataFrame([{"model": m, "task": LOCAL_TASK, "metric": k, "value": v, "stderr": 0.01, "n": 187}
                      for m, a in (("base", 0.70), ("orthogonalized", 0.68)) for k, v in (("acc", a), ("acc_norm", a - 0.1))])
    s = benchmark_summary(t)
    assert list(s["task"]) == [LOCAL_TASK] and s["metric"].iloc[0] == "acc_norm"
    assert abs(s["delta"].iloc[0] - (-0.02)) < 1e-12
