"""Running and publishing the study: stage helpers for the notebooks, the report runner, the findings, the site.

Modules: ``stage`` (what every stage notebook does first and last: resolve its parameters, find its inputs,
write its manifest), ``runner`` (``make report``: every stage of every model by papermill), ``findings`` (the
cross-model table read from the artifacts) and ``site`` (the Quarto website and its offline preview).
"""
