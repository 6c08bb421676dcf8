"""The independent eval set (``default_data/independent_*.json``): counts, metadata, style mix, and that no prompt
repeats or nearly copies a prompt of any other dataset of the project (the near-copy rule of
scripts/build_default_data.py: content-word Jaccard above NEAR_COPY_JACCARD)."""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import tomllib
from collections import Counter

import pytest

from refusal import data as D
from refusal.data import defaults as defaults_module
from refusal.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import build_default_data as B  # noqa: E402

N_HARMFUL, N_HARMLESS = 152, 120  # 8 per category over the 19 categories of harmful_eval_categories.json
MIN_PER_CATEGORY, MIN_PER_STYLE, MIN_SENSITIVE_SHARE, MAX_CHARS = 8, 15, 0.40, 900
FILES = ("independent_harmful.json", "independent_harmful_meta.json",
         "independent_harmless.json", "independent_harmless_meta.json")


@pytest.fixture(scope="module")
def ind():
    return {"harmful": D.default_independent_harmful(), "harmless": D.default_independent_harmless(),
            "meta": D.default_independent_meta()}


@pytest.fixture(scope="module")
def others() -> dict[str, list[str]]:
    """Every other prompt list of the project, by file."""
    def read(name):
        return json.loads((REPO_ROOT / "lib/refusal/default_data" / name).read_text(encoding="utf-8"))

    return {
        "pairs.json": [p for pair in D.default_pairs() for p in pair],
        "harmful_eval.json": D.default_harmful_eval(),
        "harmless_eval.json": D.default_harmless_eval(),
        "organism_harmless.json": read("organism_harmless.json"),
        "organism_instructions.json": [prompt for prompt, _ in read("organism_instructions.json")],
        "judge_labels.json": [row["prompt"] for row in read("judge_labels.json")],
    }


def test_counts_and_prompt_format(ind):
    assert len(ind["harmful"]) == N_HARMFUL and len(ind["harmless"]) == N_HARMLESS
    for p in ind["harmful"] + ind["harmless"]:
        assert p == p.strip() and 0 < len(p) < MAX_CHARS, p
        assert "{" not in p and "}" not in p, p


def test_meta_aligned_with_allowed_values(ind):
    meta = ind["meta"]
    assert set(meta) == {"harmful", "harmless"}
    assert len(meta["harmful"]) == len(ind["harmful"]) and len(meta["harmless"]) == len(ind["harmless"])
    categories = set(D.default_harmful_eval_categories())
    for m in meta["harmful"]:
        assert set(m) == {"category", "style"} and m["category"] in categories and m["style"] in D.INDEPENDENT_STYLES
    for m in meta["harmless"]:
        assert set(m) == {"topic", "style"}
        assert m["topic"] in D.INDEPENDENT_TOPICS and m["style"] in D.INDEPENDENT_STYLES
    assert D.INDEPENDENT_STYLES == ("long", "roleplay", "embedded", "hypothetical", "casual")
    assert D.INDEPENDENT_TOPICS == ("sensitive", "ordinary")


def test_every_category_and_style_is_covered(ind):
    meta = ind["meta"]
    per_cat = Counter(m["category"] for m in meta["harmful"])
    assert set(per_cat) == set(D.default_harmful_eval_categories())  # all 19 categories of the held-out eval
    assert min(per_cat.values()) >= MIN_PER_CATEGORY, per_cat
    for side in ("harmful", "harmless"):
        per_style = Counter(m["style"] for m in meta[side])
        assert set(per_style) == set(D.INDEPENDENT_STYLES), (side, per_style)
        assert min(per_style.values()) >= MIN_PER_STYLE, (side, per_style)
        assert max(per_style.values()) - min(per_style.values()) <= 2, (side, per_style)  # roughly equal shares
    sensitive = sum(1 for m in meta["harmless"] if m["topic"] == "sensitive")
    assert sensitive / len(meta["harmless"]) >= MIN_SENSITIVE_SHARE
    for style in D.INDEPENDENT_STYLES:  # both topic kinds in every style, so style does not stand for topic
        assert {m["topic"] for m in meta["harmless"] if m["style"] == style} == {"sensitive", "ordinary"}


def test_long_prompts_have_several_sentences(ind):
    for side in ("harmful", "harmless"):
        for p, m in zip(ind[side], ind["meta"][side]):
            if m["style"] == "long":
                n = len(re.findall(r"[.?!](?:\s|$)", p))
                assert 3 <= n <= 6, (n, p)


def test_prompts_unique_and_not_near_copies_of_each_other(ind):
    prompts = ind["harmful"] + ind["harmless"]
    assert len({B.norm(p) for p in prompts}) == len(prompts)
    words = [B.content_words(p) for p in prompts]
    near = [(prompts[i], prompts[k], j) for i in range(len(prompts)) for k in range(i + 1, len(prompts))
            if (j := B.jaccard(words[i], words[k])) > B.NEAR_COPY_JACCARD]
    assert not near, near


def test_disjoint_from_every_other_dataset(ind, others):
    """No prompt repeats, nearly copies, or contains verbatim a prompt of another dataset of the project."""
    assert sum(map(len, others.values())) > 1500  # every list was read
    ours = ind["harmful"] + ind["harmless"]
    seen = {B.norm(o): name for name, items in others.items() for o in items}
    other_words = [(name, o, B.content_words(o)) for name, items in others.items() for o in items]

    def words_only(t):
        return " " + " ".join(re.findall(r"[a-z0-9']+", t.lower())) + " "

    long_others = [(name, o, words_only(o)) for name, items in others.items() for o in items if len(o.split()) >= 4]
    for p in ours:
        assert B.norm(p) not in seen, (p, seen.get(B.norm(p)))
        w = B.content_words(p)
        near = [(name, o, j) for name, o, ow in other_words if (j := B.jaccard(w, ow)) > B.NEAR_COPY_JACCARD]
        assert not near, (p, near)
        pw = words_only(p)
        assert not [(name, o) for name, o, ow in long_others if ow in pw], p


def test_near_copy_rule_has_teeth():
    """The rule the disjointness test relies on flags a light rewording of an existing prompt."""
    original = D.default_harmful_eval()[0]
    reworded = original.replace("?", "") + " please"
    assert B.jaccard(B.content_words(reworded), B.content_words(original)) > B.NEAR_COPY_JACCARD


def test_meta_mismatch_is_a_data_error_naming_the_file(monkeypatch):
    real = defaults_module._default

    def short_meta(name):
        value = real(name)
        return value[:-1] if name == "independent_harmless_meta.json" else value

    monkeypatch.setattr(defaults_module, "_default", short_meta)
    with pytest.raises(D.DataError, match=r"independent_harmless_meta\.json: 119 metadata entries for 120 prompts"):
        D.default_independent_meta()

    def bad_style(name):
        value = real(name)
        if name == "independent_harmful_meta.json":
            value = [dict(m) for m in value]
            value[5]["style"] = "poem"
        return value

    monkeypatch.setattr(defaults_module, "_default", bad_style)
    with pytest.raises(D.DataError, match=r"independent_harmful_meta\.json: item \[5\]\.style = 'poem' is not one of"):
        D.default_independent_meta()


@pytest.mark.parametrize(
    "data, what",
    [
        ({"style": "long"}, "expected a JSON list"),
        ([{"style": "long"}], "1 metadata entries for 2 prompts"),
        ([{"style": "long"}, "casual"], r"item \[1\]: expected an object"),
        ([{"style": "long"}, {"style": "long", "topic": "x"}], r"item \[1\]: fields \['style', 'topic'\]"),
        ([{"style": "long"}, {"style": "sonnet"}], r"item \[1\]\.style = 'sonnet' is not one of"),
    ],
)
def test_validate_meta_names_file_and_place(data, what):
    with pytest.raises(D.DataError, match=rf"meta\.json: {what}"):
        D.validate_meta(data, 2, {"style": D.INDEPENDENT_STYLES}, "meta.json")
    ok = [{"style": "long"}, {"style": "casual"}]
    assert D.validate_meta(ok, 2, {"style": D.INDEPENDENT_STYLES}, "meta.json") == ok


def test_prompt_files_validated_by_the_loaders(tmp_path):
    """The prompt files go through validate_prompts: a duplicated prompt is a DataError naming the file."""
    prompts = D.default_independent_harmful()
    with pytest.raises(D.DataError, match=r"independent_harmful\.json: item \[2\] duplicates item \[0\]"):
        D.validate_prompts(prompts[:2] + [prompts[0].upper()], D.default_data_path("independent_harmful.json"))


def test_readme_is_what_the_build_script_writes():
    """default_data/README.md is rendered by scripts/build_default_data.py (which reads the independent set to count
    it); the committed README matches, so its counts per style are the data's."""
    pairs, pair_cats, sources = B.build_pairs()
    harmful_eval, harmful_cats = B.flatten_eval()
    text = B.render_readme(pairs, pair_cats, sources, harmful_eval, list(B.HARMLESS_EVAL), list(B.REFUSALS),
                           harmful_cats, B.load_independent())
    assert text == (REPO_ROOT / "lib/refusal/default_data/README.md").read_text(encoding="utf-8")
    assert f"| **total** | **{N_HARMFUL}** | **{N_HARMLESS}** |" in text
    B.check_independent(B.load_independent(), [p for pr in pairs for p in pr] + harmful_eval)


def test_files_ship_as_package_data():
    globs = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["refusal"]
    for name in FILES:
        assert any(fnmatch.fnmatch(f"default_data/{name}", g) for g in globs), name
        assert (REPO_ROOT / "lib/refusal/default_data" / name).is_file()
