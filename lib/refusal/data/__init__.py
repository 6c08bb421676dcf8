"""Prompt data: the study's formats, validation, deterministic splits, public-format loaders.

Formats (as in the original study):

- pairs: a JSON list of ``[harmful, safe]`` string pairs, ``List[List[str, str]]``;
- eval prompts: a JSON list of strings, ``List[str]``.

Validation rejects: not a list, wrong arity, non-string, empty or whitespace-
only prompt, ``harmful == safe``, duplicates. Every error is a
:class:`DataError` naming the file and the index.

Modules: ``formats`` (validation, the study's formats, public-dataset loaders), ``splits`` (deterministic,
grouped splits) and ``defaults`` (the embedded default data, written for this project, see
``lib/refusal/default_data/README.md``). Everything is re-exported here: ``from refusal import data as D``.
"""

from refusal.data.defaults import *  # noqa: F401,F403
from refusal.data.defaults import __all__ as _defaults
from refusal.data.formats import *  # noqa: F401,F403
from refusal.data.formats import __all__ as _formats
from refusal.data.splits import *  # noqa: F401,F403
from refusal.data.splits import __all__ as _splits

__all__ = sorted(set(_formats) | set(_splits) | set(_defaults))
