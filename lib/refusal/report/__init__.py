"""Running and publishing the study: stage helpers for the notebooks, the report workflow, the findings, the site.

Modules: ``stage`` (what every stage notebook does first and last: resolve its parameters, find its inputs,
write its manifest); the report workflow behind ``make report`` (``workflow/Snakefile``, run by Snakemake):
``workflow`` (the jobs of a run, planned from the registry), ``outputs`` (where each job reads and writes),
``rerun`` (when a stage re-runs), ``resources`` (what a job asks the scheduler for), ``job`` (one stage job by
papermill; the end of a run) and ``command`` (``python -m refusal.report``); ``findings`` (the cross-model table
read from the artifacts) and ``site`` (the Quarto website and its offline preview).
"""
