"""Independent searches in worker processes.

A search is pure Python (the cost table, under the GIL) and CP-SAT with one solver worker and a
fixed seed (cpsat.py: the same plans on any machine), so a second core helps only through a
second process. The searches of `capacity` (engine × GPU type × GPU count) and of `solve` under
`framework: auto` (one per engine) are independent: `Workers` runs them in a pool of processes
and hands the results back by key, so a caller puts them together in the order a serial run
would. With `jobs` 1 the same tasks run here, one after another, as before.

Forked workers inherit the objects a pool names as shared (the job, the cluster, the candidate
plans) and receive such arguments as references to them: the very objects the parent's caches
hold, which a pickled copy is not (`_run`).

Each worker keeps one memo session (planner/cost/memo.py) for its life, which is one command:
the terms a search memoizes are keyed on every input they read, so one search may reuse what an
earlier one in the same process computed, as a serial run's session does.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from planner.cost import memo

POLL_S = 0.05
"""How often the parent, waiting on results, reads the workers' progress messages."""
PRELOAD = ("planner.search.parallel", "planner.search.stacks", "planner.search.capacity",
           "planner.search.cpsat", "planner.search.table")
"""Imported once by a fork server, so its workers start with them (when fork is not used)."""
PR_SET_PDEATHSIG = 1
"""prctl(2) option (linux/prctl.h): a signal for this process when its parent ends."""

_tell: Callable[[Any], None] | None = None
_worker_session = None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, e.g. a
    container or `taskset`), else every CPU."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_count(jobs: int | None) -> int:
    """`--jobs`, or the usable CPUs when not given."""
    return usable_cpus() if jobs is None else jobs


def tell(message: Any) -> None:
    """Hand `message` (a progress report; it must pickle) to the `on_message` of the `Workers`
    running this task; nothing when none listens."""
    if _tell is not None:
        _tell(message)


class Workers:
    """Tasks by key, run in `jobs` worker processes (or here, when `jobs` is 1), their results
    handed back as they finish. A task's exception is raised in the caller, as the task would
    raise it there; leaving the block, normally or not (Ctrl-C), ends every worker.

        with Workers(2) as workers:
            workers.submit("a", f, x)
            for key, value in workers.results():
                ...  # may submit more

    `on_message` receives what tasks `tell`; `on_idle` is called while waiting on the workers.
    `shared`: objects the tasks' arguments will be (the job, the cluster, the candidates):
    forked workers inherit them and receive each such argument as a reference, the very object
    the parent's caches hold, rather than a pickled copy (`_run`).
    """

    def __init__(self, jobs: int, on_message: Callable[[Any], None] | None = None,
                 on_idle: Callable[[], None] | None = None, shared: Iterable[Any] = ()):
        self.jobs = max(1, jobs)
        self.on_message, self.on_idle = on_message, on_idle
        self._shared = {id(obj): obj for obj in shared}  # which also keeps them alive
        self._by_reference = False  # whether the workers inherited them (forked)
        self._pool = None
        self._pending = 0
        self._ran: deque = deque()   # in this process: finished tasks, in order
        self._done: queue.Queue = queue.Queue()  # from the pool's result thread

    def __enter__(self) -> Workers:
        global _tell
        if self.jobs == 1:
            self._session = memo.session()
            self._session.__enter__()
            self._told, _tell = _tell, self.on_message
            return self
        global _inherited
        context = _context()
        self._messages = context.SimpleQueue()
        if context.get_start_method() == "fork":
            # Set before the pool forks its workers, which keep it: ids are the parent's.
            _inherited, self._by_reference = self._shared, True
        self._pool = context.Pool(self.jobs, initializer=_start_worker, initargs=(self._messages,))
        return self

    def __exit__(self, *exc) -> bool:
        global _tell, _inherited
        if self._pool is None:
            _tell = self._told
            self._session.__exit__(*exc)
            return False
        # Ends the workers whether or not they are done: after an error or Ctrl-C nothing they
        # would still compute is wanted, and a finished pool has nothing left to wait for.
        self._pool.terminate()
        self._pool.join()
        if self._by_reference:
            _inherited = {}
        return False

    def submit(self, key: Hashable, function: Callable, *args) -> None:
        """Run `function(*args)` (a module-level function; the arguments and result must pickle)."""
        self._pending += 1
        if self._pool is None:
            try:
                self._ran.append((key, function(*args), None))
            except Exception as exc:  # raised by results(), in the order it happened
                self._ran.append((key, None, exc))
            return
        if self._by_reference:
            args = tuple(_Inherited(id(arg)) if id(arg) in self._shared else arg for arg in args)
        self._pool.apply_async(_run, (function, args), callback=lambda value: self._done.put((key, value, None)),
                               error_callback=lambda exc: self._done.put((key, None, exc)))

    def results(self) -> Iterator[tuple[Hashable, Any]]:
        """(key, result) of each task as it finishes, including those submitted meanwhile."""
        while self._pending:
            if self._pool is None:
                key, value, error = self._ran.popleft()
            else:
                self._read_messages()
                try:
                    key, value, error = self._done.get(timeout=POLL_S)
                except queue.Empty:
                    if self.on_idle is not None:
                        self.on_idle()
                    continue
            self._pending -= 1
            if error is not None:
                raise error
            yield key, value
        if self._pool is not None:
            self._read_messages()

    def _read_messages(self) -> None:
        while not self._messages.empty():
            message = self._messages.get()
            if self.on_message is not None:
                self.on_message(message)


def forks() -> bool:
    """Whether a pool started now forks its workers (`_context`): they then inherit what this
    process holds, shared memory included."""
    return (sys.platform.startswith("linux") and threading.active_count() == 1
            and "planner.search.cpsat" not in sys.modules)


def _context():
    """fork where it is safe: on Linux, while this process runs no other thread and has not
    loaded the solver. OR-Tools may hold locks in threads of its own after a solve, and a forked
    child inherits such a lock held forever; the solver module loads with the first search
    (planner.search.__init__), so before it no solve has run. Else a fork server (a fresh
    process that forks the workers), or spawn where there is none."""
    if forks():
        return multiprocessing.get_context("fork")
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
        return context
    return multiprocessing.get_context("spawn")


_seen: dict = {}
_inherited: dict[int, Any] = {}
"""In a forked worker: the pool's shared objects by their id in the parent (Workers `shared`)."""


@dataclass(frozen=True)
class _Inherited:
    """An argument a forked worker has already: the parent's id of it."""

    id: int


def _run(function: Callable, args: tuple) -> Any:
    """`function(*args)` in a worker: each argument the worker inherited (`_Inherited`) is that
    object; each other one that equals one an earlier task here received is replaced by that one.
    Arguments otherwise arrive as new copies (pickled), while the caches of a search (memo.py,
    the models' lru_caches) find an identical key at once where they compare an equal copy field
    by field, and a copy has lost its cached properties: a third more CPU seconds for a capacity
    search on copies of its workload than on the same one, and a sixth for an engine's search
    under `framework: auto`."""
    return function(*(_inherited[arg.id] if isinstance(arg, _Inherited) else _same(arg) for arg in args))


def _same(arg: Any) -> Any:
    try:
        return _seen.setdefault(arg, arg)
    except TypeError:  # unhashable (a dict of constraints)
        return arg


def _start_worker(messages) -> None:
    global _tell, _worker_session
    # Ctrl-C reaches the whole process group: the parent handles it and ends the workers, which
    # would otherwise each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent()
    _tell = messages.put
    _worker_session = memo.session()
    _worker_session.__enter__()  # for the worker's life (module docstring)


def _end_with_parent() -> None:
    """A worker whose parent is killed outright (SIGKILL, or SIGTERM, which Python does not
    turn into an exception) ends too, rather than waiting for tasks forever (Linux: prctl(2))."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
