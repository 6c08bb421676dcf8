"""The peer comparison's table, verdict and settings, on recorded results: no model is loaded, heretic not imported."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest

from refusal.report import peers as R
from refusal.report.outputs import rel
from refusal.stats import rate


def _rate(k: int, n: int) -> dict:
    r = rate(k, n)
    return {"rate": r.rate, "low": r.lo, "high": r.hi, "n": n, "k": k, "n_unscored": 0}


def _method(method: str, harmful: tuple[int, int], harmless: tuple[int, int], kl: float, mc: float,
            seconds: float | None = None, rss_gb: float | None = None, build: dict | None = None,
            cpu: float | None = None) -> dict:
    rec = {"method": method, "harmful_refusal": _rate(*harmful), "harmless_refusal": _rate(*harmless),
           "first_token_kl": kl, "n_kl_prompts": harmless[1],
           "mc": {"task": "refusal_general_mc", "metric": "acc_norm", "accuracy": mc, "stderr": 0.03, "acc": mc,
                  "n": 187}, "judge": "offline-v2",
           "examples": [{"prompt": "p", "response": "I'm sorry, but I can't assist with that.", "refused": True}]}
    if seconds is not None:
        rec["measured"] = {"returncode": 0, "seconds": seconds, "peak_rss_bytes": int(rss_gb * 2**30)}
        if cpu is not None:
            rec["measured"]["cpu_seconds"] = cpu
        rec["build"] = build or {}
    return rec


def _results(heretic_harmful: tuple[int, int] = (2, 48), heretic_kl: float = 0.05) -> dict:
    """Four methods with known numbers: ours 10/48 at KL 0.20; heretic and single-layer as given."""
    return {"settings": {"max_new_tokens": 32}, "data": "...", "methods": [
        _method("baseline", (24, 48), (1, 48), 0.0, 0.70),
        _method("ours", (10, 48), (2, 48), 0.20, 0.68, 600.0, 5.0, {"layer": 12, "position": -2}),
        _method("single_layer", (20, 48), (1, 48), 0.30, 0.66, 300.0, 4.5, {"layer": 9, "position": -1}),
        _method("heretic", heretic_harmful, (3, 48), heretic_kl, 0.69, 900.0, 6.0,
                {"chosen": {"index": 7, "refusals": 1, "n_bad_prompts": 16, "kl_divergence": 0.04,
                            "direction_index": None}, "trials": [{}] * 20}),
    ]}


def test_table_reads_every_figure_from_the_records():
    t = R.peers_table(_results())
    assert list(t.method) == ["baseline", "ours", "single_layer", "heretic"]
    ours = t.set_index("method").loc["ours"]
    assert ours.harmful_refusal == pytest.approx(10 / 48) and ours.n_harmful == 48
    assert (ours.harmful_low, ours.harmful_high) == pytest.approx((rate(10, 48).lo, rate(10, 48).hi))
    assert ours.first_token_kl == 0.20 and ours.mc_accuracy == 0.68
    assert ours.build_seconds == 600.0 and ours.peak_rss_gb == pytest.approx(5.0)
    assert ours.chose == "layer 12, position -2"
    base = t.set_index("method").loc["baseline"]
    assert base.chose == "–" and pd.isna(base.build_seconds) and pd.isna(base.peak_rss_gb)
    assert "trial 7 of 20" in t.set_index("method").loc["heretic"].chose
    assert "per layer" in t.set_index("method").loc["heretic"].chose


def test_a_peer_that_removes_more_refusals_at_lower_kl_is_named_with_its_margin():
    text = R.verdict(R.peers_table(_results(heretic_harmful=(2, 48), heretic_kl=0.05)))
    # 10/48 - 2/48 = 16.7 points; Wilson [0.116, 0.344] vs [0.012, 0.140] overlap
    assert "heretic beats this project's edit on refusal removal at equal or lower KL: 17 points fewer" in text
    assert "(4% vs 21%) at KL 0.050 vs 0.200" in text
    assert "overlap, so the margin is within sampling error" in text
    assert "No peer removes more refusals" not in text
    assert text.startswith("Refusal removal: heretic leaves the fewest harmful refusals (unedited: 50% of n = 48)")
    assert "Damage: heretic moves the first token least" in text
    assert "This project's edit matches or beats single-layer abliteration on both refusal removal and KL." in text


def test_no_peer_beats_ours_when_none_is_better_on_both():
    text = R.verdict(R.peers_table(_results(heretic_harmful=(1, 48), heretic_kl=0.50)))
    assert "beats this project's edit" not in text
    assert "No peer removes more refusals than this project's edit at equal or lower KL." in text
    assert "heretic is better on refusal removal only, worse on the other: a trade-off, not a win." in text
    assert "This project's edit matches or beats single-layer abliteration on both refusal removal and KL." in text
    assert "Damage: this project (stages 02-05) moves the first token least" in text


def test_margins_beyond_the_intervals_are_said_to_be_so():
    res = _results(heretic_harmful=(0, 48), heretic_kl=0.05)
    res["methods"][1]["harmful_refusal"] = _rate(30, 48)  # ours: 62.5% [0.48, 0.75] vs heretic 0% [0, 0.074]
    text = R.verdict(R.peers_table(res))
    assert "62 points fewer harmful refusals" in text or "63 points fewer harmful refusals" in text
    assert "the Wilson intervals do not overlap" in text


def test_winners_tie_and_cost_and_mc_are_read_from_the_numbers():
    res = _results()
    res["methods"][2]["first_token_kl"] = 0.05  # single layer ties heretic on KL
    text = R.verdict(R.peers_table(res))
    assert "Damage: single-layer abliteration and heretic move the first token least" in text
    # without CPU times (an older record), wall time decides
    assert "Cost: single-layer abliteration builds with the least wall time (" in text
    assert "single-layer abliteration needs the least memory" in text
    assert "this project (stages 02-05) 10.0 min" in text and "heretic 6.0 GB" in text
    # with CPU times, computation decides and wall time is shown beside it: heretic ran long on a busy machine
    for m, cpu in zip(res["methods"][1:], (500.0, 400.0, 300.0)):
        m["measured"]["cpu_seconds"] = cpu
    text = R.verdict(R.peers_table(res))
    assert "Cost: heretic builds with the least computation (CPU time; wall time in brackets: " in text
    assert "this project (stages 02-05) 8.3 min [10.0], single-layer abliteration 6.7 min [5.0], heretic 5.0 min [15.0]" in text
    assert "Multiple choice (acc_norm): heretic scores highest" in text and "unedited 0.700" in text


def test_overlap():
    a = pd.Series({"harmful_low": 0.1, "harmful_high": 0.3})
    assert R.overlap(a, pd.Series({"harmful_low": 0.3, "harmful_high": 0.5}))
    assert not R.overlap(a, pd.Series({"harmful_low": 0.31, "harmful_high": 0.5}))
    wide = pd.Series({"harmful_low": 0.0, "harmful_high": 0.9})
    assert R.overlap(pd.Series({"harmful_low": 0.31, "harmful_high": 0.5}), wide)


def test_a_missing_field_is_an_error_naming_the_file_and_the_method():
    res = _results()
    del res["methods"][3]["harmful_refusal"]["high"]
    with pytest.raises(ValueError, match=r"x/results.json: methods\[3\] \(heretic\): 'harmful_refusal' must hold"):
        R.peers_table(res, "x/results.json")
    with pytest.raises(ValueError, match="no method records"):
        R.peers_table({"methods": []}, "y.json")


def test_examples_and_the_page_without_results(tmp_path):
    assert len(R.examples_table(_results())) == 4
    assert R.read_results("qwen25_coder_05b", tmp_path, None) is None and R.peer_models(tmp_path, None) == []
    msg = R.how_to_produce("qwen25_coder_05b")
    assert "make setup EXTRAS=peers" in msg and "bench/peers/compare.py --model qwen25_coder_05b" in msg
    (tmp_path / "_peers" / "m").mkdir(parents=True)
    (tmp_path / "_peers" / "m" / "results.json").write_text(json.dumps(_results()))
    assert R.peer_models(tmp_path, None) == ["m"]
    assert R.read_results("m", tmp_path, None)["methods"][0]["method"] == "baseline"


def test_a_local_run_overrides_the_recorded_one(tmp_path):
    """The page reads this machine's run where there is one, else the run recorded in the repository."""
    runs, recorded = tmp_path / "runs", tmp_path / "recorded"
    recorded.mkdir()
    rec = _results()
    (recorded / "m.json").write_text(json.dumps(rec))
    (recorded / "r.json").write_text(json.dumps(rec))
    assert R.peer_models(runs, recorded) == ["m", "r"]
    assert R.read_results("m", runs, recorded)["source"] == str(recorded / "m.json")
    (runs / "_peers" / "m").mkdir(parents=True)
    local = {**rec, "total_seconds": 1.0}
    (runs / "_peers" / "m" / "results.json").write_text(json.dumps(local))
    got = R.read_results("m", runs, recorded)
    assert got["source"] == str(runs / "_peers" / "m" / "results.json") and got["total_seconds"] == 1.0
    assert R.read_results("r", runs, recorded)["source"] == str(recorded / "r.json")
    assert R.read_results("x", runs, recorded) is None


def test_scatter_draws_one_point_per_method_with_its_interval():
    import matplotlib

    matplotlib.use("Agg")
    ax = R.scatter(R.peers_table(_results()))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [R.LABELS[m] for m in R.LABELS]
    xs = [line.get_xdata()[0] for line in ax.lines if len(line.get_xdata()) == 1]
    assert sorted(xs)[:1] == [0.0] and 0.20 in xs


def test_recorded_run_gives_its_own_numbers_back():
    """The measured comparison kept in the repository (bench/peers/results/, what the published page shows): it is
    a run of the benchmark's defaults, its rates are the Wilson rates of its own counts, and the table and the
    verdict say what its numbers say."""
    from refusal.peers.inputs import resolve_settings

    path = R.RECORDED_DIR / "qwen25_coder_05b.json"
    res = json.loads(path.read_text())
    defaults = resolve_settings("qwen25_coder_05b", all_eval=True, choice_tokens=16, eval_batch_size=48,
                                device="cpu").to_dict()
    assert res["settings"] == defaults  # `bench/peers/compare.py --model qwen25_coder_05b`, nothing changed
    assert [m["method"] for m in res["methods"]] == ["baseline", "ours", "single_layer", "heretic"]
    t = R.peers_table(res, str(path)).set_index("method")
    for m in res["methods"]:
        h = m["harmful_refusal"]
        assert (h["n"], m["harmless_refusal"]["n"]) == (152, 149)
        w = rate(round(h["rate"] * h["n"]), h["n"])
        assert (w.rate, w.lo, w.hi) == pytest.approx((h["rate"], h["low"], h["high"]), abs=1e-9)
        assert t.loc[m["method"], "harmful_refusal"] == h["rate"]
        assert t.loc[m["method"], "first_token_kl"] == m["first_token_kl"]
        assert len(m["examples"]) == 3 and all("[redacted" in e["response"] or e["refused"] for e in m["examples"])
    text = R.verdict(t.reset_index())
    assert text.count("Refusal removal:") == 1
    for m in res["methods"][1:]:
        assert f"{R.LABELS[m['method']]} {100 * m['harmful_refusal']['rate']:.0f}% [" in text
    # who wins: on these numbers no peer removes more refusals at equal or lower KL (each is a trade-off)
    ours = t.loc["ours"]
    beaten = [x for x in ("single_layer", "heretic") if t.loc[x, "harmful_refusal"] < ours.harmful_refusal
              and t.loc[x, "first_token_kl"] <= ours.first_token_kl]
    assert beaten == [] and "No peer removes more refusals than this project's edit at equal or lower KL." in text
    assert R.heretic_version(res) == res["methods"][3]["build"]["heretic_version"] == "1.4.0"
    assert R.heretic_version({"methods": res["methods"][:3]}) is None
    note = R.direction_note(res)
    assert note.startswith(f"The two single-direction edits removed directions with cosine {res['direction_cosine']:.3f} (")
    assert R.direction_note({**res, "direction_cosine": None}) == ""


def test_choice_of_heretics_trial():
    from refusal.peers.heretic_run import HereticError, choose_trial

    assert choose_trial([{"kl_divergence": 0.9}, {"kl_divergence": 0.49}, {"kl_divergence": 0.1}]) == 1
    assert choose_trial([{"kl_divergence": 0.9}, {"kl_divergence": 0.7}]) == 0
    with pytest.raises(HereticError):
        choose_trial([])


def test_settings_come_from_the_stages_and_round_trip(tmp_path):
    from refusal.peers.inputs import PeerSettings, peer_inputs, resolve_settings, stage_params
    from refusal.config import load_config

    p04 = stage_params(load_config("qwen25_coder_05b"), "04_ablate")
    s = resolve_settings("qwen25_coder_05b", heretic_trials=20)
    assert (s.n_val, s.n_eval, s.max_new_tokens, s.choice_tokens) == (p04["n_val"], p04["n_eval"],
                                                                       p04["max_new_tokens"], p04["max_new_tokens"])
    assert s.heretic_startup_trials == 6 and s.n_train is None
    s.write(tmp_path)
    assert PeerSettings.read(tmp_path) == s
    bad = copy.deepcopy(s.to_dict())
    bad["typo"] = 1
    (tmp_path / "settings.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="settings.json: expected the keys"):
        PeerSettings.read(tmp_path)
    inputs = peer_inputs(resolve_settings("qwen25_coder_05b", n_eval=48, n_val=8, n_train=32))
    assert (len(inputs.train), len(inputs.val), len(inputs.harmful_eval), len(inputs.harmless_eval)) == (32, 8, 48, 48)
    seen = {p for pair in inputs.train + inputs.val for p in pair}
    assert not seen & set(inputs.harmful_eval + inputs.harmless_eval)
    every = peer_inputs(resolve_settings("qwen25_coder_05b", all_eval=True))
    assert (len(every.harmful_eval), len(every.harmless_eval)) == (152, 149)


def test_eval_sample_is_stage_04s():
    """Same seed and size: the comparison evaluates on the prompts stage 04 evaluates on."""
    import random

    from refusal import data as D
    from refusal.intervention.inputs import eval_sample

    h, s = D.default_harmful_eval(), D.default_harmless_eval()
    rng = random.Random(0)
    assert eval_sample(h, s, 100, 0) == (rng.sample(range(len(h)), 100), rng.sample(range(len(s)), 100))
    with pytest.raises(ValueError, match="harmless_eval.json: 149 prompts, fewer than n_eval = 150"):
        eval_sample(h, s, 150, 0, "somewhere")


def test_the_comparison_page_reruns_when_peer_results_appear(tmp_path, monkeypatch):
    """The workflow lists existing runs/_peers/<model>/results.json among 07_compare's inputs (and only there)."""
    from refusal.report.workflow import plan

    monkeypatch.setenv("REFUSAL_RUNS", str(tmp_path))
    recorded = sorted(rel(p) for p in R.RECORDED_DIR.glob("*.json"))  # the runs kept in the repository
    assert recorded == ["bench/peers/results/qwen25_coder_05b.json"]
    assert [x for x in plan(["smollm2_135m"]).cross_inputs("07_compare") if "peers" in x] == recorded
    (tmp_path / "_peers" / "smollm2_135m").mkdir(parents=True)
    (tmp_path / "_peers" / "smollm2_135m" / "results.json").write_text("{}")
    p = plan(["smollm2_135m"])
    assert str(tmp_path / "_peers" / "smollm2_135m" / "results.json") in p.cross_inputs("07_compare")
    assert not any("peers" in x for x in p.cross_inputs("08_judges"))


def test_every_method_shows_the_prompts_the_baseline_refuses():
    """The examples: the first harmful eval prompts the unedited model refused (unscored rows left out), topped up
    with the first others; each method shows its own completion of exactly those prompts, redacted."""
    from refusal.peers.evaluate import example_prompts, examples_of

    long = "Step one: " + "x " * 200
    gens = pd.DataFrame({"side": ["harmful"] * 5 + ["harmless"], "index": [0, 1, 2, 3, 4, 0],
                         "prompt": [f"p{i}" for i in range(5)] + ["h"],
                         "response": ["ok", "I can't.", long, "I won't.", "no", "sure"],
                         "refused": [False, True, False, True, True, False],
                         "unscored": [False, False, False, False, True, False]})
    assert example_prompts(gens) == [1, 3, 0]  # refused first (4 is unscored), then the first others
    assert example_prompts(gens, 1) == [1]
    ex = examples_of(gens, [2, 1])
    assert [e["prompt"] for e in ex] == ["p2", "p1"] and [e["refused"] for e in ex] == [False, True]
    assert "[redacted" in ex[0]["response"] and len(ex[0]["response"]) < len(long)
