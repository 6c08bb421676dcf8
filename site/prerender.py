"""Quarto's pre-render step (``_quarto.yml``: ``project.pre-render``): index page, navigation and downloads.

``quarto render`` runs this script (with ``QUARTO_PYTHON``, else ``python3`` on ``PATH``) before it renders, in the
project directory; it calls :func:`refusal.report.site.prepare` with the runs folder ``REFUSAL_RUNS`` (default ``runs/``).
The project's ``lib/`` comes first on the import path, so a checkout renders with its own library; without the
project's dependencies it re-runs itself with ``.venv/bin/python`` when that exists.
"""

import logging
import os
import sys
from pathlib import Path

project = Path(os.environ.get("QUARTO_PROJECT_DIR") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(project / "lib"))
try:
    from refusal.report import site
except ImportError as e:
    venv = project / ".venv"
    if (venv / "bin" / "python").exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv / "bin" / "python"), [str(venv / "bin" / "python"), __file__, *sys.argv[1:]])
    sys.exit(f"site/prerender.py: cannot import the project's library ({e}); run `make setup` or activate the "
             "conda environment, or set QUARTO_PYTHON to a Python that has it")

logging.basicConfig(level=logging.INFO, format="%(message)s")
site.prepare(project)
