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
