"""What the project's command lines share: paths that may not be empty, and
errors that end with their message.

Example
-------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--data_folder", type=path_argument)
>>> parser.parse_args(["--data_folder", "data/synth_small"]).data_folder
'data/synth_small'
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence

from hieradist_lobes.errors import ReportedError
from hieradist_lobes.files import LockHeld, ProcessLock

# Set (to anything but 0 or empty) to see the traceback of a reported error too.
TRACEBACK_VARIABLE = "HIERADIST_TRACEBACK"


def path_argument(text: str) -> str:
    """An argparse ``type`` for a file or folder: an empty value (as an unset
    shell variable gives) is refused, named like a missing path, instead of
    failing later with a raw ``TypeError`` or writing into the working folder.

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is empty or blank (argparse prints it with the option's name and exits 2).
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty (an unset shell variable?): give a file or folder")
    return text


class OutputFolderBusy(ReportedError, RuntimeError):
    """Another run is writing into the same output folder."""


_HELD: Dict[str, ProcessLock] = {}  # the output folders this process holds, until it ends
RUN_LOCK = ".run.lock"


def hold_output_folder(folder: str) -> None:
    """Claim a run's output folder for this process (until it ends): a second
    run into the same folder (two ``train_teacher.py`` with one
    ``experiment_name``) stops here, naming the first, instead of both
    interleaving their logs and checkpoints. A folder this process already
    holds (a run resumed in the same process) is kept. Under DDP only the
    main process claims it: the other ranks belong to the same run.

    Raises
    ------
    OutputFolderBusy
        If another process holds the folder.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> hold_output_folder(folder); hold_output_folder(folder)
    >>> os.path.isfile(os.path.join(folder, RUN_LOCK))
    True
    """
    from speechbrain.utils.distributed import if_main_process

    key = os.path.realpath(folder)
    if key in _HELD or not if_main_process():
        return
    try:
        _HELD[key] = ProcessLock(os.path.join(folder, RUN_LOCK))
    except LockHeld as held:
        raise OutputFolderBusy(
            f"another run ({held.owner}) is writing into {folder}; wait for it to finish or stop it (a stopped run "
            "resumes from its checkpoints), or give this run its own folder (--experiment_name or --output_root; "
            "--lm_output_folder for train_lm.py)"
        ) from None


def release_output_folders() -> None:
    """Release every output folder this process holds: for a process that runs
    recipes in-process one after another and then hands a folder to another
    process (the test suite, between tests)."""
    while _HELD:
        _HELD.popitem()[1].release()


def close_process_group(wait: bool) -> None:
    """End a ``torchrun`` process's part in its process group (nothing without one): after the others
    (``wait``) when the command succeeded. A process that exits with the group open can abort in its
    communication threads' teardown ("terminate called without an active exception"), and torchrun then
    stops the other processes of a run that had finished."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return
    if wait:
        try:
            distributed.barrier()
        except RuntimeError:  # another process ended first (its own error says why)
            pass
    distributed.destroy_process_group()


def run_command(main: Callable[[Any], Any], argv: Optional[Sequence[str]] = None) -> Any:
    """Run a command line's ``main(argv)``: a :class:`ReportedError` (a
    user's mistake, or a run that diverged) ends with ``error: <message>`` on
    stderr and exit code 1, since its message names what is wrong and a
    10–70-line traceback would bury it; ``HIERADIST_TRACEBACK=1`` shows the
    traceback too. Any other exception keeps its traceback. The message also
    goes to the run's log files (SpeechBrain's ``log.txt``), where the
    traceback went before. Under ``torchrun`` the process group is closed at
    the end (:func:`close_process_group`).

    Example
    -------
    >>> from hieradist_lobes.hparams import HparamsError
    >>> def main(argv):
    ...     raise HparamsError("asr.yaml: lr = -1: must be a number > 0")
    >>> try:
    ...     run_command(main, [])
    ... except SystemExit as stop:
    ...     print("exit", stop.code)
    exit 1
    """
    try:
        result = main(argv)
        close_process_group(wait=True)
        return result
    except ReportedError as error:
        close_process_group(wait=False)
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        message = f"error: {error}"
        record = logging.LogRecord("hieradist_lobes", logging.ERROR, __file__, 0, message, None, None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        print(f"{message}\n(set {TRACEBACK_VARIABLE}=1 to see where it was raised)", file=sys.stderr)
        sys.exit(1)
