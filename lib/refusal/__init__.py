"""refusal: the thin library behind the refusal-representations notebooks.

Modules (one job each): ``config`` (params/*.yaml), ``models`` (loading, chat
formatting, generation), ``data`` (prompt formats and the embedded default
data), ``artifacts`` (atomic writes with provenance), and the stage modules
added by later work (``activations``, ``directions``, ``stats``, ``ablation``,
``orthogonalize``, ``judge``, ``bench``, ``plots``, ``organisms``).
"""

__version__ = "0.1.0"
