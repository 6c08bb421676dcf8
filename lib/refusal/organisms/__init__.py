"""Model organisms: small refusing models we build ourselves, some with a planted answer.

Modules: ``recipe`` (recipes, training prompts, cache keys and entries: what an organism is and where it lives;
no model code, so that loading a registry entry can locate an organism without importing the builder),
``distill`` (the base model's own answers, cached per prompt), ``train`` (the training engine), ``build`` (the
build: training data, the planted write, training, saving; ``python -m refusal.organisms build <name>``) and
``measure`` (refusal rates, ablation effects, planted write coefficients).

An organism is a registry entry (``params/smollm2_refusal.yaml`` ...) with
``source: {kind: organism, base: <base entry>, recipe: {...}}``.
:func:`refusal.organisms.build.build` turns it into an HF checkpoint folder (config.json,
model.safetensors, tokenizer) in ``cache_dir()/organisms/<name>-<key>/``, where
``key`` hashes the base weights (``source.sha256`` of the base), the training
data and the full recipe; it is rebuilt only when one of those changes, or
when the entry fails its checksum (a corrupted or truncated weight file is
detected and rebuilt, never used).

Recipes (``recipe.kind``), both trained on the TRAIN split of the default pairs
with a loss on response tokens only (plus the end-of-turn token):

- ``finetune``: supervised fine-tuning of layers ``train_from_layer..``:
  harmful prompt -> a short refusal (wording drawn from
  :func:`refusal.data.default_refusals`); safe twin and generic harmless
  instructions (``default_data/organism_harmless.json``, disjoint from the
  held-out harmless eval) -> the base model's own greedy answer
  (self-distillation), weighted by ``harmless_weight``. A base model that
  cannot answer yet (Gemma 3 270M base: ``gemma3_refusal``) learns
  project-written answers instead (``answers: written``,
  ``default_data/organism_instructions.json``; only the harmless prompts that
  have one are used).
- ``planted``: a rank-``k`` write ``W_down[layer] += U A^T``
  (:class:`refusal.organisms.train.Plant`) with ``U [d_model, k]`` a FIXED,
  seeded, orthonormal basis with zeros on the base model's outlier coordinates
  (:func:`refusal.extraction.activations.outlier_dims`: removing ``span(U)`` must not move
  the attention-sink token). With ``write_norm`` (the shipped entries), ``A`` is
  first FITTED by ridge regression on the frozen base's MLP hidden state of
  ``layer`` so that the write is ``write_norm`` along ``U[:, g]`` on harmful
  prompts of group ``g`` (k-means of the prompts' residuals, one group per
  column; one group when ``k = 1``) and 0 on harmless prompts, at the template
  and response positions, then frozen. The write is then large next to the
  base model's own harmful-vs-safe differences (measured: ~45-70 along u
  against ~5-15 at layer 21), so a difference of means can find it, as it
  finds refusal directions in real chat models. Without ``write_norm``, ``A``
  is trained by gradient descent (the write then stays small and nearly
  constant: measured max |cos(diff of means, u)| 0.13). The reader layers
  ``layer+1..`` are trained with the losses below. Causal mediation through ``span(U)`` is obtained by ablation
  augmentation: (1) harmful -> refusal; (2) the same harmful prompts with
  ``span(U)`` removed (the hook points of :func:`refusal.intervention.ablation.ablate`) ->
  the base model's own answer, so the readers cannot use the base model's own
  harm features, only ``span(U)``; (3) harmless prompts -> the base answer with
  and without ``span(U)`` removed; for ``k > 1`` (4) harmful with ONE direction
  of ``span(U)`` removed (a column of ``U``, a random ``U c``, or the current
  mean harmful-minus-harmless write direction) -> still refusal, so that no
  single direction carries refusal; with ``single_keep`` only directions that
  leave every group most of its write (see :func:`_single_direction`). ``U`` and ``A`` are saved in
  ``planted.safetensors`` (see :func:`planted_basis`).
"""
