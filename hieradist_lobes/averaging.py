"""Checkpoint averaging: the mean of the model weights of the last N
checkpoints, what the CIF-HieraDist paper decodes with (N = 10).

SpeechBrain's ``Checkpointer`` keeps the checkpoints and
``average_checkpoints`` averages them; this module decides which to keep
(the best by the validation key *and* the last N, where SpeechBrain's
``save_and_keep_only`` keeps N of each) and writes the averaged weights as a
checkpoint folder, so that scoring and export read one set of weights.

Example
-------
>>> import tempfile, torch
>>> from speechbrain.utils.checkpoints import Checkpointer
>>> model = torch.nn.Linear(1, 1, bias=False)
>>> folder = tempfile.mkdtemp()
>>> checkpointer = Checkpointer(folder, {"model": model})
>>> for value, error in [(1.0, 5.0), (2.0, 9.0), (3.0, 8.0), (4.0, 7.0)]:
...     _ = model.weight.data.fill_(value)
...     keep_checkpoints(checkpointer, {"error_rate": error}, keep_last=2)
>>> sorted(float(c.meta["error_rate"]) for c in checkpointer.find_checkpoints())  # the best, the last 2
[5.0, 7.0, 8.0]
>>> path = averaged_checkpoint(checkpointer, 2, averaged_folder(folder))
>>> float(torch.load(path + "/model.ckpt")["weight"])  # (3 + 4) / 2
3.5
>>> written = os.path.getmtime(path + "/model.ckpt")
>>> averaged_checkpoint(checkpointer, 2, path) == path and os.path.getmtime(path + "/model.ckpt") == written
True
>>> average_count({"average_checkpoints": 10}), average_count({})
(10, 1)
>>> len(averaged_sources(averaged_checkpoint(checkpointer, 10, averaged_folder(folder))))  # all there are
3
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from typing import List, Mapping

import torch
from speechbrain.utils.checkpoints import Checkpointer, average_checkpoints

from hieradist_lobes.files import WRITE_ERRORS, is_failed_write, staged_folder, write_failure

logger = logging.getLogger(__name__)


def average_count(hparams: Mapping[str, object]) -> int:
    """``average_checkpoints`` of a YAML: how many of the last checkpoints are
    averaged for test and export (1, or absent: none, the best checkpoint)."""
    return max(int(hparams.get("average_checkpoints", 1) or 1), 1)


def averaged_folder(output_folder: str) -> str:
    """Where a run's averaged checkpoint is written."""
    return os.path.join(output_folder, "averaged")


def keep_checkpoints(checkpointer: Checkpointer, meta: dict, keep_last: int = 1, min_key: str = "error_rate") -> None:
    """Save a checkpoint, then delete all but the best one by ``min_key`` and
    the ``keep_last`` most recent ones.

    A save that fails (a full disk) removes the half-written checkpoint,
    which SpeechBrain's would offer to a resume as complete (it writes the
    checkpoint's description first), and raises
    :class:`~hieradist_lobes.files.WriteError`; the earlier checkpoints stay.
    """
    before = set(glob.glob(os.path.join(checkpointer.checkpoints_dir, "CKPT*")))
    try:
        checkpointer.save_checkpoint(meta=meta)
    except WRITE_ERRORS as error:
        # Whatever went wrong, a checkpoint whose save failed is not one.
        written = sorted(set(glob.glob(os.path.join(checkpointer.checkpoints_dir, "CKPT*"))) - before)
        for folder in written:
            shutil.rmtree(folder, ignore_errors=True)
        if not is_failed_write(error):
            raise
        raise write_failure(written[0] if written else checkpointer.checkpoints_dir, error,
                            " (the earlier checkpoints are kept: the run resumes from the last one)") from error
    recent = checkpointer.find_checkpoints(max_num_checkpoints=max(int(keep_last), 1))
    best = checkpointer.find_checkpoint(min_key=min_key)
    keep = {checkpoint.path for checkpoint in recent} | ({best.path} if best is not None else set())
    checkpointer.delete_checkpoints(num_to_keep=0, ckpt_predicate=lambda checkpoint: checkpoint.path not in keep)


def averaged_checkpoint(checkpointer: Checkpointer, count: int, folder: str, recoverable: str = "model") -> str:
    """Write the mean weights of the ``count`` most recent checkpoints into
    ``folder`` as ``<recoverable>.ckpt``, next to a copy of the most recent
    checkpoint's other files (the normaliser's statistics, ...); returns
    ``folder``.  A folder already averaged from the same checkpoints (its
    ``AVERAGED.txt`` lists them) is kept as it is: scoring valid and test and
    exporting read one average, computed once.

    Raises
    ------
    FileNotFoundError
        If there is no checkpoint.
    """
    checkpoints = checkpointer.find_checkpoints(max_num_checkpoints=int(count))
    if not checkpoints:
        raise FileNotFoundError(f"no checkpoint in {checkpointer.checkpoints_dir} to average")
    sources = "\n".join(str(checkpoint.path) for checkpoint in checkpoints) + "\n"
    listing = os.path.join(folder, "AVERAGED.txt")
    if os.path.isfile(listing):
        with open(listing, encoding="utf-8") as handle:
            if handle.read() == sources:
                return folder
    if len(checkpoints) < int(count):
        logger.warning("average_checkpoints is %d but only %d checkpoints exist (fewer epochs than that?): "
                       "averaging those %d", int(count), len(checkpoints), len(checkpoints))
    averaged = average_checkpoints(checkpoints, recoverable)
    with staged_folder(folder) as staging:
        latest = checkpoints[0].path
        for name in os.listdir(latest):
            if name.endswith(".ckpt") and name != f"{recoverable}.ckpt":
                shutil.copy(os.path.join(latest, name), os.path.join(staging, name))
        torch.save(averaged, os.path.join(staging, f"{recoverable}.ckpt"))
        with open(os.path.join(staging, "AVERAGED.txt"), "w", encoding="utf-8") as handle:
            handle.write(sources)
    return folder


def averaged_sources(folder: str) -> List[str]:
    """The checkpoints whose mean an averaged folder holds (its ``AVERAGED.txt``)."""
    with open(os.path.join(folder, "AVERAGED.txt"), encoding="utf-8") as handle:
        return handle.read().split()
