"""The conda route (environment.yml) pins exactly what pyproject.toml pins."""

from __future__ import annotations

import tomllib

import yaml

from refusal.paths import REPO_ROOT


def test_environment_yml_mirrors_pyproject():
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(deps)
    assert all("==" in d for d in deps), "every dependency is pinned"
    assert "torch==2.13.0" in deps
    assert any(str(d).startswith("quarto") for d in env["dependencies"] if isinstance(d, str))
