"""The model registry: every params file validates; broken files name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from refusal.config import ConfigError, list_models, load_config
from refusal.paths import PARAMS_DIR

STUDY_MODELS = {
    "qwen1_8b_chat": "Qwen/Qwen-1_8B-chat",
    "qwen3_1_7b": "Qwen/Qwen3-1.7B",
    "gemma_2b_it": "google/gemma-2b-it",
    "llama31_8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama32_1b": "meta-llama/Llama-3.2-1B-Instruct",
    "llama32_3b": "meta-llama/Llama-3.2-3B-Instruct",
    "phi3_mini": "microsoft/Phi-3-mini-4k-instruct",
}
OFFLINE = {"qwen25_coder_05b", "qwen25_coder_15b", "smollm2_135m", "gemma3_270m"}


@pytest.mark.parametrize("name", list_models())
def test_every_params_file_validates(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.n_layers > 0 and cfg.d_model > 0


def test_registry_has_study_and_offline_models():
    names = set(list_models())
    assert set(STUDY_MODELS) <= names
    assert OFFLINE <= names
    for key, hub_id in STUDY_MODELS.items():
        cfg = load_config(key)
        assert cfg.model_id == hub_id
        assert cfg.source.kind == "hub"
        assert cfg.revision and len(cfg.revision) == 40, f"{key}: revision must be a pinned commit hash"
        assert cfg.eot_tokens, f"{key}: needs end-of-turn tokens"
    assert load_config("qwen1_8b_chat").trust_remote_code is True
    for key in OFFLINE:
        assert load_config(key).source.kind == "pypi_gguf"


def _write(tmp_path: Path, data: dict, name: str = "broken") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _base() -> dict:
    return yaml.safe_load((PARAMS_DIR / "smollm2_135m.yaml").read_text()) | {"name": "broken"}


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.update(n_layerz=3), "n_layerz"),
        (lambda d: d.pop("n_layers"), "n_layers"),
        (lambda d: d.update(n_layers="thirty"), "n_layers"),
        (lambda d: d.update(n_layers=True), "n_layers"),
        (lambda d: d.update(dtype="float64"), "dtype"),
        (lambda d: d["source"].update(kind="ftp"), "source.kind"),
        (lambda d: d["source"].update(colour="red"), "source.colour"),
        (lambda d: d["source"].pop("sha256"), "source.sha256"),
        (lambda d: d.update(eot_tokens="<|im_end|>"), "eot_tokens"),
        (lambda d: d.update(batch_size=0), "batch_size"),
        (lambda d: d.update(stage_params={"99_nope": {}}), "stage_params.99_nope"),
        (lambda d: d.update(name="other"), "name"),
    ],
)
def test_broken_params_name_file_and_key(tmp_path, mutate, key):
    data = _base()
    mutate(data)
    p = _write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg
    assert f"'{key}'" in msg


def test_hub_entry_needs_revision(tmp_path):
    data = yaml.safe_load((PARAMS_DIR / "llama32_1b.yaml").read_text()) | {"name": "broken"}
    data.pop("revision")
    with pytest.raises(ConfigError, match="revision"):
        load_config(_write(tmp_path, data))


def test_invalid_yaml_and_unknown_model(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=str(p)):
        load_config(p)
    with pytest.raises(ConfigError, match="unknown model 'no_such_model'"):
        load_config("no_such_model")
