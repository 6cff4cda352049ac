"""The project's own exceptions, shared by every layer.

I/O modules translate what they meet (socket errors, duo_client's RuntimeError)
into these at the edge, so the supervision tree only has to know two kinds of
failure: the ones a task retries by itself, and ``FatalError``.
"""

from __future__ import annotations


class FatalError(Exception):
    """A failure no retry can mend (rejected credentials, say).

    It tears the tree down; the CLI prints its message as one line and exits 1,
    so the operator reads what to fix instead of a traceback.  One subclass,
    ``trio_dls.duo.cursors.NewerCursorError``, exits 2 instead, as a config
    mistake does: only the operator can mend it, so a restart loop is pointless.
    """
