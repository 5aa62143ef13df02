"""Scores from a CTC head for decoding: greedy CTC, and the CTC prefix score
that joint CTC/attention decoding adds to a beam search.

The CIF model trains a CTC head on its encoder (targets: the tokens and
``<eos>``).  :func:`ctc_greedy_decode` reads that head alone; the
:class:`CTCPrefixScorer` gives, for every prefix ``g`` of a beam and every
label ``c``, the log-probability that the CTC head's output starts with
``g + c`` (the prefix probability ψ of Watanabe et al., 2017, "Hybrid
CTC/attention architecture for end-to-end speech recognition", Algorithm 2),
so that :func:`~hieradist_lobes.cif_decoder.cif_beam_search` can score each
extension with ``(1 − w)·log p_decoder + w·(ψ(g + c) − ψ(g))``.

SpeechBrain's ``CTCPrefixScore`` scores ``<eos>`` as "the CTC sequence ends
here"; the CIF model's CTC head emits ``<eos>`` as a label, so here ``<eos>``
is scored like any other label.

Example
-------
>>> logprobs = torch.log_softmax(torch.randn(1, 6, 5), dim=-1)
>>> scorer = CTCPrefixScorer(logprobs, torch.tensor([6]), blank_index=0)
>>> state = scorer.initial_state()
>>> scores, candidates = scorer.extend(state)
>>> scores.shape
torch.Size([1, 5])
>>> state = scorer.advance(candidates, torch.tensor([0]), torch.tensor([3]))
>>> bool(torch.isclose(state.prefix_score, scores[0, 3]))
True
"""

from __future__ import annotations

from typing import List, NamedTuple, Sequence

import torch

#: The score change of an extension that the CTC head cannot produce at all
#: (more labels than frames allow): a large finite penalty rather than −inf, so
#: that when no hypothesis is possible the decoder's own ranking still decides.
IMPOSSIBLE = -1.0e4


def ctc_greedy_decode(ctc_logprobs: torch.Tensor, frame_lengths: torch.Tensor, blank_index: int,
                      drop: Sequence[int] = ()) -> List[List[int]]:
    """Best path of a CTC head: the most likely label per frame, repeats
    merged, blanks (and the labels in ``drop``, e.g. ``<eos>``) removed.

    Arguments
    ---------
    ctc_logprobs : torch.Tensor
        ``B × T × V`` (log-)probabilities.
    frame_lengths : torch.Tensor
        Valid frames per utterance (absolute).
    blank_index : int
    drop : sequence of int
        Labels left out of the result.

    Example
    -------
    >>> frames = torch.tensor([[0, 3, 3, 0, 3, 2, 0]])
    >>> logprobs = torch.nn.functional.one_hot(frames, 5).float().log()
    >>> ctc_greedy_decode(logprobs, torch.tensor([7]), blank_index=0, drop=[2])
    [[3, 3]]
    """
    best = ctc_logprobs.argmax(dim=-1).cpu()
    dropped = set(int(label) for label in drop) | {int(blank_index)}
    results = []
    for path, length in zip(best, frame_lengths.cpu().tolist()):
        labels = torch.unique_consecutive(path[: int(length)]).tolist()
        results.append([label for label in labels if label not in dropped])
    return results


class CTCPrefixState(NamedTuple):
    """The CTC prefix state of ``N`` hypotheses (prefixes ``g``)."""

    nonblank: torch.Tensor      # T × N: log r^n_t(g), paths over frames ≤ t ending in g's last label
    blank: torch.Tensor         # T × N: log r^b_t(g), paths over frames ≤ t ending in blank
    prefix_score: torch.Tensor  # N: log ψ(g) (0 for the empty prefix)
    last_label: torch.Tensor    # N: g's last label, −1 for the empty prefix


class CTCCandidates(NamedTuple):
    """Every one-label extension ``g + c`` of a :class:`CTCPrefixState`."""

    nonblank: torch.Tensor      # T × N × V
    blank: torch.Tensor         # T × N × V
    prefix_score: torch.Tensor  # N × V: log ψ(g + c)


class CTCPrefixScorer:
    """CTC prefix scores of hypotheses extended one label at a time.

    Arguments
    ---------
    ctc_logprobs : torch.Tensor
        ``N × T × V`` log-probabilities of the CTC head, one row per
        hypothesis (repeat an utterance's rows for its beam).
    frame_lengths : torch.Tensor
        Valid frames per row (absolute); later frames are ignored.
    blank_index : int
    """

    def __init__(self, ctc_logprobs: torch.Tensor, frame_lengths: torch.Tensor, blank_index: int) -> None:
        rows, frames, _ = ctc_logprobs.shape
        valid = torch.arange(frames, device=ctc_logprobs.device)[:, None] < frame_lengths.to(ctc_logprobs.device)[None]
        # T × N × V, −inf on padded frames: no path goes through them.
        self.logprobs = ctc_logprobs.float().transpose(0, 1).masked_fill(~valid[:, :, None], float("-inf"))
        self.blank_index = int(blank_index)
        self.rows, self.frames = rows, frames

    def initial_state(self) -> CTCPrefixState:
        """The empty prefix: every frame so far blank."""
        blank = torch.cumsum(self.logprobs[:, :, self.blank_index], dim=0)
        return CTCPrefixState(nonblank=torch.full_like(blank, float("-inf")), blank=blank,
                              prefix_score=torch.zeros(self.rows, device=blank.device),
                              last_label=torch.full((self.rows,), -1, dtype=torch.long, device=blank.device))

    def extend(self, state: CTCPrefixState) -> tuple:
        """Score every label ``c`` after each prefix ``g`` of ``state``.

        Returns
        -------
        scores : torch.Tensor
            ``N × V``: ``ψ(g + c) − ψ(g)``, the change of the prefix's CTC
            log-probability (:data:`IMPOSSIBLE` where ``g + c`` cannot be
            produced; 0 after a prefix that already could not); the blank
            column is −inf.
        candidates : CTCCandidates
            For :meth:`advance`.
        """
        logprobs = self.logprobs
        frames, rows, vocab = logprobs.shape
        empty_prefix = state.last_label < 0
        # φ_t: paths over frames ≤ t that have produced g and may go on with a new label c. After g's last
        # label itself, c = that label must first pass through a blank (else the repeat would merge).
        phi = torch.logaddexp(state.blank, state.nonblank)[:, :, None].expand(frames, rows, vocab).clone()
        repeat = torch.zeros(rows, vocab, dtype=torch.bool, device=logprobs.device)
        has_last = ~empty_prefix
        repeat[has_last, state.last_label[has_last]] = True
        phi = torch.where(repeat[None], state.blank[:, :, None], phi)
        nonblank = torch.full_like(logprobs, float("-inf"))
        blank = torch.full_like(logprobs, float("-inf"))
        # Frame 0: only the empty prefix can emit its first label there.
        nonblank[0] = torch.where(empty_prefix[:, None], logprobs[0], nonblank[0])
        start_terms = [nonblank[0]]
        blank_frame = logprobs[:, :, self.blank_index]
        for t in range(1, frames):
            entering = phi[t - 1] + logprobs[t]
            nonblank[t] = torch.logaddexp(nonblank[t - 1], phi[t - 1]) + logprobs[t]
            blank[t] = torch.logaddexp(blank[t - 1], nonblank[t - 1]) + blank_frame[t][:, None]
            start_terms.append(entering)
        # ψ(g + c): every path whose label c starts at some frame t (after g, at frame t−1 at the latest).
        prefix_score = torch.logsumexp(torch.stack(start_terms), dim=0)
        prefix_score[:, self.blank_index] = float("-inf")
        previous = state.prefix_score[:, None]
        scores = torch.where(torch.isfinite(previous), prefix_score - previous, torch.zeros_like(prefix_score))
        scores = scores.clamp(min=IMPOSSIBLE)
        scores[:, self.blank_index] = float("-inf")
        return scores, CTCCandidates(nonblank, blank, prefix_score)

    def advance(self, candidates: CTCCandidates, rows: torch.Tensor, labels: torch.Tensor) -> CTCPrefixState:
        """The new state of each hypothesis: row ``rows[i]`` of the
        candidates extended by ``labels[i]``."""
        rows, labels = rows.to(candidates.prefix_score.device), labels.to(candidates.prefix_score.device)
        return CTCPrefixState(nonblank=candidates.nonblank[:, rows, labels], blank=candidates.blank[:, rows, labels],
                              prefix_score=candidates.prefix_score[rows, labels], last_label=labels.clone())
