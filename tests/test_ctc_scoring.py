import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hieradist_lobes.cif_decoder import CIFDecoder, cif_beam_search
from hieradist_lobes.ctc_scoring import IMPOSSIBLE, CTCPrefixScorer, ctc_greedy_decode

BLANK, BOS, EOS = 0, 1, 2


def collapse(path, blank=BLANK):
    labels = [label for label, _ in itertools.groupby(path)]
    return [label for label in labels if label != blank]


def brute_force_prefix_probability(logprobs: torch.Tensor, prefix) -> float:
    """P(the CTC output starts with ``prefix``): every frame path enumerated (T × V small)."""
    frames, vocab = logprobs.shape
    total = 0.0
    for path in itertools.product(range(vocab), repeat=frames):
        if collapse(path)[: len(prefix)] == list(prefix):
            total += math.exp(sum(float(logprobs[t, label]) for t, label in enumerate(path)))
    return total


def scorer_prefix_scores(logprobs: torch.Tensor, length: int, prefix):
    """ψ(prefix + c) for every c, reached by advancing the scorer one label at a time."""
    scorer = CTCPrefixScorer(logprobs[None], torch.tensor([length]), blank_index=BLANK)
    state = scorer.initial_state()
    for label in prefix:
        _, candidates = scorer.extend(state)
        state = scorer.advance(candidates, torch.tensor([0]), torch.tensor([label]))
    _, candidates = scorer.extend(state)
    return state, candidates.prefix_score[0]


@settings(max_examples=25, deadline=None)
@given(frames=st.integers(1, 5), vocab=st.integers(2, 4), seed=st.integers(0, 10_000),
       prefix_length=st.integers(0, 3))
def test_prefix_scores_equal_the_sum_over_every_frame_path(frames, vocab, seed, prefix_length):
    generator = torch.Generator().manual_seed(seed)
    logprobs = torch.log_softmax(torch.randn(frames, vocab, generator=generator) * 2, dim=-1)
    prefix = torch.randint(1, vocab, (prefix_length,), generator=generator).tolist()
    state, scores = scorer_prefix_scores(logprobs, frames, prefix)
    expected_prefix = brute_force_prefix_probability(logprobs, prefix)
    if expected_prefix > 0:
        assert math.exp(float(state.prefix_score)) == pytest.approx(expected_prefix, rel=1e-4, abs=1e-12)
    for label in range(1, vocab):
        expected = brute_force_prefix_probability(logprobs, prefix + [label])
        assert math.exp(float(scores[label])) == pytest.approx(expected, rel=1e-4, abs=1e-12)
    assert scores[BLANK] == float("-inf")


def test_padded_frames_are_ignored():
    torch.manual_seed(1)
    logprobs = torch.log_softmax(torch.randn(6, 4), dim=-1)
    _, on_three = scorer_prefix_scores(logprobs, 3, [2])
    for label in (1, 2, 3):
        expected = brute_force_prefix_probability(logprobs[:3], [2, label])
        assert math.exp(float(on_three[label])) == pytest.approx(expected, rel=1e-4)


def test_score_changes_add_up_to_the_prefix_score_and_impossible_prefixes_are_penalised_once():
    torch.manual_seed(2)
    logprobs = torch.log_softmax(torch.randn(1, 2, 4), dim=-1)
    scorer = CTCPrefixScorer(logprobs, torch.tensor([2]), blank_index=BLANK)
    state, total = scorer.initial_state(), 0.0
    for label in (3, 1):
        scores, candidates = scorer.extend(state)
        total += float(scores[0, label])
        state = scorer.advance(candidates, torch.tensor([0]), torch.tensor([label]))
    assert total == pytest.approx(float(state.prefix_score), abs=1e-5)
    # Two frames cannot produce three labels: a fixed penalty, then no further change.
    scores, candidates = scorer.extend(state)
    assert float(scores[0, 2]) == IMPOSSIBLE
    state = scorer.advance(candidates, torch.tensor([0]), torch.tensor([2]))
    scores, _ = scorer.extend(state)
    assert torch.equal(scores[0, 1:], torch.zeros(3))


def test_greedy_ctc_merges_repeats_and_drops_blank_and_eos():
    frames = torch.tensor([[3, 3, BLANK, 3, 4, 4, EOS, BLANK], [4, BLANK, 4, 4, 3, 3, 3, 3]])
    logprobs = torch.nn.functional.one_hot(frames, 5).float().clamp(min=1e-6).log()
    assert ctc_greedy_decode(logprobs, torch.tensor([8, 4]), BLANK, drop=[EOS]) == [[3, 3, 4], [4, 4]]


@pytest.fixture()
def decoder():
    torch.manual_seed(0)
    return CIFDecoder(vocab_size=9, cif_size=6, d_model=16, num_layers=2, nhead=2, d_ffn=32, dropout=0.0).eval()


def test_ctc_weight_zero_decodes_the_same_hypotheses(decoder):
    torch.manual_seed(3)
    fired, lengths = torch.randn(3, 5, 6), torch.tensor([5, 3, 4])
    ctc_logprobs = torch.log_softmax(torch.randn(3, 12, 9), dim=-1)
    for beam in (1, 4):
        plain = cif_beam_search(decoder, fired, lengths, BOS, EOS, beam_size=beam, blocked=[BLANK, BOS])
        zero = cif_beam_search(decoder, fired, lengths, BOS, EOS, beam_size=beam, blocked=[BLANK, BOS],
                               ctc_logprobs=ctc_logprobs, ctc_lengths=torch.tensor([12, 8, 10]), ctc_weight=0.0)
        assert zero == plain


def test_a_confident_ctc_head_decides_the_words_the_fires_count_them(decoder):
    # The CTC head reads 7 6 5 <eos>; the decoder (random) does not. Four fires: four steps.
    path = [BLANK, 7, 7, BLANK, 6, BLANK, 5, 5, EOS, BLANK]
    ctc_logprobs = torch.nn.functional.one_hot(torch.tensor([path]), 9).float().clamp(min=1e-8).log()
    ctc_logprobs = torch.log_softmax(ctc_logprobs, dim=-1)
    fired = torch.randn(1, 4, 6)
    plain = cif_beam_search(decoder, fired, torch.tensor([4]), BOS, EOS, beam_size=4, blocked=[BLANK, BOS])
    joint = cif_beam_search(decoder, fired, torch.tensor([4]), BOS, EOS, beam_size=4, blocked=[BLANK, BOS],
                            ctc_logprobs=ctc_logprobs, ctc_lengths=torch.tensor([10]), ctc_weight=0.7,
                            blank_index=BLANK)
    assert joint == [[7, 6, 5]]
    assert plain != joint
