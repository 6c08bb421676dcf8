"""The published site: Quarto's layout rules, the pre-render step, the offline preview and the site checks.

Small synthetic projects (the real `_quarto.yml` and index template, a few tiny executed notebooks made with
nbformat, fake artifacts) are built into a preview and checked: the index at the site root, every navigation page
rendered, every executed notebook rendered and in the navigation, no broken internal link. Three tests show that
the check fails on each way the site used to be broken: a render target under a folder starting with `_`, the
index not at the root, a broken internal link. The notebook chain's test (tests/test_notebooks.py) builds the same
preview from real stage artifacts.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import pandas as pd
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from refusal.report import quarto, site
from refusal.artifacts import write_csv, write_json
from refusal.report.findings import FINDINGS_FILES, comparison_dir, export_findings, findings_table
from refusal.paths import REPO_ROOT


def _rates(f, conds):
    """Stage 04's rates records (condition, set, side, n, n_unscored, refusal and its interval, ...)."""
    out = []
    for (cond, set_name, side), r in conds.items():
        out.append({"condition": cond, "set": set_name, "side": side, "n": 100, "n_unscored": 1, "refusal": f(r),
                    "refusal_low": f(r - 0.05), "refusal_high": f(r + 0.05), "full_compliance": f(0.5),
                    "full_compliance_low": f(0.4), "full_compliance_high": f(0.6), "mean_compliance": f(0.81),
                    "mean_coherence": f(0.88)})
    return out


def _fake_run(root, model, seed):
    d = root / model
    f = lambda x: round(x + seed / 1000, 4)  # noqa: E731  distinctive numbers per model
    write_json(d / "03_separability" / "best_candidate.json",
               {"by": "d_val", "layer": 7, "pos_index": 4, "position": -1, "d_test": f(1.234)})
    pd.DataFrame([{"layer": 9, "position": -1, "d_test": f(1.7), "d_test_lo": f(1.5), "d_test_hi": f(1.9)},
                  {"layer": 7, "position": -1, "d_test": f(1.234), "d_test_lo": f(1.0), "d_test_hi": f(1.5)}]).pipe(
        lambda x: write_csv(d / "03_separability" / "separability.csv", x))
    write_json(d / "03_separability" / "cross_layer.json",
               {"positions": [-2, -1], "effective_rank": [{"participation_ratio": 3.0}, {"participation_ratio": f(2.5)}]})
    write_json(d / "04_ablate" / "summary.json", {
        "rates": _rates(f, {("baseline", "eval", "harmful"): 0.61, ("baseline", "eval", "harmless"): 0.03,
                            ("selected", "eval", "harmful"): 0.06, ("selected", "eval", "harmless"): 0.09,
                            ("random", "eval", "harmful"): 0.59, ("baseline", "independent", "harmful"): 0.42,
                            ("selected", "independent", "harmful"): 0.21}),
        "judge": "offline-v2", "n_unscored": 7,
        "selected": {"layer": 9, "position": -1},
        "random_control": {"range": [{"set": "eval", "side": "harmful", "refusal_min": f(0.5), "refusal_max": f(0.7)}]},
        "original_rule": {"agrees": True},
        "verdict": {"verdict": "centralized", "effective_rank": 1, "k1_compliance": f(0.81), "max_compliance": f(0.83),
                    "basis": "top_layers", "gain_over_chance": f(0.02)},
    })
    write_json(d / "06_benchmark" / "capability.json", {"kl_ce": {"first_token_kl": f(0.0421), "ce_delta": 0.01}})
    return d


def _notebook(path: Path, title: str, text: str = "") -> Path:
    """A tiny executed notebook: a titled markdown cell and a code cell with its output."""
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}\n\n{text}"),
                             new_code_cell("print(1 + 1)", outputs=[new_output("stream", name="stdout", text="2\n")],
                                           execution_count=1)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


STAGES = [("01_data", "01 · Data"), ("03_separability", "03 · Separability"), ("04_ablate", "04 · Ablation")]
DOWNLOAD_TEXT = "Download the findings table: [findings.csv](findings.csv), [findings.json](findings.json)."


def _project(tmp: Path, models=("model_a", "model_b"), compare: str | None = site.COMPARE_PAGE) -> tuple[Path, Path]:
    """A project laid out as `make report` leaves it (real _quarto.yml and template); returns (project, runs)."""
    project, runs = tmp / "project", tmp / "runs"
    project.mkdir()
    shutil.copy(REPO_ROOT / "_quarto.yml", project / "_quarto.yml")
    shutil.copytree(REPO_ROOT / "site" / "templates", project / "site" / "templates")
    for i, m in enumerate(models):
        _fake_run(runs, m, i)
        for stage, title in STAGES:
            _notebook(project / site.MODELS_DIR / m / f"{stage}.ipynb", title, "See the [findings](../../../index.qmd).")
    if compare:
        _notebook(project / compare, "07 · Comparison across models", DOWNLOAD_TEXT)
        export_findings(findings_table(root=runs), comparison_dir(runs))
    return project, runs


def _build(project: Path, runs: Path) -> Path:
    site.prepare(project, runs)
    return site.preview(project)


# ---------------------------------------------------------------------------------------------------------------
# The findings on the index page


def test_index_numbers_all_come_from_artifacts(tmp_path):
    for i, m in enumerate(["model_a", "model_b"]):
        _fake_run(tmp_path, m, i)

    table, notes = site.findings_markdown(findings_table(root=tmp_path))
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert len(rows) == 2
    artifact_text = " ".join(p.read_text() for p in [*tmp_path.rglob("*.json"), *tmp_path.rglob("*.csv")])
    artifact_numbers = {float(x) for x in re.findall(r"-?\d+\.?\d*", artifact_text)}
    for row in rows:
        for num in re.findall(r"(?<![\w`])-?\d+\.\d+|(?<![\w.`-])\d+(?![\w.])", row):
            value = float(num)
            # each printed number is an artifact value rounded to the printed digits
            digits = len(num.split(".")[1]) if "." in num else 0
            assert any(abs(round(a, digits) - value) < 1e-9 for a in artifact_numbers), (num, row)
    assert "centralized" in rows[0] and "offline-v2" in notes and "n = 100" in notes
    assert "sandwich" not in notes


def test_notes_say_why_a_sandwich_norm_model_has_no_benchmark(tmp_path):
    for i, m in enumerate(["gemma3_refusal", "smollm2_refusal"]):
        d = _fake_run(tmp_path, m, i)
        if m.startswith("gemma"):
            (d / "06_benchmark" / "capability.json").unlink()  # stages 05-06 do not run for Gemma 3
    table, notes = site.findings_markdown(findings_table(root=tmp_path))
    assert "No edited-weights or benchmark columns for `gemma3_refusal`: its" in notes
    assert "smollm2_refusal" not in notes


def test_findings_export_csv_and_json_hold_the_table(tmp_path):
    import pandas as pd

    for i, m in enumerate(["model_a", "model_b"]):
        _fake_run(tmp_path, m, i)
    (tmp_path / "model_b" / "06_benchmark" / "capability.json").unlink()  # a missing stage: NaN cells
    table = findings_table(root=tmp_path)
    paths = export_findings(table, comparison_dir(tmp_path))
    assert paths["csv"].name == FINDINGS_FILES[0] and paths["json"].name == FINDINGS_FILES[1]
    assert paths["csv"].parent == tmp_path / "_compare" / "07_compare"
    back = pd.read_csv(paths["csv"])
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    data = json.loads(paths["json"].read_text())
    assert data["columns"] == list(table.columns) and len(data["rows"]) == 2
    assert data["rows"][0]["d_test"] == table.loc[0, "d_test"] and data["rows"][0]["verdict"] == "centralized"
    assert data["rows"][1]["harmless_first_token_kl"] is None  # NaN is null, not an invalid JSON NaN


# ---------------------------------------------------------------------------------------------------------------
# Quarto's rules (refusal.report.quarto)


def test_render_globs_follow_quarto():
    rx = quarto.glob_regex("site/models/*/*.ipynb")
    assert rx.match("site/models/a/01_data.ipynb")
    assert rx.match("x/site/models/a/01_data.ipynb")  # Quarto prefixes **/ to a glob that does not start with /
    assert not rx.match("site/models/a/b/01_data.ipynb") and not rx.match("site/models/a/01_data.ipynb.bak")
    assert not quarto.glob_regex("/site/*.qmd").match("x/site/a.qmd")  # a leading / anchors at the project
    assert quarto.glob_regex("site/**/*.ipynb").match("site/a/b/c.ipynb")
    assert quarto.glob_regex("site/**/*.ipynb").match("site/c.ipynb")
    assert quarto.glob_regex("site/{a,b}/[0-9]*.qmd").match("site/b/07.qmd")


def test_ignore_rule_and_output_paths_follow_quarto():
    assert quarto.hidden_component("site/models/_compare/07_compare.ipynb") == "_compare"
    assert quarto.hidden_component("site/.hidden/x.qmd") == ".hidden"
    assert quarto.hidden_component("site/models/a/07_compare.ipynb") is None  # "_" inside a name is fine
    assert quarto.ignored_by_quarto("_site/index.qmd", "_site")
    assert quarto.ignored_by_quarto("docs/README.md", "_site") == "Quarto ignores README files"
    assert quarto.ignored_by_quarto("a/venv/x.qmd", "_site") and quarto.ignored_by_quarto("venv/x.qmd", "_site")
    assert quarto.ignored_by_quarto("site/venv.qmd", "_site") is None  # only folders of that name
    assert quarto.ignored_by_quarto("site/models/a/01_data.ipynb", "_site") is None
    assert quarto.output_path("site/index.qmd") == "site/index.html"  # not the site root
    assert quarto.output_path("index.qmd") == "index.html"
    assert quarto.output_path("site/models/a/01_data.ipynb") == "site/models/a/01_data.html"
    with pytest.raises(quarto.QuartoLayoutError):
        quarto.output_path("site/x.py")


def test_metadata_files_merge_over_quarto_yml_and_a_missing_one_is_skipped(tmp_path):
    (tmp_path / "_quarto.yml").write_text(yaml.safe_dump({
        "project": {"type": "website", "render": ["index.qmd"]}, "metadata-files": ["_nav.yml", "_absent.yml"],
        "website": {"title": "t", "navbar": {"left": [{"href": "index.qmd", "text": "Home"}]}}}))
    cfg = quarto.load_config(tmp_path)  # _nav.yml does not exist yet (the pre-render step writes it)
    assert cfg["website"]["navbar"]["left"] == [{"href": "index.qmd", "text": "Home"}] and "metadata-files" not in cfg
    (tmp_path / "_nav.yml").write_text(yaml.safe_dump({"website": {
        "navbar": {"left": [{"href": "b.qmd", "text": "B"}, {"href": "index.qmd", "text": "Home"}]},
        "sidebar": {"contents": ["b.qmd"]}}}))
    cfg = quarto.load_config(tmp_path)
    # Quarto concatenates lists without repeats and merges mappings
    assert cfg["website"]["navbar"]["left"] == [{"href": "index.qmd", "text": "Home"}, {"href": "b.qmd", "text": "B"}]
    assert cfg["website"]["sidebar"]["contents"] == ["b.qmd"] and cfg["website"]["title"] == "t"


def test_the_real_quarto_yml_publishes_the_layout_the_workflow_writes():
    cfg = quarto.load_config(REPO_ROOT)
    project = cfg["project"]
    assert project["type"] == "website" and project["output-dir"] == "_site"
    for entry in project["render"]:
        assert quarto.hidden_component(entry.lstrip("!/")) is None, entry
    assert "index.qmd" in project["render"] and quarto.output_path(site.INDEX) == "index.html"
    assert any(quarto.glob_regex(e).match(site.COMPARE_PAGE) for e in project["render"] if quarto.is_glob(e))
    assert any(quarto.glob_regex(e).match(f"{site.MODELS_DIR}/m/01_data.ipynb") for e in project["render"])
    assert quarto.hidden_component(site.COMPARE_PAGE) is None and quarto.hidden_component(site.MODELS_DIR) is None
    assert (REPO_ROOT / project["pre-render"]).is_file()
    assert site.NAV_FILE in yaml.safe_load((REPO_ROOT / "_quarto.yml").read_text())["metadata-files"]
    compare_dir = str(Path(site.COMPARE_PAGE).parent)
    for name in FINDINGS_FILES:
        assert any(quarto.glob_regex(g).match(f"{compare_dir}/{name}") for g in project["resources"]), name
    assert cfg["execute"]["enabled"] is False  # Quarto renders the stored outputs, it does not re-run the stages


def test_pre_render_writes_index_navigation_and_downloads(tmp_path):
    project, runs = _project(tmp_path)
    written = site.prepare(project, runs)
    assert {p.relative_to(project).as_posix() for p in written} == {
        "index.qmd", "_navigation.yml", "site/compare/findings.csv", "site/compare/findings.json"}
    index = (project / "index.qmd").read_text()
    assert "## Findings" in index and "| `model_a`" in index and "| `model_b`" in index and "$" not in index
    assert f"]({site.COMPARE_PAGE})" in index and "[01 · Data](site/models/model_b/01_data.ipynb)" in index
    nav = yaml.safe_load((project / "_navigation.yml").read_text())["website"]
    sections = {e["section"]: [c["href"] for c in e["contents"]] for e in nav["sidebar"]["contents"] if "section" in e}
    assert sections == {m: [f"site/models/{m}/{s}.ipynb" for s, _ in STAGES] for m in ("model_a", "model_b")}
    assert nav["sidebar"]["contents"][1] == {"href": site.COMPARE_PAGE, "text": "07 · Comparison across models"}
    assert nav["navbar"]["left"] == [{"href": site.COMPARE_PAGE, "text": "Comparison"}]
    assert (project / "site/compare/findings.csv").read_bytes() == (comparison_dir(runs) / "findings.csv").read_bytes()


def test_preview_is_laid_out_like_quarto_and_passes_every_check(tmp_path):
    project, runs = _project(tmp_path)
    index = _build(project, runs)
    out = project / "_site"
    assert index == out / "index.html" and index.is_file()
    lay = quarto.layout(project)
    # one to one: every render target at its source path with .html, nothing else rendered
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.html")} == set(lay.targets.values())
    assert set(lay.targets) == {"index.qmd", site.COMPARE_PAGE} | {f"site/models/{m}/{s}.ipynb" for m in ("model_a", "model_b")
                                                                for s, _ in STAGES}
    assert set(lay.nav_pages()) == set(lay.targets)  # the navigation reaches every page
    assert site.check_site(project) == []
    assert site.broken_links(out) == []
    # the comparison page links its downloads, which are published next to it
    compare = (out / "site/compare/07_compare.html").read_text()
    assert 'href="findings.csv"' in compare and (out / "site/compare/findings.csv").is_file()
    assert (out / "site/compare/findings.json").is_file()
    # a model page shows the whole navigation, with links relative to itself
    page = (out / "site/models/model_a/03_separability.html").read_text()
    for href in ("../../../index.html", "../../compare/07_compare.html", "01_data.html", "../model_b/04_ablate.html"):
        assert f"href='{href}'" in page, href
    assert 'href="../../../index.html"' in page  # the notebook's own link to index.qmd, rewritten as Quarto does
    assert "| `model_a`" not in index.read_text() and "<table>" in index.read_text()


def test_preview_renders_front_matter_and_callouts():
    page = ('---\ntitle: "The question"\nsubtitle: "a subtitle"\n---\n\n::: {.callout-note}\nGenerated by `make report`.\n:::\n\n'
            "## Findings\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nSee [a site](https://example.org/x.ipynb).\n")
    from refusal.report.preview import preview_markdown_html

    out = preview_markdown_html(page, "index")
    assert "<h1>The question</h1>" in out and "a subtitle" in out
    assert ":::" not in out and "{.callout" not in out  # Quarto's fenced div is not shown as text
    assert "<div class='callout callout-note'><p>Generated by <code>make report</code>.</p>" in out
    assert "<table>" in out and "<h2>Findings</h2>" in out
    assert 'href="https://example.org/x.ipynb"' in out


def test_no_comparison_yet_gives_no_dangling_link(tmp_path):
    project, runs = _project(tmp_path, models=("model_a",), compare=None)
    _build(project, runs)
    assert "No comparison page yet" in (project / "index.qmd").read_text()
    assert site.check_site(project) == []


# ---------------------------------------------------------------------------------------------------------------
# The check fails on each way the site used to be broken


def _set_render(project: Path, render: list[str], nav_left: list[dict] | None = None) -> None:
    cfg = yaml.safe_load((project / "_quarto.yml").read_text())
    cfg["project"]["render"] = render
    if nav_left is not None:
        cfg["website"]["navbar"]["left"] = nav_left
    (project / "_quarto.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_a_render_target_under_an_underscore_folder_breaks_the_site(tmp_path):
    # the old layout: the comparison executed into site/models/_compare/
    project, runs = _project(tmp_path, compare="site/models/_compare/07_compare.ipynb")
    _set_render(project, ["index.qmd", "site/models/**/*.ipynb"])
    _build(project, runs)
    problems = site.check_site(project)
    assert any("executed notebook site/models/_compare/07_compare.ipynb is not a render target: its component "
               "'_compare' starts with '_'" in p for p in problems), problems
    assert any("site/models/_compare/07_compare.ipynb: matches the render list but is never rendered" in p
               for p in problems), problems
    assert not (project / "_site/site/models/_compare").exists()  # as Quarto: not rendered
    # named explicitly, it is an error before anything is rendered (Quarto would drop it silently)
    _set_render(project, ["index.qmd", "site/models/*/*.ipynb", "site/models/_compare/07_compare.ipynb"])
    with pytest.raises(quarto.QuartoLayoutError, match="'_compare' starts with '_'"):
        site.preview(project)
    assert any("'_compare' starts with '_'" in p for p in site.check_site(project))


def test_the_index_not_at_the_site_root_breaks_the_site(tmp_path):
    # the old layout: the index page generated as site/index.qmd
    project, runs = _project(tmp_path)
    site.prepare(project, runs)
    shutil.move(project / "index.qmd", project / "site" / "index.qmd")
    (project / "_navigation.yml").write_text((project / "_navigation.yml").read_text().replace(
        "href: index.qmd", "href: site/index.qmd"))
    _set_render(project, ["site/index.qmd", "site/models/*/*.ipynb", "site/compare/*.ipynb"],
                nav_left=[{"href": "site/index.qmd", "text": "Findings"}])
    site.preview(project)
    assert (project / "_site/site/index.html").is_file() and not (project / "_site/index.html").exists()
    problems = site.check_site(project)
    assert any(p.startswith("no render target is written to the site root's index.html") and
               "site/index.qmd -> site/index.html" in p for p in problems), problems
    assert any(p.endswith("_site/index.html: missing") for p in problems), problems


def test_a_broken_internal_link_breaks_the_site(tmp_path):
    project, runs = _project(tmp_path)
    _notebook(project / "site/models/model_a/04_ablate.ipynb", "04 · Ablation",
              "Compare with [the old comparison](../_compare/07_compare.ipynb) and [a figure](fig.png).")
    _build(project, runs)
    problems = site.check_site(project)
    assert problems == [
        "broken link in site/models/model_a/04_ablate.html: ../_compare/07_compare.ipynb (no site/models/_compare/07_compare.ipynb)",
        "broken link in site/models/model_a/04_ablate.html: fig.png (no site/models/model_a/fig.png)"], problems
    # a download that was not copied is a broken link too
    (project / "_site/site/compare/findings.json").unlink()
    assert "broken link in site/compare/07_compare.html: findings.json (no site/compare/findings.json)" in site.check_site(project)


def test_link_crawl_follows_relative_absolute_and_folder_links(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "index.html").write_text("ok")
    (tmp_path / "x.css").write_text("")
    (tmp_path / "index.html").write_text(
        "<a href='a/b/'>folder</a><a href='/a/b/index.html#top'>absolute</a><link href='x.css' rel='stylesheet'>"
        "<a href='https://example.org/nowhere'>external</a><a href='#frag'>in page</a><a href='mailto:a@b'>m</a>"
        "<img src='data:image/png;base64,AAAA'><a href='a/missing.html?q=1'>missing</a><script src='../out.js'></script>"
        "<a href='a/c/'>folder without index</a>")
    assert site.broken_links(tmp_path) == [
        "index.html: a/missing.html?q=1 (no a/missing.html)", "index.html: ../out.js (leaves the site)",
        "index.html: a/c/ (no a/c/index.html)"]


def test_navigation_to_a_page_that_is_not_rendered_is_an_error(tmp_path):
    project, runs = _project(tmp_path)
    site.prepare(project, runs)
    _set_render(project, ["index.qmd", "site/models/*/*.ipynb"])  # the comparison is no longer rendered
    with pytest.raises(quarto.QuartoLayoutError, match="navigation links 'site/compare/07_compare.ipynb', which is "
                                                       "not a render target"):
        quarto.layout(project)


# ---------------------------------------------------------------------------------------------------------------
# The workflow that publishes the site


def _workflow() -> dict:
    wf = yaml.safe_load((REPO_ROOT / ".github/workflows/site.yml").read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def test_workflow_pins_the_quarto_of_environment_yml():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pins = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("quarto")]
    assert len(pins) == 1 and re.fullmatch(r"quarto=1\.8\.\d+", pins[0]), pins  # one exact 1.8.x release
    version = pins[0].split("=")[1]
    wf = _workflow()
    setups = [s for job in wf["jobs"].values() for s in job.get("steps", [])
              if str(s.get("uses", "")).startswith("quarto-dev/quarto-actions/setup")]
    assert setups, "the workflow installs Quarto"
    for s in setups:
        v = str(s["with"]["version"])
        assert v == version or v == "${{ env.QUARTO_VERSION }}" and str(wf["env"]["QUARTO_VERSION"]) == version, s


def test_workflow_tests_pull_requests_caches_and_publishes_site():
    wf = _workflow()
    assert "pull_request" in wf["on"] and "push" in wf["on"]
    jobs = wf["jobs"]
    runs = {name: " ".join(str(s.get("run", "")) for s in job.get("steps", [])) for name, job in jobs.items()}
    test_jobs = [n for n, r in runs.items() if "make test" in r]
    assert test_jobs and all("pull_request" in str(jobs[n].get("if", "pull_request")) for n in test_jobs)
    build = next(n for n, r in runs.items() if "make report" in r)
    steps = jobs[build]["steps"]
    cached = " ".join(str(s.get("with", {}).get("path", "")) for s in steps if str(s.get("uses", "")).startswith("actions/cache"))
    assert "refusal-representations" in cached and "runs" in cached and "site/models" in cached
    keys = [str(s["with"]["key"]) for s in steps if str(s.get("uses", "")).startswith("actions/cache")]
    assert all("hashFiles(" in k for k in keys), keys  # keyed on what invalidates them
    assert any(s.get("with", {}).get("cache") == "pip" for s in steps if str(s.get("uses", "")).startswith("actions/setup-python"))
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_site"
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages") for j in jobs.values() for s in j.get("steps", []))


# Numbers in names are not figures: model names, bit widths, dtypes, layer-0; nor are list-item numbers.
_NAMES = re.compile(r"`[^`]*`|\]\([^)]*\)|https?://\S+|<[^>]+>|\bGemma \d\b|\b[\w.-]*[A-Za-z][\w.-]*\b"
                    r"|(?m:^\s*\d+\.(?=\s))")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def typed_numbers(page: str, allowed: set[float]) -> list[str]:
    """Numbers of a rendered page that are neither in ``allowed`` (to their printed digits) nor part of a name."""
    out = []
    for num in _NUMBER.findall(_NAMES.sub(lambda m: "#" * len(m.group(0)), page.split("---", 2)[-1])):
        digits = len(num.split(".")[1]) if "." in num else 0
        if not any(abs(round(a, digits) - float(num)) < 1e-9 for a in allowed):
            out.append(num)
    return out


def _allowed_numbers(runs: Path) -> set[float]:
    """Every number an artifact of ``runs`` holds, the published study's figures, the data size, the 95% level."""
    from refusal.data import default_pairs
    from refusal.report.findings import PUBLISHED

    text = " ".join(p.read_text() for p in [*runs.rglob("*.json"), *runs.rglob("*.csv")])
    nums = {float(x) for x in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", text)}
    nums |= {float(p["peak_single_direction_compliance"]) for p in PUBLISHED}
    return nums | {float(len(default_pairs())), 95.0}


def _fake_agreement(runs: Path) -> None:
    k = lambda x: {"kappa": x, "low": x - 0.11, "high": x + 0.09, "n": 157}  # noqa: E731
    write_json(runs / "_compare" / "08_judges" / "agreement.json", {
        "n": 157, "judge_model": "qwen25_coder_15b", "n_unscored_llm": 3, "kappa_refusal": k(0.713),
        "kappa_3level": k(0.521), "kappa_binary": k(0.6), "vs_labels": {"offline": {"n": 60, "kappa": k(0.881)}}})


def test_no_number_on_the_index_is_typed_by_hand(tmp_path):
    """Every figure on the rendered index is read from an artifact (or is the published study's, labelled)."""
    project, runs = _project(tmp_path)
    _fake_agreement(runs)
    page = site.write_index(project, runs).read_text()
    assert "0.71 [0.60, 0.80]" in page and "n = 157" in page  # the judges' agreement, from its artifact
    assert typed_numbers(page, _allowed_numbers(runs)) == []


def test_a_figure_typed_into_the_template_is_caught(tmp_path):
    project, runs = _project(tmp_path)
    _fake_agreement(runs)
    tmpl = project / site.TEMPLATE
    tmpl.write_text(tmpl.read_text().replace("## Limitations", "## Limitations\n\n- |cos| 0.95 at full size, 11 nats."))
    page = site.write_index(project, runs).read_text()
    assert typed_numbers(page, _allowed_numbers(runs)) == ["0.95", "11"]
