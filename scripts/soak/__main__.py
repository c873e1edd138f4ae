"""``python -m scripts.soak``: see the package docstring."""

from __future__ import annotations

import sys

from scripts.soak.run import main

sys.exit(main())
