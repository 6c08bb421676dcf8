"""refusal: the library behind the refusal-representations notebooks.

The tree follows the study. Foundations, used by every stage:

- ``config`` (the registry, ``params/*.yaml``; the stage list), ``paths``, ``artifacts`` (atomic writes with
  provenance), ``device`` (where tensors live), ``families`` (each architecture's layout and chat quirks),
  ``models`` (loading, chat formatting), ``batching`` (tokenize, sort, pad, share the prefix, run, restore the
  order: written once), ``generation`` (greedy, KV cache, stop tokens), ``stats`` (intervals, agreement),
  ``hub_models`` (the study's seven architectures as offline specs);

and one package per part of the study:

- ``data`` (prompt formats, splits, the embedded default data): stage 01;
- ``extraction`` (activations, candidate directions, separability): stages 02-03;
- ``intervention`` (ablation, scoring, selection, the rank sweep, weight orthogonalization): stages 04-05;
- ``evaluation`` (the judge, capability benchmarks, redaction): stages 04-06;
- ``organisms`` (refusing models built here with a known answer): stage 00;
- ``report`` (stage helpers, the report workflow's jobs, the findings table, the site): stages 07-08 and
  publication.
"""

__version__ = "0.1.0"
