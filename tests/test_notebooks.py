"""The stage notebooks, end to end, on a model organism whose answer is known.

Every stage notebook (00 -> 07) is executed by papermill, as `make report` does, on
`smollm2_planted1` (refusal planted along a known unit vector u) with reduced
parameters, into a temporary runs/ folder. The test then checks that the pipeline
finds the truth (the selected direction is u, its ablation removes refusal, the
verdict is "centralized"), and nbval re-executes the cheap notebooks and compares
their checked cells (`# NBVAL_CHECK_OUTPUT`) with papermill's outputs: a re-run
gives the same results. Every figure shown is also saved as PNG and SVG, and the site built
from the executed notebooks (offline preview, Quarto's layout) is navigable with no broken link.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from refusal.paths import NOTEBOOKS_DIR, REPO_ROOT

pytestmark = pytest.mark.slow

MODEL = "smollm2_planted1"
# Reduced parameters so that the whole chain runs in a few minutes on 2 CPU cores.
PARAMS = {
    "00_organism": {"n_eval": 20},
    "02_extract": {"max_train_pairs": 96, "compare_pairs": 4},
    "03_separability": {},
    "04_ablate": {"n_val": 12, "n_eval": 24, "n_independent": 12, "n_random": 2, "n_grid": 6, "grid_layers": 2,
                  "alphas": [1.0], "max_new_tokens": 24, "k_max": 2, "ks": [1, 2], "n_sweep": 12, "prescreen": 6,
                  "dose_alphas": [0.5], "induce_coeffs": [0.0, 1.0], "n_dose": 6, "judge": "offline"},
    "05_orthogonalize": {"n_check": 4, "judge": "offline"},
    "06_benchmark": {"limit": 20, "n_kl_prompts": 6, "max_new_tokens": 16},
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from conftest import papermill_stages

    stages = sorted(nb.stem for nb in NOTEBOOKS_DIR.glob("0[0-6]_*.ipynb"))
    with papermill_stages(tmp_path_factory, MODEL, stages, PARAMS, extra=[("07_compare", {"models": MODEL})]) as r:
        yield r


def test_every_stage_wrote_its_manifest(chain):
    run, _, _ = chain
    for stage in ("00_organism", "01_data", "02_extract", "03_separability", "04_ablate", "05_orthogonalize", "06_benchmark"):
        assert (run / stage / "manifest.json").exists(), stage


# The planted organism's write along u is fitted to be large next to the natural harmful-vs-safe
# differences (see refusal.organisms), so the difference of means switches onto u at the layer after the plant.
# Held-out Cohen's d does not localize the plant: u adds to features that separate the two sets already, and d is
# flat from there on. Measured (2026-12-01, this chain): |cos| with u 0.86-0.94 at layer 21's six positions,
# <= 0.07 at every layer <= 20, decaying to 0.21-0.33 at layer 29; d_test at position -1 1.70 [1.41, 2.08] at layer
# 21, 1.55-1.65 at layers 22-29 and 1.67 at layer 18 pos 0. The best candidate by d was layer 21 here and layer 23 on
# the CI machine (another build of the organism): a tie within the intervals, which is why selection (stage 04)
# scores candidates by their effect, not by separability.
def test_separability_finds_the_planted_direction(chain):
    import math

    import pandas as pd

    from refusal.artifacts import read_json
    from refusal.config import load_config
    from refusal.extraction.directions import read_directions
    from refusal.organisms.recipe import planted_basis

    run, _, _ = chain
    u = planted_basis(load_config(MODEL))[:, 0]
    best = read_json(run / "03_separability" / "best_candidate.json")
    table = pd.read_csv(run / "03_separability" / "separability.csv")
    dirs = read_directions(run / "02_extract" / "directions.safetensors")
    cos = (dirs.directions.float() @ u.float()).abs()  # (n_layers, n_positions)
    # the plant writes at layer 20's MLP output: every position of layer 21 carries u
    assert float(cos[21].mean()) >= 0.85 and float(cos[21].min()) >= 0.8
    assert float(cos[:21].max()) < 0.15
    # the reported best is the largest held-out d among the eligible candidates ...
    n_layers = table.layer.nunique()
    eligible = table[table.valid & (table.layer < n_layers - math.floor(best["exclude_last_frac"] * n_layers))]
    assert best[best["by"]] == pytest.approx(float(eligible[best["by"]].max()))
    # ... and the plant's own candidate at that position is within its interval: d cannot tell them apart
    at_plant = table[(table.layer == 21) & (table.pos_index == best["pos_index"])].iloc[0]
    assert at_plant.d_test_hi >= best["d_test"]


# The u candidates (layers 21-22) have by far the lowest bypass score. Before the selection zeroed the outlier
# coordinates of the candidates and scaled its KL bound to the model's random-ablation floor (refusal.intervention.selection),
# they failed kl_max = 0.1, which random directions alone reach on SmolLM2, and a direction with weight 0.27 on
# the massive-activation coordinate 507 was picked (harmless KL 8.4).
def test_selection_picks_the_planted_direction(chain):
    from refusal.artifacts import read_json, read_tensors
    from refusal.config import load_config
    from refusal.organisms.recipe import planted_basis

    run, _, _ = chain
    u = planted_basis(load_config(MODEL))[:, 0]
    sel, meta = read_tensors(run / "04_ablate" / "selected.safetensors")
    summary = read_json(run / "04_ablate" / "summary.json")
    print("selected", summary["selected"], "cos with u", float(sel["direction"] @ u))
    assert summary["selected"]["layer"] in (21, 22)  # the plant writes at layer 20's MLP output
    assert abs(float(sel["direction"] @ u)) >= 0.8, meta
    assert summary["selected"]["note"] == ""  # no filter had to be relaxed


# The planted direction is found. Measured (this chain, 2026-11-29, organism rebuilt on the 85 generic harmless
# prompts left after removing near-copies of eval prompts): layer 21, position -6, |cos| with u 0.942, no filter
# relaxed; its ablation leaves 0/24 refusals (random direction 18/24 = baseline), verdict centralized (k = 1
# compliance 0.875). An earlier organism (90 prompts) gave layer 22, |cos| 0.856: a near-tie, since layer 22's
# candidates add the first reader layer's own refusal features (|cos| 0.78-0.86) and bypass scores of the two
# layers overlap (the selection's scores per candidate). The organism of 2026-11-29 evening (270 generic harmless prompts, 60
# steps): layer 21, position -6, |cos| 0.916, no filter relaxed; ablation leaves 2/24 refusals (baseline and random
# direction 19/24), verdict centralized (k = 1 compliance 0.854).
def test_selected_direction_is_u_within_cos_0_9(chain):
    from refusal.artifacts import read_tensors
    from refusal.config import load_config
    from refusal.organisms.recipe import planted_basis

    run, _, _ = chain
    sel, _ = read_tensors(run / "04_ablate" / "selected.safetensors")
    assert abs(float(sel["direction"] @ planted_basis(load_config(MODEL))[:, 0])) >= 0.9


def _rates(run):
    from refusal.artifacts import read_json
    from refusal.report.findings import rate_record

    rates = read_json(run / "04_ablate" / "summary.json")["rates"]
    return lambda condition, set_name="eval", side="harmful": rate_record(rates, condition, set_name, side)


def test_ablating_the_selected_direction_removes_refusal(chain):
    run, _, _ = chain
    r = _rates(run)
    print("baseline", r("baseline"), "selected", r("selected"))
    assert r("selected")["refusal"] <= 0.10
    assert r("selected", "independent")["refusal"] <= 0.25  # other origin and styles: the same direction carries it


def test_planted1_verdict_is_centralized(chain):
    from refusal.artifacts import read_json

    run, _, _ = chain
    v = read_json(run / "04_ablate" / "summary.json")["verdict"]
    assert v["verdict"] == "centralized", v


# The control direction has zeros on the outlier (massive-activation) coordinates; see
# refusal.intervention.ablation.random_direction for why.
def test_random_direction_control_leaves_refusal(chain):
    from refusal.artifacts import read_json

    run, _, _ = chain
    summary = read_json(run / "04_ablate" / "summary.json")
    r = _rates(run)
    base, rand = r("baseline"), r("random")
    assert rand["n"] == base["n"]  # the prompts are dealt between the random directions, each judged once
    assert abs(rand["refusal"] - base["refusal"]) < 0.05 + 1 / base["n"]
    assert summary["random_control"]["n_directions"] == PARAMS["04_ablate"]["n_random"]


def test_ablation_stage_records_baseline_selection_and_verdict(chain):
    from refusal.artifacts import read_json, read_tensors

    run, _, _ = chain
    summary = read_json(run / "04_ablate" / "summary.json")
    r = _rates(run)
    assert r("baseline")["n"] + r("baseline")["n_unscored"] == PARAMS["04_ablate"]["n_eval"]
    assert r("baseline", "independent")["n"] + r("baseline", "independent")["n_unscored"] == PARAMS["04_ablate"]["n_independent"]
    assert r("baseline")["refusal"] >= 0.5  # the organism refuses at baseline
    assert r("baseline", side="harmless")["refusal"] <= 0.2  # and answers harmless prompts
    assert summary["verdict"]["verdict"] in {"centralized", "distributed", "resistant"}
    sel, meta = read_tensors(run / "04_ablate" / "selected.safetensors")
    assert abs(float(sel["direction"].norm()) - 1) < 1e-5 and meta["layer"] == summary["selected"]["layer"]


def test_orthogonalized_model_matches_runtime_ablation(chain):
    from refusal.artifacts import read_json

    run, _, _ = chain
    eq = read_json(run / "05_orthogonalize" / "equivalence.json")
    assert eq["max_abs_logit_diff"] <= 3e-4
    g = read_json(run / "05_orthogonalize" / "generations.json")["summary"]
    print(g)
    assert g["n"] == 2 * (PARAMS["04_ablate"]["n_eval"] + PARAMS["04_ablate"]["n_independent"])
    assert g["identical_runtime_vs_edited"] >= 0.9  # same greedy tokens, float ties aside
    assert abs(g["eval_harmful_refusal_edited"] - g["eval_harmful_refusal_selected"]) <= 2 / PARAMS["04_ablate"]["n_eval"]


def test_nbval_reexecution_reproduces_checked_cells(chain):
    _, out, env = chain
    cheap = [str(out / n) for n in ("01_data.ipynb", "03_separability.ipynb", "07_compare.ipynb")]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", *cheap], cwd=REPO_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout


def _image_outputs(nb_path) -> int:
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_every_figure_is_saved_as_png_and_svg(chain):
    from refusal.report.findings import comparison_dir

    run, out, _ = chain
    for nb in sorted(out.glob("0*.ipynb")):
        folder = comparison_dir(run.parent) if nb.stem == "07_compare" else run / nb.stem
        pngs = sorted(p.stem for p in (folder / "figures").glob("*.png"))
        svgs = sorted(p.stem for p in (folder / "figures").glob("*.svg"))
        print(nb.stem, _image_outputs(nb), pngs)
        assert pngs == svgs, nb.stem
        assert len(pngs) == _image_outputs(nb), (nb.stem, pngs)  # one saved figure per figure shown


# The site as `make report` builds it without Quarto, from this chain's executed notebooks and runs/: the project
# laid out as the report workflow leaves it, then the pre-render step and the offline preview, then the site checks.
def test_site_preview_from_the_chain_is_navigable_with_no_broken_link(chain, tmp_path):
    import shutil

    from refusal.report import quarto, site

    run, out, _ = chain
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "_quarto.yml", project)
    shutil.copytree(REPO_ROOT / "site" / "templates", project / "site" / "templates")
    executed = sorted(out.glob("0*.ipynb"))
    for nb in executed:
        dst = project / (site.COMPARE_PAGE if nb.stem == "07_compare" else f"{site.MODELS_DIR}/{MODEL}/{nb.name}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(nb, dst)
    site.prepare(project, run.parent)
    index = site.preview(project)
    site_dir = project / "_site"
    assert index == site_dir / "index.html" and index.is_file()
    lay = quarto.layout(project)
    assert all(quarto.hidden_component(t) is None for t in lay.targets)
    pages = {f"{site.MODELS_DIR}/{MODEL}/{nb.name}" for nb in executed if nb.stem != "07_compare"} | {site.COMPARE_PAGE}
    assert set(lay.targets) == pages | {site.INDEX}  # every executed notebook is rendered, nothing else
    assert set(lay.nav_pages()) == set(lay.targets)  # and reachable from the navigation
    for href in lay.nav_pages():
        assert (site_dir / lay.output_of(href)).is_file(), href
    assert site.broken_links(site_dir) == []
    assert site.check_site(project) == []
    text = index.read_text()
    assert f"<code>{MODEL}</code>" in text and "centralized" in text  # the findings, read from the chain's runs/
    compare = (site_dir / "site/compare/07_compare.html").read_text()
    assert 'href="findings.csv"' in compare and (site_dir / "site/compare/findings.csv").read_text().startswith("model,")
    print("site pages:", sorted(lay.targets.values()))
