"""``python -m refusal.peers build <method> --folder runs/_peers/<model>``: one method's edited model, in this process.

The comparison (``bench/peers/compare.py``) runs each build as such a process, to measure its wall time and peak
memory alone. The process reads the comparison's ``settings.json`` in the folder, builds, and writes
``<method>/model/`` (an HF checkpoint), ``<method>/build.json`` (what the method chose) and, for the two
single-direction edits, ``<method>/direction.safetensors`` (the removed unit vector).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from refusal.artifacts import write_json, write_tensors
from refusal.config import load_config
from refusal.peers import EDITS
from refusal.peers.inputs import PeerSettings, peer_inputs

__all__ = ["build", "main"]

log = logging.getLogger("refusal.peers")


def build(method: str, folder: Path) -> dict[str, Any]:
    """Build ``method``'s edited model into ``folder/<method>/model`` and return its record (also written)."""
    from refusal.intervention.orthogonalize import save_orthogonalized
    from refusal.models import load_model, load_tokenizer, weights_source
    from refusal.peers import heretic_run as H
    from refusal.peers.methods import build_ours, build_single_layer

    if method not in EDITS:
        raise ValueError(f"unknown method {method!r}: one of {', '.join(EDITS)}")
    s = PeerSettings.read(folder)
    torch.set_num_threads(s.threads)
    cfg, inputs, out = load_config(s.model), peer_inputs(s), Path(folder) / method
    log.info("%s on %s: %s", method, cfg.name, inputs.describe())
    if method == "heretic":
        from transformers import AutoTokenizer

        where, revision = weights_source(cfg)
        tok, raw = load_tokenizer(cfg), AutoTokenizer.from_pretrained(where, revision=revision)
        system = H.default_system_prompt(tok, cfg)
        H.check_same_prompts(tok, raw, cfg, system, [h for h, _ in inputs.val[:2]] + inputs.harmful_eval[:2])
        files = H.write_prompt_files(out / "work" / "prompts", inputs)
        config = H.heretic_config(Path(where), files, s, system, cfg.gen_batch_size, out / "work" / "checkpoints")
        if revision:
            config["model_commit"] = revision
        record = H.run_heretic(out / "work", config, out / "model")
    else:
        lm = load_model(cfg, s.device, dtype="float32")  # as heretic runs (its ``dtypes``: float32)
        built = build_ours(lm, inputs) if method == "ours" else build_single_layer(lm, inputs, s.choice_tokens)
        save_orthogonalized(built.model, lm.tokenizer, out / "model", built.result, built.info)
        write_tensors(out / "direction.safetensors", {"direction": built.direction.float().contiguous()},
                      {"layer": built.record["layer"], "position": built.record["position"]})
        record = {**built.record, "orthogonalization": built.result.to_dict()}
    record = {"method": method, "model": cfg.name, **record}
    write_json(out / "build.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refusal.peers", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build one method's edited model")
    b.add_argument("method", choices=list(EDITS))
    b.add_argument("--folder", type=Path, required=True, help="the comparison's folder (holds settings.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build(args.method, args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
