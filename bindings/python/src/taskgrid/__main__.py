# SPDX-License-Identifier: Apache-2.0
"""``python -m taskgrid``: the ``taskgrid`` command (see taskgrid.cli)."""

import sys

from .cli import main

sys.exit(main())
