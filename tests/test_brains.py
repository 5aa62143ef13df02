"""What the Brains add to the models: divergence checks and the choice of distillation terms
(training runs end to end in test_recipes.py and test_cif_recipes.py)."""

import logging
from types import SimpleNamespace

import pytest
import torch
from speechbrain.utils.epoch_loop import EpochCounter

from hieradist_lobes.brains import ASRStepOutput, CIFBrain, DistillationBrain, DivergenceError, HieraDistBrain, ProjectBrain
from hieradist_lobes.losses import (
    attention_kd_loss,
    combine_teachers,
    ctc_pseudo_label_loss,
    frame_kl_loss,
    soft_cross_entropy,
    strategy_weights,
)


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


def _distillation_batch(seed, teachers=3, batch=4, classes=7):
    generator = torch.Generator().manual_seed(seed)
    frames, tokens = 12, 5
    ctc_logits = torch.randn(batch, frames, classes, generator=generator, requires_grad=True)
    seq_logits = torch.randn(batch, tokens, classes, generator=generator, requires_grad=True)
    outputs = ASRStepOutput(encoded=None, ctc_logits=ctc_logits, ctc_logprobs=ctc_logits.log_softmax(-1),
                            seq_logits=seq_logits, seq_logprobs=seq_logits.log_softmax(-1),
                            wav_lens=torch.tensor([1.0, 0.75, 0.5, 1.0][:batch]))
    teacher_frames = torch.tensor([[12, 10, 12], [9, 9, 6], [6, 5, 6], [11, 12, 12]])[:batch, :teachers]
    teacher_ctc = torch.randn(batch, 12, teachers, classes, generator=generator).mul(3).log_softmax(-1)
    teacher_att = torch.randn(batch, tokens, teachers, classes, generator=generator).log_softmax(-1)
    rates = torch.rand(batch, teachers, generator=generator) * 40
    data = SimpleNamespace
    batch_data = SimpleNamespace(
        teacher_ctc=data(data=teacher_ctc), teacher_ctc_lengths=data(data=teacher_frames),
        teacher_att=data(data=teacher_att), teacher_ctc_error_rate=data(data=rates),
        teacher_att_error_rate=data(data=rates.flip(1)),
        tokens_eos=(None, torch.tensor([1.0, 0.6, 0.4, 1.0][:batch])))
    return outputs, batch_data


def _one_teacher_at_a_time(outputs, batch, hp):
    """The plain reference: each teacher's losses on its own, then the strategy's weights."""
    frames = outputs.ctc_logprobs.shape[1]
    student_lengths = torch.round(outputs.wav_lens * frames).long().clamp(min=1, max=frames)
    token_lengths = torch.round(batch.tokens_eos[1] * outputs.seq_logits.shape[1]).long()
    ctc_losses, seq_losses = [], []
    for k in range(batch.teacher_ctc.data.shape[2]):
        teacher_ctc, lengths = batch.teacher_ctc.data[:, :, k], batch.teacher_ctc_lengths.data[:, k]
        if hp["ctc_kd"] == "pseudo_label":
            ctc_losses.append(ctc_pseudo_label_loss(outputs.ctc_logprobs, student_lengths, teacher_ctc, lengths, 0))
        else:
            ctc_losses.append(hp["kd_temperature"] ** 2 * frame_kl_loss(
                outputs.ctc_logits, teacher_ctc, student_lengths, lengths, hp["kd_temperature"]))
        seq_losses.append(hp["kd_temperature"] ** 2 * soft_cross_entropy(
            outputs.seq_logits, batch.teacher_att.data[:, :, k], token_lengths, hp["kd_temperature"], "sum"))
    ctc_weights, att_weights = strategy_weights(hp["strategy"], batch.teacher_ctc_error_rate.data.T,
                                                batch.teacher_att_error_rate.data.T, hp["weighted_temperature"])
    return (combine_teachers(torch.stack(ctc_losses), ctc_weights).mean(),
            attention_kd_loss(torch.stack(seq_losses), token_lengths, att_weights, hp["kd_normalisation"]))


@pytest.mark.parametrize("ctc_kd, temperature", [("pseudo_label", 1.0), ("kl", 2.0)])
@pytest.mark.parametrize("strategy, normalisation", [("average", "tokens"), ("best", "utterances"),
                                                     ("weighted", "tokens")])
def test_all_teachers_at_once_give_the_losses_and_gradients_of_one_teacher_at_a_time(
        ctc_kd, temperature, strategy, normalisation):
    hp = {"ctc_kd": ctc_kd, "kd_temperature": temperature, "blank_index": 0, "strategy": strategy,
          "weighted_temperature": 5.0, "kd_normalisation": normalisation}
    brain = DistillationBrain(modules={"lin": torch.nn.Linear(2, 2)}, hparams=hp, run_opts={"device": "cpu"})
    results = []
    for compute in (brain.distillation_losses, lambda o, b: _one_teacher_at_a_time(o, b, hp)):
        outputs, batch = _distillation_batch(seed=7)
        kd_ctc, kd_seq = compute(outputs, batch)
        (kd_ctc + 0.3 * kd_seq).backward()
        results.append((kd_ctc.detach(), kd_seq.detach(), outputs.ctc_logits.grad, outputs.seq_logits.grad))
    for mine, reference in zip(*results):
        assert torch.allclose(mine, reference, rtol=1e-5, atol=1e-6)
    assert results[0][2].abs().sum() > 0 and results[0][3].abs().sum() > 0


class _NormalisedBrain(ProjectBrain):
    """The smallest Brain with a running feature normaliser and BatchNorm before its loss."""

    def compute_forward(self, batch, stage):
        features = self.modules.norm(batch["x"], torch.ones(batch["x"].shape[0]))
        return self.modules.lin(self.modules.bn(features.mean(dim=1)))

    def compute_objectives(self, predictions, batch, stage):
        return predictions.pow(2).mean()


def test_a_skipped_batch_leaves_no_trace_in_weights_or_running_statistics():
    """A batch with a non-finite loss moves neither the weights (SpeechBrain would apply its NaN gradients)
    nor the normaliser's and BatchNorm's statistics; the next finite batch trains as before."""
    from speechbrain.processing.features import InputNormalization

    torch.manual_seed(0)
    modules = {"norm": InputNormalization(), "bn": torch.nn.BatchNorm1d(3), "lin": torch.nn.Linear(3, 2)}
    brain = _NormalisedBrain(modules=modules, opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
                             hparams={"epoch_counter": EpochCounter(1)},
                             run_opts={"device": "cpu", "nonfinite_patience": 3})
    brain.init_optimizers()
    brain.modules.train()
    brain.step, brain.nonfinite_count = 1, 0
    brain.fit_batch({"x": torch.randn(4, 5, 3)})
    weights = {name: value.clone() for name, value in brain.modules.state_dict().items()}
    statistics = {key: (value.clone() if torch.is_tensor(value) else value)
                  for key, value in brain.modules.norm._statistics_dict().items()}
    poisoned = torch.randn(4, 5, 3)
    poisoned[0, 2, 1] = float("nan")
    brain.step = 2
    brain.fit_batch({"x": poisoned})
    assert brain.nonfinite_count == 1
    for name, value in brain.modules.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert brain.modules.norm.count == statistics["count"]
    assert torch.equal(brain.modules.norm.glob_mean, statistics["glob_mean"])
    assert torch.equal(brain.modules.norm.glob_std, statistics["glob_std"])
    brain.step = 3
    brain.fit_batch({"x": torch.randn(4, 5, 3)})
    assert not torch.equal(brain.modules.lin.weight, weights["lin.weight"])
    assert all(torch.isfinite(value).all() for value in brain.modules.state_dict().values()
               if value.is_floating_point())
