"""Schedules over optimiser updates: the tri-stage learning rate as fairseq
runs it, and the optional ramp of distillation weights.

Example
-------
>>> ramp_factor(50, 200), ramp_factor(500, 200), ramp_factor(3, 0)
(0.25, 1.0, 1.0)
"""

from __future__ import annotations

from speechbrain.nnet.schedulers import TriStageLRSchedule


class HoldingTriStageLRSchedule(TriStageLRSchedule):
    """SpeechBrain's tri-stage schedule (linear warm-up from
    ``init_lr_scale·lr``, hold, exponential decay to ``final_lr_scale·lr``)
    that then *holds* ``final_lr_scale·lr``, as fairseq's ``tri_stage`` does
    (the CIF-HieraDist run); SpeechBrain's keeps decaying towards 0, which
    matters whenever training runs past the decay phase.

    Called as SpeechBrain's: ``schedule(optimizer, optimizer_step)``.

    Example
    -------
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    >>> schedule = HoldingTriStageLRSchedule(lr=1.0, warmup_steps=2, hold_steps=2, decay_steps=2, total_steps=6,
    ...                                      init_lr_scale=0.01, final_lr_scale=0.01)
    >>> for step in (0, 3, 5, 6, 100):
    ...     schedule(optimizer, step)
    ...     print(round(optimizer.param_groups[0]["lr"], 4))
    0.01
    1.0
    0.1
    0.01
    0.01
    """

    def __call__(self, opt, num_updates: int) -> None:
        if num_updates < self.warmup_steps + self.hold_steps + self.decay_steps:
            return super().__call__(opt, num_updates)
        for param_group in opt.param_groups:
            param_group["lr"] = self.peak_lr * self.final_lr_scale


def ramp_factor(update: int, ramp_updates: int) -> float:
    """Linear ramp from 0 to 1 over the first ``ramp_updates`` updates (1 when 0).

    Multiplies a distillation weight (``kd_ramp_updates``), so that a loss
    whose gradients dominate at initialisation does not set the direction of
    the first updates alone.
    """
    if ramp_updates <= 0:
        return 1.0
    return min(1.0, max(int(update), 0) / float(ramp_updates))
