"""Losses: multi-teacher distillation, and the CIF model's (HieraDist) losses.

Multi-teacher distillation for joint CTC/attention students: CTC pseudo-label
and frame KL losses, soft cross-entropy, and the teacher weighting strategies.
CIF models: token cross-entropy and CTC summed over the batch, and the two
distillation losses from a pre-trained language model's token features,
:func:`acd_loss` (acoustic contrastive) and :func:`lrd_loss` (linguistic
regression).  The CIF losses return batch *sums*; the Brain divides every
term by the number of output tokens, as fairseq normalises them, so that the
weights in the YAML are the paper's.

Lengths are absolute (frames or tokens, ``LongTensor`` of shape ``[batch]``),
not SpeechBrain's relative lengths: teacher and student may have different
frame counts (speed perturbation, other pooling), so each side brings its own.

Per-utterance losses come back with shape ``[batch]``; the strategies of
multi-teacher distillation (:func:`teacher_weights`) then combine the
``[teachers, batch]`` losses of several teachers.

Example
-------
>>> import torch
>>> teacher = torch.log_softmax(torch.randn(2, 12, 5), dim=-1)
>>> student = torch.randn(2, 12, 5, requires_grad=True)
>>> lengths = torch.tensor([12, 9])
>>> frame_kl_loss(student, teacher, lengths, lengths, temperature=2.0).shape
torch.Size([2])
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask

STRATEGIES = ("average", "best", "weighted")


def length_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """Boolean ``[batch, max_length]`` mask, True on real positions, from
    absolute lengths (SpeechBrain's ``length_to_mask``).

    Example
    -------
    >>> length_mask(torch.tensor([2, 3]), 3).int().tolist()
    [[1, 1, 0], [1, 1, 1]]
    """
    return length_to_mask(lengths, max_length, dtype=torch.bool)


def greedy_ctc_targets(
    ctc_logprobs: torch.Tensor, lengths: torch.Tensor, blank_index: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The greedy CTC 1-best of each utterance (repeats collapsed, blanks dropped).

    Vectorised over the batch: no Python loop over utterances or frames.

    Arguments
    ---------
    ctc_logprobs : torch.Tensor
        ``[batch, frames, classes]`` log-posteriors (or logits).
    lengths : torch.Tensor
        Frames per utterance.
    blank_index : int
        Index of the CTC blank.

    Returns
    -------
    targets : torch.Tensor
        ``[batch, max_label_length]`` label indices, padded with 0.
    target_lengths : torch.Tensor
        Labels per utterance.

    Example
    -------
    >>> best = torch.tensor([[0, 2, 2, 0, 2, 3, 3], [1, 1, 0, 0, 4, 4, 4]])
    >>> scores = torch.nn.functional.one_hot(best, 5).float()
    >>> greedy_ctc_targets(scores, torch.tensor([7, 4]), blank_index=0)
    (tensor([[2, 2, 3],
            [1, 0, 0]]), tensor([3, 1]))
    """
    best = ctc_logprobs.argmax(dim=-1)
    keep = best != blank_index
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    keep &= length_mask(lengths, best.shape[1])
    target_lengths = keep.sum(dim=1)
    width = int(target_lengths.max().item()) if best.numel() else 0
    targets = torch.zeros(best.shape[0], max(width, 1), dtype=torch.long, device=best.device)
    # Position of each kept label inside its utterance's target sequence.
    slots = torch.cumsum(keep.long(), dim=1) - 1
    rows = torch.arange(best.shape[0], device=best.device).unsqueeze(1).expand_as(best)
    targets[rows[keep], slots[keep]] = best[keep]
    return targets, target_lengths


def ctc_pseudo_label_loss(
    student_logprobs: torch.Tensor,
    student_lengths: torch.Tensor,
    teacher_ctc_logprobs: torch.Tensor,
    teacher_lengths: torch.Tensor,
    blank_index: int,
) -> torch.Tensor:
    """CTC loss of the student on the teacher's greedy 1-best (the original recipe's CTC KD).

    The target is a label sequence, so it is independent of either side's
    frame count: speed perturbation of the student cannot cut it.  It has no
    temperature (it uses the argmax), so no T² factor applies.

    Returns
    -------
    torch.Tensor
        ``[batch]`` losses, each divided by its target length.
    """
    targets, target_lengths = greedy_ctc_targets(teacher_ctc_logprobs, teacher_lengths, blank_index)
    losses = F.ctc_loss(
        student_logprobs.transpose(0, 1).float(),
        targets,
        student_lengths,
        target_lengths,
        blank=blank_index,
        reduction="none",
        zero_infinity=True,
    )
    return losses / target_lengths.clamp(min=1)


def align_frames(teacher: torch.Tensor, teacher_lengths: torch.Tensor, student_lengths: torch.Tensor,
                 student_frames: int) -> torch.Tensor:
    """Resample teacher frames onto the student's time axis (nearest frame).

    Speed perturbation stretches an utterance uniformly in time, so student
    frame ``j`` of ``M`` corresponds to teacher frame ``round(j·N/M)`` of ``N``.
    With equal lengths this is the identity.

    Example
    -------
    >>> teacher = torch.arange(4.0).view(1, 4, 1)
    >>> align_frames(teacher, torch.tensor([4]), torch.tensor([8]), 8).flatten().tolist()
    [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    """
    positions = torch.arange(student_frames, device=teacher.device, dtype=torch.float64).unsqueeze(0)
    scale = teacher_lengths.double().unsqueeze(1) / student_lengths.clamp(min=1).double().unsqueeze(1)
    index = torch.floor((positions + 0.5) * scale).long()
    index = torch.minimum(index, (teacher_lengths - 1).clamp(min=0).unsqueeze(1))
    return torch.gather(teacher, 1, index.unsqueeze(-1).expand(-1, -1, teacher.shape[-1]))


def frame_kl_loss(
    student_logits: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    student_lengths: torch.Tensor,
    teacher_lengths: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Frame-level KL(teacher ‖ student) between CTC posteriors, temperature on both.

    Both distributions are softened by ``temperature``:
    ``p_T = softmax(teacher_logprobs / T)`` (the teacher's log-posteriors are
    its logits up to a constant) and ``q_T = log_softmax(student_logits / T)``.
    Teacher frames are first aligned to the student's (:func:`align_frames`).

    Returns
    -------
    torch.Tensor
        ``[batch]`` mean KL per real student frame (multiply by T² yourself).

    Example
    -------
    >>> logits = torch.randn(1, 6, 4)
    >>> same = frame_kl_loss(logits, torch.log_softmax(logits, -1), torch.tensor([6]), torch.tensor([6]))
    >>> bool(same.abs().max() < 1e-5)
    True
    """
    frames = student_logits.shape[1]
    teacher = align_frames(teacher_logprobs.float(), teacher_lengths, student_lengths, frames)
    teacher_logp = torch.log_softmax(teacher / temperature, dim=-1)
    student_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(dim=-1)
    mask = length_mask(student_lengths, frames)
    return (kl * mask).sum(dim=1) / student_lengths.clamp(min=1)


def soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    lengths: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Token-level soft cross-entropy ``−Σ_c p_T(c)·log q_T(c)``, temperature on both.

    Arguments
    ---------
    student_logits : torch.Tensor
        ``[batch, tokens, classes]`` decoder logits (teacher-forced on the reference).
    teacher_logprobs : torch.Tensor
        ``[batch, tokens', classes]`` the teacher's teacher-forced log-posteriors;
        only the first ``tokens`` positions are used.
    lengths : torch.Tensor
        Real tokens per utterance (labels + eos).
    temperature : float
        Softening of both distributions.
    reduction : str
        ``mean`` over each utterance's real tokens, or their ``sum``.

    Returns
    -------
    torch.Tensor
        ``[batch]`` mean (or sum) over real tokens (multiply by T² yourself).

    Example
    -------
    >>> teacher = torch.log(torch.tensor([[[0.5, 0.5]]]))
    >>> student = torch.zeros(1, 1, 2)
    >>> round(soft_cross_entropy(student, teacher, torch.tensor([1])).item(), 4)  # log 2
    0.6931
    """
    tokens = student_logits.shape[1]
    if teacher_logprobs.shape[1] < tokens:
        raise ValueError(
            f"teacher has {teacher_logprobs.shape[1]} tokens, the student decoder {tokens}: "
            "the teacher store and the student's labels disagree"
        )
    teacher_p = torch.softmax(teacher_logprobs[:, :tokens].float() / temperature, dim=-1)
    student_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    cross_entropy = -(teacher_p * student_logp).sum(dim=-1)
    sums = (cross_entropy * length_mask(lengths, tokens)).sum(dim=1)
    if reduction == "sum":
        return sums
    if reduction != "mean":
        raise ValueError(f"reduction must be mean or sum, got {reduction!r}")
    return sums / lengths.clamp(min=1)


BEST_TIES = ("first", "average")


def teacher_weights(strategy: str, error_rates: torch.Tensor, temperature: float = 1.0,
                    best_ties: str = "first") -> torch.Tensor:
    """Weights ``[teachers, batch]`` (summing to 1 over teachers) of a strategy.

    Arguments
    ---------
    strategy : str
        ``average``: equal weights.
        ``weighted``: ``softmax_k(−mean_b error_rates[k] / temperature)``, the
        same for every utterance of the batch; error rates are percentages,
        and ``temperature=1`` is the original recipe's ``softmax(100 − PER)``.
        Larger temperatures flatten the weights.
        ``best``: per utterance, all weight on the teacher with the lowest
        error rate.
    error_rates : torch.Tensor
        ``[teachers, batch]`` error rates in percent.
    temperature : float
        Softmax temperature of ``weighted``.
    best_ties : str
        ``best`` when several teachers share the lowest error rate (common on
        short utterances: 63 % of the built-in corpus's training utterances,
        21 % with every teacher at 0): ``first``, the first of them in the
        YAML's order (the original's ``torch.min``), or ``average``, equal
        weights over them.

    Example
    -------
    >>> rates = torch.tensor([[10.0, 30.0], [20.0, 10.0]])
    >>> teacher_weights("best", rates).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    >>> teacher_weights("weighted", rates, temperature=1e9).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    >>> teacher_weights("best", torch.tensor([[0.0, 5.0], [0.0, 2.0]]), best_ties="average").tolist()
    [[0.5, 0.0], [0.5, 1.0]]
    """
    teachers, batch = error_rates.shape
    if strategy == "average":
        return torch.full_like(error_rates, 1.0 / teachers, dtype=torch.float32)
    if strategy == "weighted":
        if temperature <= 0:
            raise ValueError(f"weighted_temperature must be positive, got {temperature}")
        weights = torch.softmax(-error_rates.float().mean(dim=1) / temperature, dim=0)
        return weights.unsqueeze(1).expand(teachers, batch).contiguous()
    if strategy == "best":
        if best_ties == "average":
            lowest = error_rates == error_rates.min(dim=0, keepdim=True).values
            return lowest.float() / lowest.sum(dim=0, keepdim=True)
        if best_ties != "first":
            raise ValueError(f"best_ties must be one of {', '.join(BEST_TIES)}, got {best_ties!r}")
        best = error_rates.argmin(dim=0)
        return F.one_hot(best, teachers).T.float()
    raise ValueError(f"unknown distillation strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def strategy_weights(
    strategy: str, ctc_error_rates: torch.Tensor, att_error_rates: torch.Tensor, temperature: float = 1.0,
    best_ties: str = "first",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Teacher weights for the CTC and the attention head, as in the original recipe.

    ``best`` picks the best teacher per utterance for the attention head and
    weights the CTC head as ``weighted`` does; the other strategies treat both
    heads alike, each with its own error rates.

    Returns
    -------
    (ctc_weights, att_weights), each ``[teachers, batch]``.
    """
    if strategy == "best":
        return (teacher_weights("weighted", ctc_error_rates, temperature),
                teacher_weights("best", att_error_rates, best_ties=best_ties))
    return (teacher_weights(strategy, ctc_error_rates, temperature),
            teacher_weights(strategy, att_error_rates, temperature))


KD_NORMALISATIONS = ("tokens", "utterances")


def attention_kd_loss(token_sums: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor,
                      normalisation: str = "tokens") -> torch.Tensor:
    """The batch's attention distillation loss from per-utterance sums over tokens.

    Arguments
    ---------
    token_sums : torch.Tensor
        ``[teachers, batch]`` soft cross-entropy summed over each utterance's tokens.
    lengths : torch.Tensor
        ``[batch]`` real tokens per utterance.
    weights : torch.Tensor
        ``[teachers, batch]`` teacher weights of the strategy.
    normalisation : str
        ``tokens`` (the original's ``nll_loss_kd``): the weighted sum over
        all real tokens of the batch divided by their number, so that long
        utterances weigh more; ``utterances``: a mean per utterance, then
        over utterances.

    Example
    -------
    The hand example of two utterances of 1 and 3 tokens, per-token soft-CE
    teacher 1: 1 | 2, 2, 2 and teacher 2: 3 | 1, 1, 1, strategy *average*:

    >>> sums, lengths = torch.tensor([[1.0, 6.0], [3.0, 3.0]]), torch.tensor([1, 3])
    >>> average = torch.full((2, 2), 0.5)
    >>> float(attention_kd_loss(sums, lengths, average)), float(attention_kd_loss(sums, lengths, average, "utterances"))
    (1.625, 1.75)
    """
    weighted = combine_teachers(token_sums, weights)
    if normalisation == "tokens":
        return weighted.sum() / lengths.sum().clamp(min=1)
    if normalisation == "utterances":
        return (weighted / lengths.clamp(min=1)).mean()
    raise ValueError(f"kd_normalisation must be one of {', '.join(KD_NORMALISATIONS)}, got {normalisation!r}")


def combine_teachers(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over teachers: ``[teachers, batch]`` → ``[batch]``."""
    if losses.shape != weights.shape:
        raise ValueError(f"losses {tuple(losses.shape)} and weights {tuple(weights.shape)} differ in shape")
    return (losses * weights.to(losses.dtype)).sum(dim=0)


# ---- CIF model and hierarchical distillation (HieraDist) ----


def sequence_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                           label_smoothing: float = 0.0) -> torch.Tensor:
    """Token cross-entropy with label smoothing, summed over valid tokens.

    Example
    -------
    >>> logits = torch.zeros(1, 2, 4)
    >>> round(float(sequence_cross_entropy(logits, torch.tensor([[1, 3]]), torch.tensor([1]))), 4)  # log 4
    1.3863
    """
    mask = length_mask(lengths, targets.shape[1])
    return F.cross_entropy(logits[mask].float(), targets[mask], label_smoothing=label_smoothing, reduction="sum")


def ctc_loss_sum(logprobs: torch.Tensor, frame_lengths: torch.Tensor, targets: torch.Tensor,
                 target_lengths: torch.Tensor, blank_index: int = 0) -> torch.Tensor:
    """CTC loss summed over the batch (impossible alignments count 0).

    Example
    -------
    >>> logprobs = torch.log_softmax(torch.zeros(1, 3, 3), dim=-1)
    >>> loss = ctc_loss_sum(logprobs, torch.tensor([3]), torch.tensor([[1]]), torch.tensor([1]))
    >>> round(float(loss), 4)  # -log(6 paths · 3^-3)
    1.5041
    """
    return F.ctc_loss(logprobs.float().transpose(0, 1), targets, frame_lengths, target_lengths,
                      blank=blank_index, reduction="sum", zero_infinity=True)


def negative_count(tokens: int, num_negatives: int = 700) -> int:
    """How many negatives ACD draws per token: ``num_negatives``, or
    ``int(0.8·tokens)`` when the batch has no more tokens than that (the
    original's rule).

    Example
    -------
    >>> negative_count(1500, 700), negative_count(700, 700), negative_count(65, 700)
    (700, 560, 52)
    """
    return int(num_negatives) if tokens > num_negatives else int(0.8 * tokens)


def sample_negatives(tokens: int, count: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """For each of ``tokens`` anchors, ``count`` distinct indices drawn
    uniformly from all ``tokens`` (the anchor's own index included, as in
    the original, which then masks it).

    Linear in ``tokens`` (``tokens × count`` indices): each row is a window
    of ``count`` consecutive entries, at a random offset, of one random
    permutation.  Every row is a uniformly random ``count``-subset, as the
    original's ``multinomial`` without replacement over a ``tokens × tokens``
    weight matrix gives; only the rows' joint draw differs, which leaves the
    expected loss and gradient unchanged (the loss is a sum over rows).

    Example
    -------
    >>> rows = sample_negatives(10, 4, torch.Generator().manual_seed(0))
    >>> rows.shape, all(len(set(row)) == 4 for row in rows.tolist())
    (torch.Size([10, 4]), True)
    """
    if not 0 <= count <= tokens:
        raise ValueError(f"cannot draw {count} distinct negatives from {tokens} tokens")
    order = torch.randperm(tokens, generator=generator)
    offsets = torch.randint(tokens, (tokens, 1), generator=generator)
    return order[(offsets + torch.arange(count)) % tokens]


def acd_loss(student: torch.Tensor, teacher: torch.Tensor, num_negatives: int = 700, temperature: float = 0.02,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Acoustic contrastive distillation: InfoNCE between CIF outputs and PLM features.

    For token ``i`` the positive is its own PLM feature ``t_i``; the negatives
    are the PLM features of :func:`negative_count` tokens drawn without
    replacement from all the batch's tokens (:func:`sample_negatives`); the
    anchor's own index, when drawn, is masked out, while other occurrences of
    the same token stay negatives (the original's ``remove_overlap_in_negs``).
    Similarity is the cosine of L2-normalised vectors (eps 1e-6) divided by
    ``temperature``::

        loss_i = −log softmax([cos(s_i, t_i), cos(s_i, t_n1), ...] / τ)[0]

    Arguments
    ---------
    student : torch.Tensor
        ``M × D`` projected CIF outputs of the batch's valid tokens.
    teacher : torch.Tensor
        ``M × D`` PLM features of the same tokens.
    num_negatives : int
    temperature : float
    generator : torch.Generator, optional
        For the sampling of negatives (CPU).

    Returns
    -------
    torch.Tensor
        The sum of ``loss_i`` over the ``M`` tokens.

    Example
    -------
    >>> t = torch.eye(4)
    >>> aligned, shuffled = acd_loss(10 * t, t, temperature=0.1), acd_loss(t.flip(0), t, temperature=0.1)
    >>> bool(aligned < shuffled)
    True
    """
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must both be tokens × dim")
    tokens = student.shape[0]
    count = negative_count(tokens, num_negatives)
    if count == 0:
        return student.sum() * 0.0  # no negatives: nothing to contrast (keeps the graph)
    negatives = sample_negatives(tokens, count, generator).to(student.device)  # M × k
    s = F.normalize(student.float(), dim=-1, eps=1e-6)
    t = F.normalize(teacher.float(), dim=-1, eps=1e-6)
    positive = (s * t).sum(-1, keepdim=True)  # M × 1
    # All cosines in one M × M product, then the sampled ones: M² floats,
    # where gathering the sampled features first would hold M × k × D.
    negative = (s @ t.T).gather(1, negatives)
    anchors = torch.arange(tokens, device=student.device)[:, None]
    negative = negative.masked_fill(negatives == anchors, float("-inf"))
    logits = torch.cat([positive, negative], dim=1) / temperature
    return -torch.log_softmax(logits, dim=1)[:, 0].sum()


def lrd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Linguistic regression distillation: squared error summed over tokens and dimensions.

    Example
    -------
    >>> float(lrd_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])))
    5.0
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in shape")
    return ((student.float() - teacher.float()) ** 2).sum()
