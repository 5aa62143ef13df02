"""Recipe scripts run as jobs, several at once, each process with its share of the cores.

A training on a small model is a stream of small ops that two threads share
poorly: on the 2-core machine two 1-thread CIF trainings side by side do 1.3×
the work of one 2-thread training (a step of 0.243 s each against 0.158 s
measured, ``benchmarks/`` figures in docs/benchmarks.md). ``tools/demo.py`` declares its
trainings as :class:`Job` s with what each needs first and :func:`run_jobs`
runs them, at most ``workers`` at a time.

With several workers, each job runs in a worker process (started fresh with
``spawn``: no torch state is inherited) with ``HIERADIST_THREADS`` set to its
share, and its output (logs, progress bars) goes to ``<log_folder>/<name>.log``;
the parent prints one line when a job starts and one when it ends; a worker
whose parent is killed stops within a second. With one worker, jobs run in
this process and print as usual.

Example
-------
>>> jobs = [Job("a", "prepare.py", []), Job("b", "train.py", [], after=("a",))]
>>> [job.name for job in ordered(jobs)]
['a', 'b']
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from hieradist_lobes.errors import ReportedError
from hieradist_lobes.threads import THREADS_VARIABLE, available_cores


@dataclass
class Job:
    """One run of a script's ``main(argv)``, after the jobs named in ``after``."""

    name: str
    script: str
    argv: List[str]
    after: Tuple[str, ...] = field(default_factory=tuple)


class JobError(ReportedError, RuntimeError):
    """A job failed; the message names it and its log."""


def ordered(jobs: Sequence[Job]) -> List[Job]:
    """``jobs`` checked: unique names, and each job's ``after`` names jobs
    declared before it (so there is no cycle)."""
    seen = set()
    for job in jobs:
        if job.name in seen:
            raise ValueError(f"two jobs are named {job.name!r}")
        unknown = [name for name in job.after if name not in seen]
        if unknown:
            raise ValueError(f"job {job.name!r} runs after {', '.join(unknown)}, which is not declared before it")
        seen.add(job.name)
    return list(jobs)


def load_main(script: str) -> Callable[[Sequence[str]], object]:
    """The ``main(argv)`` of the script at ``script`` (a recipe under ``recipes/``)."""
    name = "job_" + os.path.splitext(os.path.basename(script))[0] + f"_{abs(hash(script))}"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_script(script: str, argv: Sequence[str], log_path: Optional[str] = None) -> Tuple[object, float]:
    """Run ``main(argv)`` of ``script``; return its result and the seconds it took.
    With ``log_path``, everything the job prints (file descriptors 1 and 2) is
    appended there, the traceback of a failure included."""
    start = time.time()
    with output_to(log_path):
        return load_main(script)(list(argv)), round(time.time() - start, 1)


@contextlib.contextmanager
def output_to(log_path: Optional[str]) -> Iterator[None]:
    """File descriptors 1 and 2 appended to ``log_path`` inside the block (None: unchanged);
    an exception leaving the block has its traceback written there first."""
    if log_path is None:
        yield
        return
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _start_worker(threads: int) -> None:
    os.environ[THREADS_VARIABLE] = str(threads)
    # A worker outlives a parent that is killed (SIGTERM, SIGKILL): it would go on training unseen and
    # write beside the run that resumes. It stops when its parent is gone.
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def run_jobs(jobs: Sequence[Job], workers: int, log_folder: str,
             on_done: Callable[[Job, object, float], None], say: Callable[[str], None] = print) -> None:
    """Run ``jobs`` (in the order given, as their ``after`` allows), at most
    ``workers`` at a time; ``on_done(job, result, seconds)`` is called in this
    process as each one ends. After a failure no job starts; those running
    finish (and are reported), then :class:`JobError` names the failed job
    and its log."""
    jobs = ordered(jobs)
    if workers <= 1:
        for job in jobs:
            result, seconds = run_script(job.script, job.argv)
            on_done(job, result, seconds)
        return
    os.makedirs(log_folder, exist_ok=True)
    threads = max(1, available_cores() // workers)
    waiting, done = list(jobs), set()
    running: Dict[Future, Tuple[Job, str]] = {}
    failure: Optional[JobError] = None
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                             initargs=(threads,)) as pool:
        while waiting or running:
            for job in [job for job in waiting if all(name in done for name in job.after)]:
                if len(running) >= workers:
                    break
                waiting.remove(job)
                log_path = os.path.join(log_folder, f"{job.name}.log")
                say(f"[{time.strftime('%H:%M:%S')}] start {job.name} ({threads} thread(s); log: {log_path})")
                running[pool.submit(run_script, job.script, job.argv, log_path)] = (job, log_path)
            if not running:
                break  # nothing can start; unreachable, as ordered() puts each job after what it waits for
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, log_path = running.pop(future)
                try:
                    result, seconds = future.result()
                except Exception as error:
                    waiting.clear()
                    say(f"[{time.strftime('%H:%M:%S')}] FAILED {job.name}: see {log_path}")
                    if failure is None:  # the first failure is the one reported
                        failure = JobError(f"{job.name} failed ({type(error).__name__}: {error}); "
                                           f"its output: {log_path}")
                        failure.__cause__ = error
                    continue
                say(f"[{time.strftime('%H:%M:%S')}] done  {job.name} in {seconds:.0f} s")
                done.add(job.name)
                on_done(job, result, seconds)
    if failure is not None:
        raise failure
