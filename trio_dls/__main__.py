"""``python -m trio_dls``: the same as the ``trio-dls`` command."""

import sys

from trio_dls.cli import main

sys.exit(main())
