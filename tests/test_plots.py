"""Figures saved for reuse: PNG and SVG under <stage folder>/figures/, atomically, the same bytes for the same figure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402

from refusal.plots import save_figure  # noqa: E402


def test_figure_axes_and_seaborn_grid_are_saved_as_png_and_svg(tmp_path):
    import pandas as pd

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [1, 0, 1], label="a")
    heat = sns.heatmap([[0.1, 0.9], [0.5, 0.2]], ax=plt.subplots(figsize=(2, 2))[1])
    grid = sns.relplot(pd.DataFrame({"k": [1, 2, 1, 2], "y": [0.1, 0.5, 0.2, 0.4], "m": ["a", "a", "b", "b"]}),
                       x="k", y="y", col="m", kind="line", height=2)
    for obj, name in [(fig, "line"), (heat, "heat"), (grid, "grid")]:
        paths = save_figure(obj, tmp_path, name)
        assert paths == {"png": tmp_path / "figures" / f"{name}.png", "svg": tmp_path / "figures" / f"{name}.svg"}
        assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert ET.parse(paths["svg"]).getroot().tag.endswith("svg")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "grid.png", "grid.svg", "heat.png", "heat.svg", "line.png", "line.svg"]  # no temporary file left
    plt.close("all")


def test_same_figure_same_bytes(tmp_path):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    a = {k: p.read_bytes() for k, p in save_figure(fig, tmp_path / "a", "f").items()}
    b = {k: p.read_bytes() for k, p in save_figure(fig, tmp_path / "b", "f").items()}
    assert a == b  # no date in the SVG, fixed id salt: artifacts hash the same on a re-run
    plt.close(fig)


def test_bad_name_or_object_is_refused_and_a_failed_save_leaves_nothing(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="plain file stem"):
        save_figure(fig, tmp_path, "../escape")
    with pytest.raises(TypeError, match="expected a matplotlib Figure"):
        save_figure([1, 2], tmp_path, "x")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "broken.png").write_bytes(b"old")

    class Boom(Exception):
        pass

    def fail(*args, **kwargs):
        raise Boom

    fig.savefig = fail  # a crash while writing: the old file stays, no partial or temporary file appears
    with pytest.raises(Boom):
        save_figure(fig, tmp_path, "broken")
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["broken.png"]
    assert (tmp_path / "figures" / "broken.png").read_bytes() == b"old"
    plt.close(fig)
