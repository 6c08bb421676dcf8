"""heretic (PyPI ``heretic-llm``), run offline and without a person at the keyboard.

heretic's own entry point, :func:`heretic.main.run`, does everything: it loads the local checkpoint, computes its
per-layer refusal directions from the "bad" and "good" training prompts, runs its Optuna study (TPE over direction
index and per-component weight kernels, two objectives from its own score: first-token KL on the good evaluation
prompts and its refusal count on the bad ones), shows the Pareto-optimal trials in a menu, and saves the trial a
person picks. Only that last part is interactive (questionary); here its questions are answered by
:class:`ScriptedMenu` while everything else runs as heretic wrote it:

- "Which trial do you want to use?": the first entry of heretic's own menu (its order: fewest refusals, then lowest
  KL; the entry a person gets by pressing Enter) whose KL is below the damage warning heretic prints above the menu
  (:data:`KL_WARNING`); if none is, the first entry;
- "What do you want to do with the decensored model?": save it to a local folder (merged: ``export_strategy``);
- afterwards: back to the menu, and exit.

Settings go through heretic's own ``config.toml`` in a working folder (its documented route); prompts are plain text
files, one per line (its ``DatasetSpecification`` reads a path on disk). The record keeps every trial, read back from
heretic's study journal.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from refusal.config import ModelConfig
from refusal.models import chat_prompts
from refusal.peers.inputs import PeerInputs, PeerSettings

__all__ = ["HERETIC_DIST", "KL_WARNING", "HereticError", "default_system_prompt", "write_prompt_files",
           "check_same_prompts", "heretic_config", "choose_trial", "ScriptedMenu", "run_heretic", "read_trials"]

log = logging.getLogger(__name__)

HERETIC_DIST = "heretic-llm"
# heretic's menu: "Note that KL divergence values above 0.5 usually indicate significant damage to the original
# model's capabilities." (heretic/main.py, 1.4.0)
KL_WARNING = 0.5
STUDY_NAME = "heretic"  # heretic.main.run's study_name


class HereticError(RuntimeError):
    """heretic is missing, asked something the script does not answer, or saved no model."""


def default_system_prompt(tok: Any, cfg: ModelConfig) -> str:
    """The system prompt this project's chat formatting puts in front of every prompt of ``cfg``.

    heretic always sends a system message; giving it the entry's ``system_prompt``, or else the chat template's
    default one (Qwen2.5: "You are Qwen, created by Alibaba Cloud. ..."), makes its prompts the same tokens as ours
    (checked by :func:`check_same_prompts`).

    Raises:
        HereticError: the template's default system prompt cannot be read off (then say it in the registry entry).
    """
    if cfg.system_prompt is not None:
        return cfg.system_prompt
    probe, marker = [{"role": "user", "content": "probe"}], "\x00SYSTEM\x00"
    plain = tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    with_sys = tok.apply_chat_template([{"role": "system", "content": marker}] + probe, tokenize=False,
                                       add_generation_prompt=True)
    pre, _, post = with_sys.partition(marker)
    if not (plain.startswith(pre) and plain.endswith(post) and len(plain) >= len(pre) + len(post)):
        raise HereticError(f"{cfg.path}: the chat template's default system prompt cannot be read off; set "
                           "system_prompt in the registry entry")
    return plain[len(pre): len(plain) - len(post)]


def check_same_prompts(tok: Any, raw_tok: Any, cfg: ModelConfig, system_prompt: str, prompts: list[str]) -> None:
    """Raise :class:`HereticError` unless heretic's formatting of ``prompts`` (system + user message through the
    checkpoint's own tokenizer ``raw_tok``, as ``heretic.model.Model.generate`` builds it) is this project's
    (:func:`refusal.models.chat_prompts` with the prepared tokenizer ``tok``)."""
    ours = chat_prompts(tok, prompts, cfg)
    for p, mine in zip(prompts, ours):
        msgs = [{"role": "system", "content": system_prompt}, {"role": "user", "content": p}]
        theirs = raw_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        if theirs != mine:
            raise HereticError(f"{cfg.path}: heretic would format {p[:40]!r}... as {theirs!r}, this project as "
                               f"{mine!r}; the comparison needs the same prompts")


def write_prompt_files(folder: Path, inputs: PeerInputs) -> dict[str, Path]:
    """heretic's four prompt sets as text files, one prompt per line: good/bad training prompts (the train pairs'
    safe and harmful sides) and good/bad evaluation prompts of its objective (the validation pairs' sides)."""
    sets = {"good_prompts": [s for _, s in inputs.train], "bad_prompts": [h for h, _ in inputs.train],
            "good_evaluation_prompts": [s for _, s in inputs.val], "bad_evaluation_prompts": [h for h, _ in inputs.val]}
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, prompts in sets.items():
        bad = next((p for p in prompts if "\n" in p or not p.strip()), None)
        if bad is not None:
            raise HereticError(f"{name}: prompt {bad!r} is empty or spans lines; heretic reads one prompt per line")
        out[name] = folder / f"{name}.txt"
        out[name].write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return out


def heretic_config(model_dir: Path, files: dict[str, Path], s: PeerSettings, system_prompt: str, batch_size: int,
                   checkpoints: Path) -> dict[str, Any]:
    """heretic's settings (``config.toml``): its defaults except what the CPU budget and the comparison fix.

    Changed from heretic's defaults: the prompts (ours); ``n_trials`` / ``n_startup_trials`` (the budget, keeping
    heretic's share of random exploration); ``max_response_length`` (the comparison's ``choice_tokens``, as the
    single-layer scan; heretic's default is 100 tokens); ``batch_size`` (the entry's, instead of heretic's search over
    sizes up to 128, which generates full answers at each size); ``response_prefix`` "" (Qwen2.5-Coder has no chain
    of thought: heretic's automatic check would generate 200 answers to find none); ``dtypes`` float32 (the dtype
    every method is evaluated in); ``export_strategy`` merge; ``seed``; ``system_prompt`` (ours, see
    :func:`default_system_prompt`).
    """
    return {
        "model": str(model_dir), "dtypes": ["float32"], "device_map": s.device, "batch_size": int(batch_size),
        "max_response_length": s.choice_tokens, "response_prefix": "", "n_trials": s.heretic_trials,
        "n_startup_trials": s.heretic_startup_trials, "seed": s.seed, "study_checkpoint_dir": str(checkpoints),
        "export_strategy": "merge", "system_prompt": system_prompt,
        **{name: {"dataset": str(path)} for name, path in files.items()},
    }


def choose_trial(menu: list[dict[str, Any]], kl_warning: float = KL_WARNING) -> int:
    """Index into heretic's Pareto menu (its order) of the trial to export: the first whose ``kl_divergence`` is
    below ``kl_warning``, else the first.

    Raises:
        HereticError: the menu is empty.
    """
    if not menu:
        raise HereticError("heretic's trial menu lists no trial")
    return next((i for i, t in enumerate(menu) if t["kl_divergence"] < kl_warning), 0)


class ScriptedMenu:
    """Answers heretic's interactive questions (see the module docstring); records what its menu offered."""

    def __init__(self, export_dir: Path, kl_warning: float = KL_WARNING) -> None:
        self.export_dir, self.kl_warning = Path(export_dir), kl_warning
        self.saved = False
        self.chosen: dict[str, Any] | None = None
        self.menu: list[dict[str, Any]] = []

    def select(self, message: str, choices: list[Any]) -> Any:
        if message.startswith("Which trial do you want to use"):
            if self.saved:
                return ""  # "Exit program"
            trials = [getattr(c, "value", c) for c in choices]
            trials = [t for t in trials if hasattr(t, "user_attrs")]
            self.menu = [trial_record(t) for t in trials]
            pick = trials[choose_trial(self.menu, self.kl_warning)]
            self.chosen = trial_record(pick)
            return pick
        if message.startswith("What do you want to do with the decensored model"):
            return "" if self.saved else "Save the model to a local folder"
        raise HereticError(f"heretic asked {message!r}, which this script does not answer")

    def path(self, message: str) -> str:
        self.saved = True
        return str(self.export_dir)

    def refuse(self, message: str, *args: Any, **kwargs: Any) -> str:
        raise HereticError(f"heretic asked {message!r}, which this script does not answer")


def trial_record(t: Any) -> dict[str, Any]:
    """What heretic records of one trial (its user attributes), JSON-ready."""
    a = t.user_attrs
    return {"index": a.get("index"), "refusals": a.get("refusals"), "kl_divergence": a.get("kl_divergence"),
            "n_bad_prompts": a.get("n_bad_prompts"), "base_refusals": a.get("base_refusals"),
            "direction_index": a.get("direction_index"), "parameters": a.get("parameters"),
            "values": list(t.values) if getattr(t, "values", None) else None, "state": str(getattr(t, "state", ""))}


@contextmanager
def _as_heretic_cli(work_dir: Path, menu: ScriptedMenu) -> Iterator[Any]:
    """heretic's process view while it runs: ``config.toml`` in the working folder, no CLI arguments, the
    scripted menu in place of its prompts; all restored afterwards."""
    import heretic.main as hm

    saved = {n: getattr(hm, n) for n in ("prompt_select", "prompt_path", "prompt_text", "prompt_password")}
    argv, cwd = sys.argv, os.getcwd()
    hm.prompt_select, hm.prompt_path, hm.prompt_text, hm.prompt_password = (menu.select, menu.path, menu.refuse,
                                                                            menu.refuse)
    sys.argv = ["heretic"]
    os.chdir(work_dir)
    try:
        yield hm
    finally:
        os.chdir(cwd)
        sys.argv = argv
        for n, f in saved.items():
            setattr(hm, n, f)


def run_heretic(work_dir: Path, config: dict[str, Any], export_dir: Path) -> dict[str, Any]:
    """Run heretic's own ``run()`` with ``config`` and save its chosen trial, merged, into ``export_dir``.

    Returns:
        the record: heretic's version, the settings, its Pareto menu, the chosen trial, every trial.

    Raises:
        HereticError: heretic is not installed (``make setup EXTRAS=peers``) or saved no model.
    """
    try:
        import tomli_w
        from importlib.metadata import version

        heretic_version = version(HERETIC_DIST)
    except Exception as e:  # noqa: BLE001 - a missing module or distribution, said plainly
        raise HereticError(f"heretic is not installed ({e}): make setup EXTRAS=peers") from None
    work_dir = Path(work_dir).resolve()
    checkpoints = Path(config["study_checkpoint_dir"])
    shutil.rmtree(checkpoints, ignore_errors=True)  # a study left there would make heretic ask to resume it
    shutil.rmtree(export_dir, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    menu = ScriptedMenu(export_dir)
    with _as_heretic_cli(work_dir, menu) as hm:
        hm.run()
    if not (Path(export_dir) / "config.json").exists():
        raise HereticError(f"{export_dir}: heretic saved no model (see its output above)")
    journals = sorted(checkpoints.glob("*.jsonl"))
    return {"heretic_version": heretic_version, "config": config, "kl_warning": menu.kl_warning,
            "choice_rule": "first entry of heretic's Pareto menu (fewest refusals, then lowest KL) with KL below "
                           f"its damage warning {menu.kl_warning}; else the first entry",
            "menu": menu.menu, "chosen": menu.chosen, "trials": read_trials(journals[0]) if journals else []}


def read_trials(journal: Path) -> list[dict[str, Any]]:
    """Every trial of heretic's study, from its journal file (Optuna's ``JournalStorage``)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=STUDY_NAME, storage=JournalStorage(JournalFileBackend(str(journal))))
    return [trial_record(t) for t in study.trials]
