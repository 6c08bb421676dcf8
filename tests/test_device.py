"""Device and precision: which device a stage runs on, in which dtype, and a batch that does not fit."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from refusal.batching import BatchTooLarge
from refusal.config import load_config
from refusal.device import model_dtype, resolve_device


def test_device_order_argument_then_environment_then_cuda_then_cpu(monkeypatch):
    monkeypatch.delenv("REFUSAL_DEVICE", raising=False)
    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("REFUSAL_DEVICE", "cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("") == torch.device("cpu")  # an empty papermill parameter falls back too
    monkeypatch.setenv("REFUSAL_DEVICE", "meta")
    assert resolve_device("cpu") == torch.device("cpu")  # the argument wins
    assert resolve_device(None) == torch.device("meta")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_asked_for_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("REFUSAL_DEVICE", "cuda")
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        resolve_device(None)


def test_dtype_is_the_registry_dtype_on_an_accelerator_and_float32_on_the_cpu():
    cfg = load_config("llama31_8b")
    assert cfg.dtype == "bfloat16" and cfg.cpu_dtype == "float32"
    assert model_dtype(cfg, torch.device("cuda")) == torch.bfloat16
    assert model_dtype(cfg, torch.device("cpu")) == torch.float32
    assert model_dtype(dataclasses.replace(cfg, cpu_dtype="bfloat16"), torch.device("cpu")) == torch.bfloat16


def test_cpu_dtype_auto_is_bfloat16_only_on_a_cpu_with_native_bf16(monkeypatch):
    """``cpu_dtype: auto`` follows the CPU's bf16 instructions; on an accelerator the entry's ``dtype`` holds."""
    import refusal.device as D

    cfg = load_config("qwen25_coder_05b")
    assert cfg.cpu_dtype == "auto" and load_config("smollm2_planted1").cpu_dtype == "float32"
    for native, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(D, "native_bf16", lambda native=native: native)
        assert D.model_dtype(cfg, torch.device("cpu")) == want
        assert D.model_dtype(cfg, torch.device("cuda")) == torch.float32  # the entry's dtype
        assert D.cpu_dtype(dataclasses.replace(cfg, cpu_dtype="float32")) == "float32"


def test_where_auto_resolves_differently_the_stages_rerun(monkeypatch):
    """The rerun hash counts what ``auto`` means on this machine; an explicit dtype's hash does not move."""
    import refusal.device as D
    from refusal.report.rerun import stage_params

    cfg, fixed = load_config("qwen25_coder_05b"), load_config("smollm2_planted1")
    hashes = {}
    for native in (True, False):
        monkeypatch.setattr(D, "native_bf16", lambda native=native: native)
        hashes[native] = (stage_params("04_ablate", cfg)["registry"], stage_params("04_ablate", fixed)["registry"])
    assert hashes[True][0] != hashes[False][0] and hashes[True][1] == hashes[False][1]


def test_stage_setup_resolves_the_device_parameter(monkeypatch):
    from refusal.report.stage import stage_setup

    monkeypatch.setenv("REFUSAL_DEVICE", "cpu")
    _, P, _ = stage_setup("02_extract", {"model": "qwen25_coder_05b", "device": None})
    assert P["device"] == "cpu"
    _, P, _ = stage_setup("02_extract", {"model": "qwen25_coder_05b", "device": "meta"})
    assert P["device"] == "meta"


def test_a_batch_that_does_not_fit_names_the_entry_and_the_knob():
    """A device out-of-memory error in a batch becomes an error naming params/<model>.yaml and the batch knob.

    The tiny model raises torch's own OutOfMemoryError for batches over 2 rows, as a GPU would for a batch that
    does not fit (no GPU here)."""
    from refusal import hub_models as H
    from refusal.families import prepare_tokenizer
    from refusal.generation import generate_ids
    from refusal.intervention.scoring import last_logprobs
    from refusal.models import LoadedModel

    spec = H.load_hub_spec("llama32_1b")
    model = H.tiny_model(spec)
    tok = prepare_tokenizer(H.byte_tokenizer(spec), "llama")
    lm = LoadedModel(cfg=load_config("llama32_1b"), model=model, tokenizer=tok)

    def limit(mod, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = model.register_forward_pre_hook(limit, with_kwargs=True)
    try:
        prompts = ["a", "bb", "ccc", "dddd"]
        assert last_logprobs(lm, prompts, batch_size=2).shape[0] == 4
        with pytest.raises(BatchTooLarge, match=r"llama32_1b\.yaml: a batch of 4 does not fit.*lower 'batch_size'"):
            last_logprobs(lm, prompts, batch_size=4)
        with pytest.raises(BatchTooLarge, match=r"lower 'gen_batch_size'"):
            generate_ids(lm, prompts, max_new_tokens=2, batch_size=3, progress=False)
    finally:
        handle.remove()


def test_float32_twin_is_the_model_itself_or_the_entry_again_in_float32(smollm):
    """The numerical checks of stages 02 and 05 run on a float32 twin: the same weights, loaded again in float32."""
    from refusal.models import float32_twin, load_model

    assert float32_twin(smollm) is smollm
    bf = load_model("smollm2_135m", "cpu", dtype="bfloat16")
    twin = float32_twin(bf)
    assert twin is not bf and twin.model.dtype == torch.float32 and bf.model.dtype == torch.bfloat16
    ref = dict(smollm.model.named_parameters())
    assert all(torch.equal(p, ref[n]) for n, p in twin.model.named_parameters())
