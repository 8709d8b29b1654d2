"""A fresh interpreter of torchcontract's own, to rebuild the checked object from its pickle as a
``spawn`` or ``forkserver`` worker would, without ever running the user's main script.

Why not multiprocessing's ``spawn``/``forkserver`` contexts: both re-run the main script in the child
when it has a file (``spawn.prepare()`` imports it as ``__mp_main__``; the forkserver preloads
``__main__``). An unguarded script (no ``if __name__ == "__main__":``) then runs its whole body
again, calls ``check()`` again, and fails in the "bootstrapping phase"; configuring the forkserver
(``set_forkserver_preload``) also changes process-wide state the user owns.

Design. Lazily, once per process, we start ``sys.executable -c "... serve()"`` in a new session,
with the parent's interpreter flags, ``sys.path`` (set before anything is imported: never the current
directory that ``-c`` would put first) and working directory, connected by a socket pair. The server imports
torch once when the object needs it (its class's modules use torch, or its pickle names torch: see
:func:`~.pickling.imports_for`; torchvision likewise, on demand), then, per request,
forks a child (a fresh interpreter for the user's modules: none of them was imported before the
fork, so state set at run time in this process is lost, exactly as in a spawn worker). The child
unpickles the object and computes what was asked (``ds[i]`` for some indices, the first items of
``iter(ds)``, or one rank of a process group), streaming progress frames, so that a hang names the
call in progress. Starting the server is torchcontract's fixed cost: it is bounded by
:data:`STARTUP_LIMIT_S`, not by the object's budget. A failure of the server (it did not start,
exited, was stopped or killed, stopped answering before the object's call began) is
:class:`HelperFailed`: an internal error of torchcontract, never the object's failure; a server found
dead before a request (killed since the last one) is replaced once. The engine starts it without waiting
(:func:`prestart`) when a run with a clause that uses it begins, so that its start overlaps the
checks before that clause.

``__main__``. While pickling in the parent, a ``Pickler.reducer_override`` records the classes and
functions that live in ``__main__``. With none, the child never touches the main script. With some,
the child can rebuild them only by running the script, as spawn does; it does so (as
``__mp_main__``, aliased as ``__main__``) only when the script is a file whose top level is safely
re-importable (an ``ast`` check: imports, definitions, docstrings, constant assignments, ``if
__name__ == "__main__":`` blocks, ``if``/``try`` blocks of the same) and defines those names;
otherwise :class:`Unavailable` says what to do. On platforms without ``os.fork`` the server serves
one request in-process and is replaced afterwards.

No process is left behind: a timed-out child is killed with its process group; a server in an
unknown state is killed with its session; a ``weakref.finalize`` (run at exit) ends the server.

The modules: :mod:`.wire` (the frames, and what a request comes to), :mod:`.pickling` (the object's
pickle, and what to import before rebuilding it), :mod:`.main_script` (when and how ``__main__`` is
rebuilt), :mod:`.server` (run in the fresh interpreter) and :mod:`.client` (the parent's side). This
package is what the rest of the suite imports.
"""

from torchcontract.conformance._runtime.fresh.client import (
    STARTUP_LIMIT_S,
    fetch,
    prestart,
    run_tasks,
)
from torchcontract.conformance._runtime.fresh.main_script import ADVICE
from torchcontract.conformance._runtime.fresh.pickling import ON_DEMAND, Pickled, imports_for, pickled
from torchcontract.conformance._runtime.fresh.wire import Fetched, HelperFailed, Raised, TimedOut, Unavailable

__all__ = [
    "ADVICE",
    "ON_DEMAND",
    "STARTUP_LIMIT_S",
    "Fetched",
    "HelperFailed",
    "Pickled",
    "Raised",
    "TimedOut",
    "Unavailable",
    "fetch",
    "imports_for",
    "pickled",
    "prestart",
    "run_tasks",
]
