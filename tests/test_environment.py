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


def test_peers_extra_is_optional_and_pinned():
    """heretic and its requirements stay out of the default environment; the extra and the --no-deps pin agree
    with what environment.yml tells conda users to install, and with what the Makefile installs."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    deps = project["project"]["dependencies"]
    peers = project["project"]["optional-dependencies"]["peers"]
    no_deps = project["tool"]["refusal"]["peers-no-deps"]
    assert no_deps == ["heretic-llm==1.4.0"]
    assert all("==" in d for d in peers), "every peer requirement is pinned"
    names = {d.split("==")[0].lower() for d in deps}
    assert not names & {d.split("==")[0].lower() for d in peers + no_deps}, "a peer requirement leaked into the defaults"
    # heretic's metadata conflicts with these (it asks datasets~=4.7, rich~=14.3): never in the extra itself
    assert not {d.split("==")[0] for d in peers} & {"heretic-llm", "datasets", "rich", "huggingface-hub"}
    env_text = (REPO_ROOT / "environment.yml").read_text()
    env = yaml.safe_load(env_text)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert not any(p.startswith("heretic") for p in pip)
    assert f"pip install --no-deps {no_deps[0]}" in env_text
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "grep -o 'heretic-llm==[0-9.]*' pyproject.toml" in makefile and '--no-deps "$(HERETIC_PIN)"' in makefile
