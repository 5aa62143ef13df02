import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hieradist_lobes.losses import (
    align_frames,
    combine_teachers,
    ctc_pseudo_label_loss,
    frame_kl_loss,
    greedy_ctc_targets,
    soft_cross_entropy,
    strategy_weights,
    teacher_weights,
)


def reference_greedy(best, length, blank):
    out, previous = [], None
    for label in best[:length]:
        if label != blank and label != previous:
            out.append(label)
        previous = label
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=15), min_size=1, max_size=5), st.data())
def test_greedy_targets_match_a_plain_loop(sequences, data):
    frames = max(len(s) for s in sequences)
    best = torch.tensor([s + [0] * (frames - len(s)) for s in sequences])
    lengths = torch.tensor([data.draw(st.integers(1, len(s))) for s in sequences])
    targets, target_lengths = greedy_ctc_targets(torch.nn.functional.one_hot(best, 5).float(), lengths, 0)
    for row, (sequence, length) in enumerate(zip(best.tolist(), lengths.tolist())):
        expected = reference_greedy(sequence, length, 0)
        assert target_lengths[row].item() == len(expected)
        assert targets[row, : len(expected)].tolist() == expected


def test_pseudo_label_ctc_equals_ctc_on_the_teacher_1best():
    torch.manual_seed(0)
    teacher = torch.nn.functional.one_hot(torch.tensor([[0, 3, 3, 0, 2, 0]]), 5).float()
    student = torch.log_softmax(torch.randn(1, 9, 5), dim=-1)
    loss = ctc_pseudo_label_loss(student, torch.tensor([9]), teacher, torch.tensor([6]), blank_index=0)
    expected = torch.nn.functional.ctc_loss(student.transpose(0, 1), torch.tensor([[3, 2]]), torch.tensor([9]),
                                            torch.tensor([2]), blank=0, reduction="none") / 2
    assert torch.allclose(loss, expected)


def test_pseudo_label_ctc_is_differentiable_and_padding_free():
    student = torch.randn(2, 8, 5, requires_grad=True)
    teacher = torch.nn.functional.one_hot(torch.tensor([[0, 1, 0, 2, 0, 0, 0, 0], [3, 3, 0, 4, 4, 1, 1, 1]]), 5).float()
    loss = ctc_pseudo_label_loss(torch.log_softmax(student, -1), torch.tensor([8, 5]), teacher,
                                 torch.tensor([8, 5]), 0)
    loss.sum().backward()
    # Student frames past its length get no gradient.
    assert student.grad[1, 5:].abs().max() == 0


def test_frame_kl_hand_computed():
    # Two classes, one frame: teacher p = (0.8, 0.2), student q = (0.5, 0.5).
    teacher = torch.log(torch.tensor([[[0.8, 0.2]]]))
    student = torch.zeros(1, 1, 2)
    kl = frame_kl_loss(student, teacher, torch.tensor([1]), torch.tensor([1]))
    expected = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert kl.item() == pytest.approx(expected, rel=1e-5)
    # Temperature 2 on both sides: teacher softened to (2/3, 1/3); student stays uniform.
    kl2 = frame_kl_loss(student, teacher, torch.tensor([1]), torch.tensor([1]), temperature=2.0)
    p = torch.softmax(torch.log(torch.tensor([0.8, 0.2])) / 2, 0)
    assert p.tolist() == pytest.approx([2 / 3, 1 / 3], rel=1e-5)
    expected2 = float((p * (p.log() - math.log(0.5))).sum())
    assert kl2.item() == pytest.approx(expected2, rel=1e-5)


def test_frame_kl_ignores_padding_and_handles_speed_perturbation():
    torch.manual_seed(1)
    logits = torch.randn(1, 4, 3)
    teacher = torch.log_softmax(logits, -1)
    # The student sees the utterance twice as slow: 8 frames, each teacher frame twice.
    student = logits.repeat_interleave(2, dim=1)
    padded = torch.cat([student, torch.randn(1, 3, 3) * 50], dim=1)
    kl = frame_kl_loss(padded, teacher, torch.tensor([8]), torch.tensor([4]))
    assert kl.item() == pytest.approx(0.0, abs=1e-6)


def test_align_frames_faster_student():
    teacher = torch.arange(8.0).view(1, 8, 1)
    out = align_frames(teacher, torch.tensor([8]), torch.tensor([4]), 5)
    assert out.flatten().tolist()[:4] == [1.0, 3.0, 5.0, 7.0]


def test_soft_cross_entropy_hand_computed():
    teacher = torch.log(torch.tensor([[[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]]]))
    student = torch.log(torch.tensor([[[0.6, 0.4], [0.2, 0.8], [0.99, 0.01]]]))
    ce = soft_cross_entropy(student, teacher, torch.tensor([2]))
    expected = (-(0.9 * math.log(0.6) + 0.1 * math.log(0.4)) - (0.3 * math.log(0.2) + 0.7 * math.log(0.8))) / 2
    assert ce.item() == pytest.approx(expected, rel=1e-5)


def test_soft_cross_entropy_temperature_applies_to_the_student_too():
    teacher = torch.log(torch.tensor([[[0.5, 0.5]]]))
    student = torch.tensor([[[2.0, 0.0]]])
    t = 4.0
    q = torch.softmax(student / t, -1)
    expected = -(0.5 * q.log()).sum().item()
    assert soft_cross_entropy(student, teacher, torch.tensor([1]), temperature=t).item() == pytest.approx(expected)


def test_soft_cross_entropy_rejects_short_teacher():
    with pytest.raises(ValueError, match="teacher has 2 tokens"):
        soft_cross_entropy(torch.zeros(1, 3, 2), torch.zeros(1, 2, 2), torch.tensor([3]))


def test_strategies():
    rates = torch.tensor([[10.0, 40.0, 20.0], [30.0, 10.0, 20.0]])
    assert teacher_weights("average", rates).tolist() == [[0.5] * 3, [0.5] * 3]
    assert teacher_weights("best", rates).tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    # Means 23.33 and 20: the original softmax(100 - PER) at temperature 1.
    weighted = teacher_weights("weighted", rates, temperature=1.0)
    expected = torch.softmax(torch.tensor([100 - 70 / 3, 100 - 20.0]), 0)
    assert torch.allclose(weighted[:, 0], expected) and torch.allclose(weighted[:, 2], expected)
    softer = teacher_weights("weighted", rates, temperature=10.0)
    assert 0.5 < softer[1, 0] < weighted[1, 0]
    for strategy in ("average", "best", "weighted"):
        assert torch.allclose(teacher_weights(strategy, rates).sum(0), torch.ones(3))
    with pytest.raises(ValueError, match="unknown distillation strategy"):
        teacher_weights("median", rates)
    with pytest.raises(ValueError, match="positive"):
        teacher_weights("weighted", rates, temperature=0)


def test_best_strategy_weights_ctc_like_weighted():
    ctc_rates = torch.tensor([[5.0, 5.0], [50.0, 50.0]])
    att_rates = torch.tensor([[30.0, 10.0], [20.0, 40.0]])
    ctc_w, att_w = strategy_weights("best", ctc_rates, att_rates, temperature=10.0)
    assert att_w.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert torch.allclose(ctc_w, teacher_weights("weighted", ctc_rates, 10.0))


def test_combine_teachers():
    losses = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    weights = torch.tensor([[0.25, 1.0], [0.75, 0.0]])
    assert combine_teachers(losses, weights).tolist() == [2.5, 2.0]
    with pytest.raises(ValueError, match="shape"):
        combine_teachers(losses, weights[:1])


# ---- CIF model and HieraDist losses ----

from hieradist_lobes.losses import acd_loss, ctc_loss_sum, lrd_loss, sequence_cross_entropy  # noqa: E402


def test_sequence_cross_entropy_sums_valid_tokens_with_smoothing():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 3.0], [9.0, 9.0, 9.0]]])
    targets = torch.tensor([[0, 1], [2, 0]])
    lengths = torch.tensor([2, 1])  # the last token of utterance 2 is padding
    logp = torch.log_softmax(logits, dim=-1)
    nll = -(logp[0, 0, 0] + logp[0, 1, 1] + logp[1, 0, 2])
    assert sequence_cross_entropy(logits, targets, lengths).item() == pytest.approx(nll.item(), rel=1e-6)
    # Label smoothing eps: (1 - eps)·NLL + eps·mean over classes of -log p.
    eps = 0.1
    uniform = -(logp[0, 0].mean() + logp[0, 1].mean() + logp[1, 0].mean())
    expected = (1 - eps) * nll + eps * uniform
    assert sequence_cross_entropy(logits, targets, lengths, eps).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ctc_loss_sum_is_the_sum_of_per_utterance_losses():
    torch.manual_seed(0)
    logprobs = torch.log_softmax(torch.randn(2, 6, 4), dim=-1)
    frames, targets, target_lengths = torch.tensor([6, 4]), torch.tensor([[1, 2, 3], [3, 3, 0]]), torch.tensor([3, 2])
    single = [ctc_loss_sum(logprobs[i:i + 1], frames[i:i + 1], targets[i:i + 1], target_lengths[i:i + 1])
              for i in range(2)]
    assert ctc_loss_sum(logprobs, frames, targets, target_lengths).item() == pytest.approx(sum(single).item())
    # Two frames cannot hold the repeated label 3,3 (it needs a blank between): counted as 0, not inf.
    assert ctc_loss_sum(logprobs[1:], torch.tensor([2]), targets[1:], target_lengths[1:]).item() == 0.0


def test_acd_loss_matches_a_hand_computed_infonce_with_all_negatives():
    student = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    temperature = 0.5
    s = student / student.norm(dim=1, keepdim=True)
    t = teacher / teacher.norm(dim=1, keepdim=True)
    expected = 0.0
    for i in range(3):
        positive = float(s[i] @ t[i]) / temperature
        negatives = [float(s[i] @ t[j]) / temperature for j in range(3) if j != i]
        expected += -positive + math.log(sum(math.exp(x) for x in [positive] + negatives))
    # With 2 negatives and 3 tokens, every other token is a negative: no randomness left.
    assert acd_loss(student, teacher, num_negatives=700, temperature=temperature).item() == pytest.approx(expected,
                                                                                                         rel=1e-5)


def test_acd_negatives_are_sampled_without_self():
    # The positive is orthogonal to everything else; if self were among the
    # negatives, its logit would appear twice and the loss would rise.
    torch.manual_seed(0)
    teacher = torch.eye(6)
    student = teacher.clone()
    for _ in range(5):
        loss = acd_loss(student, teacher, num_negatives=2, temperature=1.0)
        one = -torch.log_softmax(torch.tensor([1.0, 0.0, 0.0]), dim=0)[0].item()
        assert loss.item() == pytest.approx(6 * one, rel=1e-6)


def test_acd_loss_gradients_reach_the_student_only_through_its_input():
    student = torch.randn(5, 4, requires_grad=True)
    teacher = torch.randn(5, 4)
    acd_loss(student, teacher, num_negatives=3).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    with pytest.raises(ValueError, match="tokens × dim"):
        acd_loss(torch.randn(5, 4), torch.randn(5, 3))
    assert acd_loss(torch.randn(1, 4), torch.randn(1, 4)).item() == 0.0


def test_lrd_loss_is_the_summed_squared_error():
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert lrd_loss(student, teacher).item() == pytest.approx(4 + 9 + 1 + 1)
    with pytest.raises(ValueError, match="differ in shape"):
        lrd_loss(student, teacher[:1])
