"""Shared fixtures. Models are loaded once per session (they are cached on disk after the first load)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm():
    from refusal.models import load_model

    return load_model("smollm2_135m")


@pytest.fixture(scope="session")
def qwen05():
    from refusal.models import load_model

    return load_model("qwen25_coder_05b")
