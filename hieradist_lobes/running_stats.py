"""Running statistics that a training forward pass updates, saved and put back.

A batch whose loss is not finite is skipped (no update), but its forward
pass has already moved every running statistic: BatchNorm's running mean
and variance, and the running mean and deviation of SpeechBrain's
``InputNormalization``. :class:`RunningStatistics` keeps a copy of them
before the forward pass, so that a skipped batch leaves no trace.

Example
-------
>>> import torch
>>> norm = torch.nn.BatchNorm1d(2)
>>> saved = RunningStatistics.of(norm)
>>> _ = norm(torch.tensor([[float("nan"), 1.0], [0.0, 3.0]]))
>>> saved.restore()
>>> norm.running_mean.tolist(), int(norm.num_batches_tracked)
([0.0, 0.0], 0)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch


def _copy(value):
    return value.detach().clone() if torch.is_tensor(value) else copy.deepcopy(value)


@dataclass
class RunningStatistics:
    """A copy of the running statistics of a module and its submodules.

    Buffers (BatchNorm's) are copied back in place, so that any reference
    to them stays valid; modules with SpeechBrain's statistics interface
    (``_statistics_dict`` / ``_load_statistics_dict``, which
    ``InputNormalization`` keeps outside its buffers) get theirs loaded back.
    """

    buffers: List[Tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    statistics: List[Tuple[torch.nn.Module, Dict[str, object]]] = field(default_factory=list)

    @classmethod
    def of(cls, root: torch.nn.Module) -> "RunningStatistics":
        """Copy the running statistics of ``root`` now."""
        saved = cls()
        for module in root.modules():
            saved.buffers.extend((buffer, buffer.detach().clone())
                                 for _, buffer in module.named_buffers(recurse=False))
            if hasattr(module, "_statistics_dict") and hasattr(module, "_load_statistics_dict"):
                saved.statistics.append((module, {key: _copy(value)
                                                  for key, value in module._statistics_dict().items()}))
        return saved

    def restore(self) -> None:
        """Put every statistic back as it was when copied."""
        with torch.no_grad():
            for buffer, value in self.buffers:
                buffer.copy_(value)
        for module, state in self.statistics:
            module._load_statistics_dict({key: _copy(value) for key, value in state.items()})
