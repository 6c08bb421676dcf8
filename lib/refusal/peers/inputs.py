"""What every method of the comparison shares: its settings and its prompts.

Defaults come from the stage notebooks' parameters cells (and the model's ``stage_params``), not restated here:
the training pairs are stage 02's (``max_train_pairs``), the validation pairs every method chooses with are stage
04's ``n_val``, the evaluation sample and the generation length are stage 04's ``n_eval`` and ``max_new_tokens``.
A setting passed explicitly overrides them and is recorded in ``settings.json``, which every build process reads,
so that all methods run on the same prompts with the same numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusal import data as D
from refusal.artifacts import read_json, write_json
from refusal.config import ModelConfig, load_config
from refusal.device import resolve_device
from refusal.intervention.conditions import PromptSet
from refusal.intervention.inputs import eval_sample
from refusal.report.stage import parameters_cell

__all__ = ["PeerSettings", "stage_params", "resolve_settings", "PeerInputs", "peer_inputs", "SETTINGS_FILE"]

SETTINGS_FILE = "settings.json"


def stage_params(cfg: ModelConfig, stage: str) -> dict[str, Any]:
    """A stage's parameters as the workflow would run them for ``cfg``: the notebook's defaults, overridden by
    the entry's ``stage_params.<stage>`` (``model`` left out)."""
    overrides = cfg.stage(stage)
    return {p.name: overrides.get(p.name, p.default) for p in parameters_cell(stage) if p.name != "model"}


@dataclass(frozen=True)
class PeerSettings:
    """The comparison's numbers, one record for every method."""

    model: str  # registry entry
    n_train: int | None  # train pairs every method extracts its directions from (None: all)
    n_val: int  # validation pairs every method chooses with (selection; layer scan; heretic's objective)
    n_eval: int | None  # held-out eval prompts per side (None: all of each set)
    max_new_tokens: int  # greedy tokens of every evaluation generation (stage 04's)
    eval_batch_size: int  # prompts per evaluation generation batch (speed only; default: the entry's gen_batch_size)
    choice_tokens: int  # greedy tokens of the generations a method chooses by (layer scan, heretic's refusal count)
    heretic_trials: int  # heretic's optimisation trials
    heretic_startup_trials: int  # of which random exploration (heretic's default ratio: 60 of 200)
    seed: int  # evaluation sample and heretic's sampler
    threads: int  # torch threads of every process
    mc_limit: int | None  # items of the local multiple-choice task (None: all, as stage 06)
    device: str  # torch device

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, folder: Path) -> Path:
        return write_json(Path(folder) / SETTINGS_FILE, self.to_dict())

    @classmethod
    def read(cls, folder: Path) -> "PeerSettings":
        """The settings a comparison recorded in ``folder``; an error names the file and the key."""
        path = Path(folder) / SETTINGS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no settings (bench/peers/compare.py writes them first)")
        rec = read_json(path)
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(rec, dict) or set(rec) != names:
            got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            raise ValueError(f"{path}: expected the keys {sorted(names)}, got {got}")
        return cls(**rec)


def resolve_settings(model: str, *, n_train: int | None = None, n_val: int | None = None,
                     n_eval: int | None = None, all_eval: bool = False, max_new_tokens: int | None = None,
                     choice_tokens: int | None = None, eval_batch_size: int | None = None, heretic_trials: int = 30,
                     heretic_startup_trials: int | None = None, seed: int = 0, threads: int = 2,
                     mc_limit: int | None = None, device: str | None = None) -> PeerSettings:
    """The settings of a comparison: what is passed, else the stages' defaults for ``model``.

    ``n_eval`` None takes stage 04's evaluation sample size; ``all_eval`` takes every prompt of both eval sets.
    ``choice_tokens`` None: ``max_new_tokens``. ``heretic_startup_trials`` None keeps heretic's own ratio of random
    exploration (60 of its 200 default trials). ``device`` None: :func:`refusal.device.resolve_device`'s rule.
    """
    cfg = load_config(model)
    p02, p04 = stage_params(cfg, "02_extract"), stage_params(cfg, "04_ablate")
    trials = int(heretic_trials)
    if trials < 1:
        raise ValueError(f"heretic_trials must be >= 1, got {trials}")
    gen = int(max_new_tokens if max_new_tokens is not None else p04["max_new_tokens"])
    startup = round(trials * 60 / 200) if heretic_startup_trials is None else int(heretic_startup_trials)
    return PeerSettings(
        model=cfg.name, n_train=n_train if n_train is not None else p02["max_train_pairs"],
        n_val=int(n_val if n_val is not None else p04["n_val"]),
        n_eval=None if all_eval else int(n_eval if n_eval is not None else p04["n_eval"]),
        max_new_tokens=gen, eval_batch_size=int(eval_batch_size or cfg.gen_batch_size),
        choice_tokens=int(choice_tokens if choice_tokens is not None else gen),
        heretic_trials=trials, heretic_startup_trials=max(1, min(startup, trials)), seed=int(seed),
        threads=int(threads), mc_limit=mc_limit, device=str(resolve_device(device)))


@dataclass
class PeerInputs:
    """The prompts of the comparison: ``train`` and ``val`` pairs ``[harmful, safe]``, the evaluation sample."""

    train: list[D.Pair]
    val: list[D.Pair]
    harmful_eval: list[str]
    harmless_eval: list[str]
    categories: list[str]  # harm category of each harmful eval prompt

    def eval_set(self) -> PromptSet:
        return PromptSet("eval", self.harmful_eval, self.harmless_eval, self.categories)

    def describe(self) -> str:
        return (f"{len(self.train)} train pairs, {len(self.val)} validation pairs, {len(self.harmful_eval)} harmful "
                f"and {len(self.harmless_eval)} harmless held-out eval prompts")


def peer_inputs(s: PeerSettings) -> PeerInputs:
    """The embedded data split as stage 01 splits it (its seed), cut to the settings.

    Raises:
        ValueError: an evaluation prompt also appears among the training or validation prompts (naming it).
    """
    cfg = load_config(s.model)
    pairs = D.default_pairs()
    splits = D.default_pair_splits(seed=stage_params(cfg, "01_data")["seed"])
    train = [pairs[i] for i in splits.train][: s.n_train]
    val = [pairs[i] for i in splits.val][: s.n_val]
    harmful, harmless = D.default_harmful_eval(), D.default_harmless_eval()
    categories = D.default_harmful_eval_categories()
    if s.n_eval is None:
        h_idx, s_idx = list(range(len(harmful))), list(range(len(harmless)))
    else:
        where = Path(D.default_data_path("harmful_eval.json")).parent
        h_idx, s_idx = eval_sample(harmful, harmless, s.n_eval, s.seed, where)
    inputs = PeerInputs(train=train, val=val, harmful_eval=[harmful[i] for i in h_idx],
                        harmless_eval=[harmless[i] for i in s_idx], categories=[categories[i] for i in h_idx])
    seen = {p for pair in train + val for p in pair}
    leaked = [p for p in inputs.harmful_eval + inputs.harmless_eval if p in seen]
    if leaked:
        raise ValueError(f"{D.default_data_path('harmful_eval.json')}: eval prompt {leaked[0]!r} is also a "
                         "training or validation prompt; the comparison needs held-out evaluation")
    return inputs
