"""What the Brains add to the models: divergence checks and the choice of distillation terms
(training runs end to end in test_recipes.py and test_cif_recipes.py)."""

import logging
from types import SimpleNamespace

import pytest
import torch
from speechbrain.utils.epoch_loop import EpochCounter

from hieradist_lobes.brains import CIFBrain, DivergenceError, HieraDistBrain, ProjectBrain


def _brain(**run_opts):
    torch.manual_seed(0)
    return ProjectBrain(modules={"lin": torch.nn.Linear(2, 2)}, opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
                        hparams={"epoch_counter": EpochCounter(1)}, run_opts={"device": "cpu", **run_opts})


def test_a_non_finite_loss_is_skipped_up_to_the_patience_then_stops_the_run():
    brain = _brain(nonfinite_patience=2)
    brain.step, brain.nonfinite_count = 5, 0
    brain.remember_terms({"ctc": torch.tensor(float("nan")), "seq": torch.tensor(1.5)},
                         SimpleNamespace(id=["u1", "u2"]))
    brain.check_loss_isfinite(torch.tensor(1.0))  # finite: nothing counted
    for _ in range(2):
        brain.check_loss_isfinite(torch.tensor(float("nan")))
    with pytest.raises(DivergenceError, match=r"diverged at epoch 0, step 5: .*ctc nan, seq 1\.5.*not finite: ctc"
                                              r".*utterances u1, u2.*3 non-finite batches"):
        brain.check_loss_isfinite(torch.tensor(float("nan")))


def test_non_finite_weights_stop_the_run_naming_the_tensors():
    brain = _brain()
    brain.check_weights_finite()
    with torch.no_grad():
        brain.modules.lin.bias[0] = float("inf")
    with pytest.raises(DivergenceError, match="weights are not finite .*lin.bias"):
        brain.check_weights_finite()


def test_hieradist_trains_only_the_projections_of_its_terms():
    projections = {"acd_proj": torch.nn.Linear(2, 3), "lrd_proj": torch.nn.Linear(2, 3)}
    for choice, expected in [("acd", {"acd_proj"}), ("lrd", {"lrd_proj"}), ("hieradist", {"acd_proj", "lrd_proj"})]:
        brain = HieraDistBrain(modules={"lin": torch.nn.Linear(2, 2)}, hparams={"distillation": choice, **projections},
                               run_opts={"device": "cpu"})
        assert set(brain.modules.keys()) - {"lin"} == expected
    with pytest.raises(ValueError, match="distillation must be one of acd, lrd, hieradist, got 'ace'"):
        HieraDistBrain(modules={}, hparams={"distillation": "ace", **projections}, run_opts={"device": "cpu"})


@pytest.mark.parametrize("sorting, warned", [("ascending", True), ("descending", True), ("random", False)])
def test_cif_training_on_batches_in_a_fixed_order_is_warned_about(caplog, sorting, warned):
    # The quantity loss can be met without counting when every epoch repeats the same batch order.
    brain = CIFBrain(modules={"lin": torch.nn.Linear(2, 2)}, opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
                     hparams={"epoch_counter": EpochCounter(1), "train_sorting": sorting}, run_opts={"device": "cpu"})
    with caplog.at_level(logging.WARNING, logger="hieradist_lobes.brains"):
        brain.on_fit_start()
    assert (f"train_sorting: {sorting} gives the same batches" in caplog.text) == warned
