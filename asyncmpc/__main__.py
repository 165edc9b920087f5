"""``python -m asyncmpc``: the ``asyncmpc`` command."""

import sys

from asyncmpc.cli import main

sys.exit(main())
