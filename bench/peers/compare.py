"""This project's weight edit side by side with heretic and single-layer abliteration, on one model.

    make setup EXTRAS=peers
    .venv/bin/python bench/peers/compare.py --model qwen25_coder_05b

Builds each method's edited model in a process of its own (wall time and peak memory measured from outside:
``refusal.peers.measure``), then evaluates the baseline and the three edits the same way (``refusal.peers.evaluate``:
held-out harmful and harmless eval prompts, greedy, the offline refusal detector; first-token KL on the harmless
prompts; the local multiple-choice task as stage 06 runs it) and writes ``runs/_peers/<model>/results.json``, which
the comparison page (``notebooks/07_compare``) shows. The settings and what every method chose are recorded next to
it. Defaults are the stages' parameters; the others are stated in ``--help`` and recorded in ``settings.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from refusal.artifacts import write_json  # noqa: E402
from refusal.peers import EDITS, METHODS, peers_dir  # noqa: E402
from refusal.peers.inputs import PeerSettings, peer_inputs, resolve_settings  # noqa: E402
from refusal.peers.measure import run_measured, thread_env  # noqa: E402

log = logging.getLogger("bench.peers")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen25_coder_05b", help="registry entry (params/<name>.yaml)")
    ap.add_argument("--out", type=Path, default=None, help="artifact folder (default runs/_peers/<model>)")
    ap.add_argument("--n-train", type=int, default=None, help="train pairs for every method's directions "
                    "(default: stage 02's max_train_pairs, i.e. all)")
    ap.add_argument("--n-val", type=int, default=None, help="validation pairs every method chooses with "
                    "(default: stage 04's n_val)")
    ap.add_argument("--n-eval", type=int, default=None, help="held-out eval prompts per side, drawn as stage 04 "
                    "draws them (default: every prompt of both held-out eval sets)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="greedy tokens per evaluation completion "
                    "(default: stage 04's max_new_tokens)")
    ap.add_argument("--choice-tokens", type=int, default=16, help="greedy tokens of the generations a method "
                    "chooses by: the single-layer scan and heretic's refusal count (heretic's default: 100; the "
                    "refusals of this model start in the first tokens)")
    ap.add_argument("--eval-batch-size", type=int, default=48, help="prompts per evaluation generation batch, "
                    "the same for every model (speed only: a CPU decodes one batch of 48 faster than three of 16; "
                    "default 48)")
    ap.add_argument("--heretic-trials", type=int, default=30, help="heretic's optimisation trials (its default: 200)")
    ap.add_argument("--heretic-startup-trials", type=int, default=None,
                    help="of which random exploration (default: heretic's ratio, 60 of 200)")
    ap.add_argument("--mc-limit", type=int, default=None, help="items of the local multiple-choice task (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every process")
    ap.add_argument("--device", default=None, help="torch device of every method (default: $REFUSAL_DEVICE, else "
                    "CUDA when available, else the CPU)")
    ap.add_argument("--keep-builds", action="store_true",
                    help="reuse the edited models of an earlier run with the same settings (no new build times)")
    ap.add_argument("--keep-models", action="store_true", help="keep the edited checkpoints (about 2 GB each)")
    return ap.parse_args(argv)


def build_all(folder: Path, s: PeerSettings, keep: bool) -> None:
    """Each edit's build in a measured process of its own; a failure stops the comparison, naming its log."""
    from tqdm.auto import tqdm

    env = thread_env(s.threads)
    lib = str(Path(__file__).resolve().parents[2] / "lib")
    env["PYTHONPATH"] = lib + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for method in tqdm(EDITS, desc="builds"):
        d = folder / method
        if keep and (d / "build.json").exists() and (d / "measured.json").exists() and (d / "model").is_dir():
            log.info("%s: kept from an earlier run", method)
            continue
        cmd = [sys.executable, "-m", "refusal.peers", "build", method, "--folder", str(folder)]
        m = run_measured(cmd, d / "build.log", env=env)
        if m.returncode != 0:
            tail = "\n".join((d / "build.log").read_text(errors="replace").splitlines()[-30:])
            raise SystemExit(f"{method} build failed (exit {m.returncode}); its output is in "
                             f"{d / 'build.log'}:\n{tail}")
        write_json(d / "measured.json", m.to_dict())
        log.info("%s built in %.1f min, peak RSS %.2f GB", method, m.seconds / 60, m.peak_rss_bytes / 2**30)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    s = resolve_settings(args.model, n_train=args.n_train, n_val=args.n_val, n_eval=args.n_eval,
                         all_eval=args.n_eval is None, max_new_tokens=args.max_new_tokens, choice_tokens=args.choice_tokens,
                         eval_batch_size=args.eval_batch_size,
                         heretic_trials=args.heretic_trials, heretic_startup_trials=args.heretic_startup_trials,
                         seed=args.seed, threads=args.threads, mc_limit=args.mc_limit, device=args.device)
    folder = (args.out or peers_dir(s.model)).resolve()
    if args.keep_builds and (folder / "settings.json").exists() and PeerSettings.read(folder) != s:
        raise SystemExit(f"{folder / 'settings.json'}: --keep-builds needs the same settings as the earlier run")
    s.write(folder)
    print(json.dumps(s.to_dict(), indent=1))
    build_all(folder, s, args.keep_builds)

    import torch

    from refusal.models import load_model
    from refusal.peers.evaluate import evaluate_all, write_results
    from refusal.report.peers import peers_table, verdict

    torch.set_num_threads(s.threads)
    inputs = peer_inputs(s)
    lm = load_model(s.model, s.device, dtype="float32")  # every method in heretic's dtype (float32)
    evaluate_all(lm, folder, inputs, s, list(METHODS))
    if not args.keep_models:
        for method in EDITS:
            shutil.rmtree(folder / method / "model", ignore_errors=True)
            shutil.rmtree(folder / method / "work" / "checkpoints", ignore_errors=True)
    seconds = time.perf_counter() - started
    path = write_results(folder, s, inputs, seconds)
    from refusal.artifacts import read_json

    table = peers_table(read_json(path), str(path))
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", None):
        print(table.drop(columns=["label"]).round(4).to_string(index=False))
    print("\n" + verdict(table))
    print(f"\nwrote {path}; whole comparison {seconds / 60:.1f} min. The comparison page shows it once "
          "notebooks/07_compare runs again (make report).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
