"""Training statistics to TensorBoard as well as to ``train_log.txt``.

A recipe YAML with ``tensorboard: True`` logs every statistic its Brain logs
(per epoch: train and valid losses, error rates, the learning rate, as
``<statistic>/train`` and ``<statistic>/valid``; the best checkpoint's scores
with the test decoding, ``<statistic>/final_test`` and ``/final_valid``; every
``grad_norm_every`` updates: each loss term and its gradient norm, ``update/<term>``) to TensorBoard event files in ``tensorboard_folder`` as well, through
SpeechBrain's :class:`~speechbrain.utils.train_logger.TensorboardLogger`.
Install the extra first: ``pip install -e ".[tensorboard]"`` (``make install``
does), then ``tensorboard --logdir results/``.

Where this departs from SpeechBrain's logger: a statistic's step is the epoch
(or the update) it belongs to, not the number of times it was logged, which
restarts at 1 when a run resumes and would draw a resumed run over its start.

Example
-------
>>> import tempfile
>>> from speechbrain.utils.train_logger import FileTrainLogger
>>> folder = tempfile.mkdtemp()
>>> logger = with_tensorboard(FileTrainLogger(f"{folder}/train_log.txt"), f"{folder}/tensorboard")
>>> logger.log_stats({"epoch": 3, "lr": 0.1}, train_stats={"loss": 2.5}, valid_stats={"error_rate": 40.0})
>>> logger.log_updates(150, {"loss_ctc": 1.2})
>>> open(f"{folder}/train_log.txt").read().strip()
'epoch: 3, lr: 1.00e-01 - train loss: 2.50 - valid error_rate: 40.00'
>>> sorted(read_scalars(f"{folder}/tensorboard"))
['error_rate/valid', 'loss/train', 'lr', 'update/loss_ctc']
>>> read_scalars(f"{folder}/tensorboard")["error_rate/valid"]
[(3, 40.0)]
"""

from __future__ import annotations

import glob
from typing import Dict, List, Mapping, Optional, Tuple

from speechbrain.utils.train_logger import TensorboardLogger, TrainLogger

from hieradist_lobes.errors import ReportedError

# The key of stats_meta that names the epoch a record belongs to (test records name the epoch loaded).
EPOCH_KEYS = ("epoch", "Epoch loaded")


class TensorboardMissing(ReportedError, ImportError):
    """``tensorboard: True`` without the ``tensorboard`` package."""


class EpochTensorboardLogger(TensorboardLogger):
    """SpeechBrain's TensorBoard logger, each statistic at the epoch of its record (see the module)."""

    def log_stats(self, stats_meta: Mapping[str, float], train_stats: Optional[Mapping[str, float]] = None,
                  valid_stats: Optional[Mapping[str, float]] = None, test_stats: Optional[Mapping[str, float]] = None,
                  verbose: bool = False) -> None:
        if self.writer is None:  # not the main process
            return
        epoch = next((int(stats_meta[key]) for key in EPOCH_KEYS if key in stats_meta), None)
        for name, value in stats_meta.items():
            if name not in EPOCH_KEYS and isinstance(value, (int, float)):
                self.writer.add_scalar(name, value, epoch)
        # The best checkpoint scored with the test decoding: on test, and on valid to compare (meta "split").
        final = f"final_{stats_meta.get('split', 'test')}"
        for stage, stats in (("train", train_stats), ("valid", valid_stats), (final, test_stats)):
            for name, value in (stats or {}).items():
                self.writer.add_scalar(f"{name}/{stage}", value, epoch)
        self.writer.flush()

    def log_updates(self, update: int, values: Mapping[str, float]) -> None:
        """Statistics of one update (e.g. the loss terms and their gradient norms), at that update."""
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"update/{name}", value, update)
        self.writer.flush()


class TeeLogger(TrainLogger):
    """Several training loggers as one (``train_log.txt`` and TensorBoard)."""

    def __init__(self, *loggers: TrainLogger) -> None:
        self.loggers = loggers

    def log_stats(self, stats_meta, train_stats=None, valid_stats=None, test_stats=None, verbose=False) -> None:
        for logger in self.loggers:
            logger.log_stats(stats_meta, train_stats=train_stats, valid_stats=valid_stats, test_stats=test_stats,
                             verbose=verbose)

    def log_updates(self, update: int, values: Mapping[str, float]) -> None:
        for logger in self.loggers:
            if hasattr(logger, "log_updates"):
                logger.log_updates(update, values)


def with_tensorboard(train_logger: TrainLogger, folder: str) -> TeeLogger:
    """``train_logger`` and a TensorBoard logger writing to ``folder``.

    Raises
    ------
    TensorboardMissing
        If the ``tensorboard`` package is not installed, naming the extra to install.
    """
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it)
    except ImportError:
        raise TensorboardMissing("tensorboard: True, but the tensorboard package is not installed: "
                                 "pip install -e \".[tensorboard]\" (or set tensorboard: False)") from None
    return TeeLogger(train_logger, EpochTensorboardLogger(folder))


def read_scalars(folder: str) -> Dict[str, List[Tuple[int, float]]]:
    """Every scalar of the event files in ``folder``: tag -> [(step, value)], in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: Dict[str, List[Tuple[int, float]]] = {}
    for path in sorted(glob.glob(f"{folder}/events.out.tfevents.*")):
        events = EventAccumulator(path)
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((event.step, event.value) for event in events.Scalars(tag))
    return {tag: sorted(values, key=lambda point: point[0]) for tag, values in scalars.items()}
