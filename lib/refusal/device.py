"""Where tensors live: the compute device, the dtype that goes with it, and the host.

:func:`resolve_device` picks the device every stage runs on: an explicit argument (a notebook's ``device``
parameter, ``papermill -p device cuda:1``), else the ``REFUSAL_DEVICE`` variable (``make report DEVICE=...``),
else CUDA when available, else the CPU. :func:`model_dtype` picks the weights' dtype: the registry entry's
``dtype`` on an accelerator (bf16 for the study's models), its ``cpu_dtype`` on the CPU (float32 unless the entry
says otherwise). ``cpu_dtype: auto`` (:func:`cpu_dtype`) is bfloat16 on a CPU with native bf16 dot products (AMX-BF16
or AVX512-BF16: there a batch of 64 generates about 3x faster than in float32) and float32 elsewhere (on an AVX2-only
CPU bf16 matmuls are emulated and about 6x slower than float32). Measured 2026-12-01 on this project's 2-core machine
(AMX-BF16), one thread, 64 prompts x 32 greedy tokens: Qwen2.5-Coder-0.5B 32.0 s float32, 10.1 s bfloat16; under
``ONEDNN_MAX_CPU_ISA=AVX2`` 32.8 s float32, 186.2 s bfloat16.

Library code creates tensors on the model's device; the only place that names the host is :func:`host`, used to
hand results to numpy, pandas and files.
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["resolve_device", "model_dtype", "cpu_dtype", "native_bf16", "host", "TORCH_DTYPES", "device_of"]

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HOST = torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The compute device: ``device`` if given, else ``$REFUSAL_DEVICE``, else CUDA if available, else CPU.

    Raises:
        ValueError: an unknown device string, or CUDA asked for where it is not available.
    """
    name = device if device not in (None, "") else os.environ.get("REFUSAL_DEVICE") or None
    if name is None:
        return torch.device("cuda") if torch.cuda.is_available() else _HOST
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {name!r} (from {'the argument' if device else '$REFUSAL_DEVICE'}): {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine "
                         "(set REFUSAL_DEVICE=cpu or pass device='cpu')")
    return dev


def native_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AMX-BF16 tiles or AVX512-BF16), as oneDNN's fast path needs."""
    cpu = torch.cpu
    return any(bool(getattr(cpu, f, lambda: False)()) for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def cpu_dtype(cfg: Any) -> str:
    """The entry's ``cpu_dtype`` with ``auto`` resolved: ``bfloat16`` on a CPU with native bf16, else ``float32``."""
    if cfg.cpu_dtype != "auto":
        return str(cfg.cpu_dtype)
    return "bfloat16" if native_bf16() else "float32"


def model_dtype(cfg: Any, device: torch.device) -> torch.dtype:
    """The registry entry's ``dtype`` on an accelerator, its ``cpu_dtype`` (:func:`cpu_dtype`) on the CPU."""
    return TORCH_DTYPES[cpu_dtype(cfg) if device.type == "cpu" else cfg.dtype]


def device_of(module: Any) -> torch.device:
    """The device of a module's first parameter."""
    return next(module.parameters()).device


def host(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached and moved to host memory (for numpy, pandas and files)."""
    return t.detach().to(_HOST)
