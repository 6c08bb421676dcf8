"""``python -m refusal.report``: the report workflow (``workflow/Snakefile``) run by Snakemake, as ``make report`` runs it.

``python -m refusal.report [--models a,b] [--device cuda] [--profile local|slurm] [-- SNAKEMAKE ARGS]`` runs
``snakemake --snakefile workflow/Snakefile --profile profiles/<profile>`` in the repository root; with the local
profile it tells the scheduler this machine's memory and GPUs (``--resources mem_mb=... gpu=...``), so that jobs
that would not fit together do not start together. Anything after ``--`` goes to snakemake unchanged (``-n``:
what would run; ``--forceall``: everything again). The exit status is snakemake's: non-zero when a job failed,
after the other models' jobs have run (``--keep-going``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from refusal.paths import REPO_ROOT

__all__ = ["machine_memory_mb", "machine_gpus", "snakemake_command", "main"]


def machine_memory_mb() -> int:
    """This machine's memory in MB (``/proc/meminfo``; 8000 where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 8000


def machine_gpus() -> int:
    """NVIDIA GPUs on this machine (``nvidia-smi -L``; 0 without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU"))


def snakemake_command(models: str = "", device: str = "", profile: str = "local",
                      extra: list[str] | None = None) -> list[str]:
    """The snakemake command line of a report run (the snakemake next to this Python's executable)."""
    exe = Path(sys.executable).parent / "snakemake"
    cmd = [str(exe) if exe.exists() else "snakemake", "--snakefile", str(REPO_ROOT / "workflow" / "Snakefile"),
           "--profile", str(REPO_ROOT / "profiles" / profile)]
    if profile == "local":
        cmd += ["--resources", f"mem_mb={machine_memory_mb()}", f"gpu={machine_gpus()}"]
    config = [f"models={models}"] if models else []
    config += [f"device={device}"] if device else []
    if config:
        cmd += ["--config", *config]
    return cmd + list(extra or [])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(prog="python -m refusal.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated registry entries (default: workflow/config.yaml)")
    ap.add_argument("--device", default=os.environ.get("REFUSAL_DEVICE", ""),
                    help="torch device of every stage (cpu, cuda, cuda:1); default $REFUSAL_DEVICE, else automatic")
    ap.add_argument("--profile", default="local", help="profiles/<name>: local (this machine, default) or slurm")
    args = ap.parse_args(argv)
    return subprocess.run(snakemake_command(args.models, args.device, args.profile, extra), cwd=REPO_ROOT).returncode
