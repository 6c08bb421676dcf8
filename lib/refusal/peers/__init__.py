"""Side by side with the tools people use instead: this project's edit, heretic and single-layer abliteration.

Every method gets the same model, the same training prompts (the train split of the pairs), the same validation
prompts to choose with (the first ``n_val`` validation pairs) and is judged on the same held-out evaluation prompts
(``refusal.data``'s harmful and harmless eval sets, which no method sees while it builds), with the same greedy
generation settings and the same refusal detector (the offline judge):

- ``baseline``: the unedited model;
- ``ours``: stages 02-05 in one go (:func:`refusal.peers.methods.build_ours`): difference-of-means candidates at
  every layer and post-instruction position, selection with Arditi et al.'s criteria on the validation prompts,
  exact weight orthogonalization;
- ``single_layer``: FailSpy / mlabonne-style abliteration (:func:`refusal.peers.methods.build_single_layer`):
  last-token difference of means per layer, the layer whose removal leaves the fewest refusals on the
  validation prompts, orthogonalized the same way;
- ``heretic``: PyPI ``heretic-llm`` run offline on the local checkpoint (:mod:`refusal.peers.heretic_run`), its
  own optimisation and its own trial choice, exported as a merged model.

Modules: ``inputs`` (settings and the shared prompts), ``methods`` (ours, single-layer), ``heretic_run``
(heretic, non-interactively), ``measure`` (wall time and peak memory of a build in its own process),
``evaluate`` (the common evaluation) and ``__main__`` (``python -m refusal.peers build <method>``, one build per
process). The table, the scatter and the verdict paragraph are :mod:`refusal.report.peers`. The entry point is
``bench/peers/compare.py``.
"""

from __future__ import annotations

from pathlib import Path

from refusal.paths import runs_dir

__all__ = ["METHODS", "EDITS", "PEERS_RUN", "peers_dir"]

METHODS = ("baseline", "ours", "single_layer", "heretic")  # in table order
EDITS = METHODS[1:]  # the methods that build an edited model
PEERS_RUN = "_peers"  # runs/_peers/<model>/: not a model folder (leading underscore, as runs/_compare/)


def peers_dir(model: str, root: Path | None = None) -> Path:
    """``runs/_peers/<model>/``: the comparison's artifacts for one model (not created here)."""
    return (root or runs_dir()) / PEERS_RUN / model
