"""``python -m refusal.report``: the report workflow by Snakemake (see :mod:`refusal.report.command`)."""

import sys

from refusal.report.command import main

sys.exit(main())
