"""The daemon as it runs where Linux's refinements are missing (Windows, macOS).

``PORTABLE`` starts ``trio-dls`` with ``fcntl``, ``termios`` and ``resource``
unimportable (as on Windows), without SIGHUP, and with the directory fsync
switched off, then checks that the capabilities that depend on them are
off indeed before it runs the command line: the send queue is not queried
(a page counts as delivered once written), cursors are renamed without a
directory fsync.  Tests run it beside the usual ``python -m trio_dls``.
"""

from __future__ import annotations

import sys
from typing import Final

_MAIN: Final = """\
import signal, sys
for name in ("fcntl", "termios", "resource"):
    sys.modules[name] = None  # import raises ImportError, as on Windows
if hasattr(signal, "SIGHUP"):
    del signal.SIGHUP
import trio_dls.durable
trio_dls.durable.CAN_SYNC_DIRECTORIES = False
import trio_dls.siem.transports as transports
if transports._CAN_QUERY_QUEUE:
    sys.exit("the send queue capability is still on")
from trio_dls.cli import main
sys.exit(main(sys.argv[1:]))
"""

LINUX: Final = (sys.executable, "-m", "trio_dls")
PORTABLE: Final = (sys.executable, "-c", _MAIN)
LAUNCHERS: Final = {"linux": LINUX, "portable": PORTABLE}
