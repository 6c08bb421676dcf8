"""``python -m refusal.report``: the report runner (see :mod:`refusal.report.runner`)."""

import sys

from refusal.report.runner import main

sys.exit(main())
