import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hieradist_lobes.losses import (
    align_frames,
    attention_kd_loss,
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


@pytest.mark.device
def test_pseudo_label_ctc_equals_ctc_on_the_teacher_1best(device):
    torch.manual_seed(0)
    teacher = torch.nn.functional.one_hot(torch.tensor([[0, 3, 3, 0, 2, 0]]), 5).float()
    student = torch.log_softmax(torch.randn(1, 9, 5), dim=-1)
    loss = ctc_pseudo_label_loss(student.to(device), torch.tensor([9], device=device), teacher.to(device),
                                 torch.tensor([6], device=device), blank_index=0)
    expected = torch.nn.functional.ctc_loss(student.transpose(0, 1), torch.tensor([[3, 2]]), torch.tensor([9]),
                                            torch.tensor([2]), blank=0, reduction="none") / 2
    assert loss.device == student.to(device).device
    assert torch.allclose(loss.cpu(), expected, atol=1e-5)


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


def test_best_ties_go_to_the_first_teacher_or_are_shared():
    rates = torch.tensor([[0.0, 10.0, 5.0], [0.0, 10.0, 0.0], [0.0, 20.0, 0.0]])  # teachers × utterances
    assert teacher_weights("best", rates).T.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]  # first of the tied
    shared = teacher_weights("best", rates, best_ties="average").T
    assert torch.allclose(shared, torch.tensor([[1 / 3] * 3, [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]))
    _, att = strategy_weights("best", rates, rates, best_ties="average")
    assert torch.equal(att, shared.T)
    with pytest.raises(ValueError, match="best_ties"):
        teacher_weights("best", rates, best_ties="random")


def test_combine_teachers():
    losses = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    weights = torch.tensor([[0.25, 1.0], [0.75, 0.0]])
    assert combine_teachers(losses, weights).tolist() == [2.5, 2.0]
    with pytest.raises(ValueError, match="shape"):
        combine_teachers(losses, weights[:1])


# ---- CIF model and HieraDist losses ----

from hieradist_lobes.losses import (  # noqa: E402
    acd_loss,
    ctc_loss_sum,
    lrd_loss,
    negative_count,
    sample_negatives,
    sequence_cross_entropy,
)


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


def reference_acd(student, teacher, negatives, temperature):
    """The original's ACD written plainly: per anchor, its sampled negatives, the anchor itself masked."""
    s = torch.nn.functional.normalize(student, dim=-1, eps=1e-6)
    t = torch.nn.functional.normalize(teacher, dim=-1, eps=1e-6)
    total = 0.0
    for i in range(len(s)):
        logits = [float(s[i] @ t[i]) / temperature]
        logits += [float(s[i] @ t[j]) / temperature for j in negatives[i].tolist() if j != i]
        total += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    return total


@pytest.mark.device
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 50), st.integers(0, 2**16))
def test_acd_loss_is_the_original_infonce_on_the_sampled_negatives(device, tokens, num_negatives, seed):
    torch.manual_seed(seed)
    student, teacher = torch.randn(tokens, 5), torch.randn(tokens, 5)
    count = negative_count(tokens, num_negatives)
    negatives = sample_negatives(tokens, count, torch.Generator().manual_seed(seed))
    expected = reference_acd(student, teacher, negatives, 0.5)
    loss = acd_loss(student.to(device), teacher.to(device), num_negatives, 0.5,
                    generator=torch.Generator().manual_seed(seed))
    assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_acd_count_rule_is_the_originals():
    assert negative_count(701, 700) == 700 and negative_count(5000, 700) == 700
    assert negative_count(700, 700) == 560 and negative_count(65, 700) == 52 and negative_count(1, 700) == 0


def test_acd_negatives_are_uniform_distinct_and_include_the_anchor_as_often_as_any_token():
    tokens, count, draws = 10, 4, 20000
    generator = torch.Generator().manual_seed(0)
    hits = torch.zeros(tokens, tokens)
    for _ in range(draws // tokens):
        rows = sample_negatives(tokens, count, generator)
        assert all(len(set(row)) == count for row in rows.tolist())
        hits.scatter_add_(1, rows, torch.ones_like(rows, dtype=torch.float))
    # Each index appears in a row's sample with probability count/tokens, the anchor too.
    expected = (draws // tokens) * count / tokens
    assert torch.allclose(hits, torch.full_like(hits, expected), rtol=0.15)
    with pytest.raises(ValueError, match="distinct"):
        sample_negatives(3, 4)


def test_acd_anchor_is_masked_but_repeats_of_its_token_stay_negatives():
    # Token 0 and 1 carry the same PLM feature (the same word twice): 1 is a
    # negative of 0 (not removed, as in the original), 0 itself is not.
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    student = teacher.clone()
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        negatives = sample_negatives(5, negative_count(5, 700), torch.Generator().manual_seed(seed))
        expected = reference_acd(student, teacher, negatives, 1.0)
        assert acd_loss(student, teacher, 700, 1.0, generator=generator).item() == pytest.approx(expected, rel=1e-5)


def test_acd_sampling_is_linear_in_the_batch_tokens():
    """No tokens × tokens key matrix: the sampled indices are tokens × 700 at any batch size."""
    assert sample_negatives(20000, negative_count(20000, 700)).shape == (20000, 700)


def test_acd_loss_gradients_reach_the_student_only_through_its_input():
    student = torch.randn(5, 4, requires_grad=True)
    teacher = torch.randn(5, 4)
    acd_loss(student, teacher, num_negatives=3, temperature=1.0).backward()
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


def test_attention_kd_is_token_weighted_as_the_original_hand_example():
    """The spec's example: utterances of 1 and 3 tokens; per-token soft-CE
    teacher 1: 1 | 2,2,2 and teacher 2: 3 | 1,1,1. *average*: (7/4 + 6/4)/2."""
    sums, lengths = torch.tensor([[1.0, 6.0], [3.0, 3.0]]), torch.tensor([1, 3])
    average = teacher_weights("average", torch.zeros(2, 2))
    assert float(attention_kd_loss(sums, lengths, average)) == pytest.approx(1.625)
    assert float(attention_kd_loss(sums, lengths, average, "utterances")) == pytest.approx(1.75)
    with pytest.raises(ValueError, match="kd_normalisation"):
        attention_kd_loss(sums, lengths, average, "frames")


def original_nll_loss_kd(student_logprobs, teacher_probs, lengths):
    """SpeechBrain v0.5.16's nll_loss_kd: every real token of the batch, one mean."""
    total, count = 0.0, 0
    for b, length in enumerate(lengths.tolist()):
        for i in range(length):
            total += float(-(teacher_probs[b, i] * student_logprobs[b, i]).sum())
            count += 1
    return total / count


@pytest.mark.parametrize("strategy", ["average", "best", "weighted"])
def test_attention_kd_matches_the_original_recipe_per_strategy(strategy):
    torch.manual_seed(0)
    student = torch.randn(3, 5, 6)
    teachers = torch.log_softmax(torch.randn(2, 3, 5, 6), dim=-1)
    lengths = torch.tensor([5, 2, 3])
    rates = torch.tensor([[10.0, 40.0, 20.0], [30.0, 5.0, 25.0]])
    sums = torch.stack([soft_cross_entropy(student, teachers[k], lengths, reduction="sum") for k in range(2)])
    _, weights = strategy_weights(strategy, rates, rates)
    ours = float(attention_kd_loss(sums, lengths, weights))
    student_logprobs = torch.log_softmax(student, -1)
    if strategy == "best":  # the original gathers each utterance's best teacher, then one nll_loss_kd
        chosen = torch.stack([teachers[int(rates[:, b].argmin()), b] for b in range(3)]).exp()
        expected = original_nll_loss_kd(student_logprobs, chosen, lengths)
    else:  # a weighted sum of the teachers' nll_loss_kd
        expected = sum(float(weights[k, 0]) * original_nll_loss_kd(student_logprobs, teachers[k].exp(), lengths)
                       for k in range(2))
    assert ours == pytest.approx(expected, rel=1e-5)
