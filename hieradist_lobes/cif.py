"""Continuous integrate-and-fire (CIF): frame weights in, token-level vectors out.

CIF (Dong & Xu, 2020; used by CIF-HieraDist and by Paraformer) turns a
``[batch, frames, dim]`` encoder output into a ``[batch, tokens, dim]``
sequence.  A small predictor gives each frame a weight ``α_t ≥ 0``; frames are
integrated left to right and a token "fires" each time the accumulated weight
reaches the ``threshold``.

The definition, per sequence (``θ`` = threshold, ``ε`` = eps)::

    w, v = 0, 0
    for t in frames:
        a = α_t
        while w + a >= θ - ε:            # a frame with a large weight fires several times
            fire v + (θ - w)·h_t
            a = a - (θ - w)               # may become slightly negative (≥ -ε)
            w, v = 0, 0
        w, v = w + a, v + a·h_t
    if tail_threshold is not None and w >= tail_threshold and w > 0:
        fire v / w · θ                    # the leftover weight, rescaled to a full token

:func:`cif_fire` computes exactly this (values, counts and gradients) without
a Python loop over frames or utterances: each fire takes exactly ``θ`` of the
cumulative weight ``S_t = α_0 + … + α_t``, so fire ``j`` gathers the part of
each frame's interval ``[S_{t-1}, S_t]`` that falls in ``[jθ, (j+1)θ]`` (the
``ε`` only moves when it completes), and the fires a frame contributes to
follow from ``F_t = ⌊(S_t + ε)/θ⌋``, the fires completed by frame ``t``.

:class:`CIF` is the weight predictor (convolution, linear, sigmoid) followed by
integrate-and-fire, with the training-time rescaling of the weights to the
target length.

Example
-------
>>> import torch
>>> alphas = torch.tensor([[0.5, 0.7, 0.8, 0.3]])
>>> hidden = torch.ones(1, 4, 2)
>>> fired, lengths = integrate_and_fire(alphas, hidden)
>>> lengths.tolist(), fired[0, :, 0].tolist()
([2], [1.0, 1.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hieradist_lobes.losses import length_mask

__all__ = ["Fires", "CIFState", "cif_fire", "cif_fire_chunk", "cif_flush", "integrate_and_fire", "CIF", "CIFOutput",
           "quantity_loss", "fire_times"]


class Fires(NamedTuple):
    """What :func:`cif_fire` returns.

    Attributes
    ----------
    fired : torch.Tensor
        ``[batch, N, dim]`` fired vectors, zero past each length; ``N`` is the
        largest number of fires in the batch (may be 0).
    lengths : torch.Tensor
        ``[batch]`` (long) number of fires per utterance, tail fire included.
    frames : torch.Tensor
        ``[batch, N]`` (long) the frame at which each fire happened; for the
        tail fire, the last frame with ``α > 0`` (0 if there is none).
        Padded with ``-1``.
    tail_weight : torch.Tensor
        ``[batch]`` the weight ``w`` left after the last frame (before any tail
        fire), in ``[-eps, threshold - eps)``; differentiable, in the dtype of
        the alphas.
    """

    fired: torch.Tensor
    lengths: torch.Tensor
    frames: torch.Tensor
    tail_weight: torch.Tensor


def _check_inputs(alphas: torch.Tensor, hidden: torch.Tensor, threshold: float, eps: float) -> None:
    if alphas.dim() != 2 or hidden.dim() != 3 or tuple(alphas.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            "alphas must be [batch, frames] and hidden [batch, frames, dim] with the same batch and frames; "
            f"got alphas {tuple(alphas.shape)} and hidden {tuple(hidden.shape)}"
        )
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if not 0 <= eps < threshold:
        # eps ≥ threshold would fire on zero weight (and loop forever in the definition).
        raise ValueError(f"eps must be in [0, threshold), got eps={eps} for threshold={threshold}")
    if not (alphas.is_floating_point() and hidden.is_floating_point()):
        raise ValueError(f"alphas and hidden must be floating point, got {alphas.dtype} and {hidden.dtype}")
    # One check (one device sync) for both; NaN compares false with everything, hence isfinite.
    if alphas.numel() and bool(((alphas < 0) | ~torch.isfinite(alphas)).any()):
        found = "negative" if bool((alphas < 0).any()) else "NaN or infinite (a diverged encoder?)"
        raise ValueError(f"alphas must be finite and non-negative; found {found} weights")


def cif_fire(
    alphas: torch.Tensor,
    hidden: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: Optional[float] = None,
    eps: float = 1e-4,
) -> Fires:
    """Integrate-and-fire over a batch, vectorised; also returns fire frames and leftover weight.

    Equal, in values, counts and gradients (w.r.t. ``alphas`` and ``hidden``),
    to the sequential definition in the module docstring.  Cumulative weights
    are computed in float64 (so long utterances do not drift); the products
    with ``hidden`` stay in its dtype.  Fires are decided on those float64
    sums: only a frame that lands within rounding (~1e-16 relative) of a
    firing point could be decided otherwise by a frame-by-frame evaluation.

    Arguments
    ---------
    alphas : torch.Tensor
        ``[batch, frames]`` non-negative weights, 0 on padding.
    hidden : torch.Tensor
        ``[batch, frames, dim]`` the vectors to integrate; finite everywhere,
        padding included (a frame of weight 0 still adds ``0·h``).
    threshold : float
        Weight of one token (``θ > 0``).
    tail_threshold : float, optional
        After the last frame, a leftover weight ``w ≥ tail_threshold`` fires
        once more, rescaled to ``v / w · θ``.  None: no tail fire.
    eps : float
        A fire happens as soon as the accumulated weight reaches
        ``threshold - eps`` (so that weights scaled to sum to an integer
        number of tokens give exactly that number, despite rounding).
        ``0 ≤ eps < threshold``.

    Returns
    -------
    Fires
        ``(fired, lengths, frames, tail_weight)``.

    Example
    -------
    >>> alphas = torch.tensor([[0.4, 0.4, 0.4, 2.0, 0.3], [0.6, 0.6, 0.0, 0.0, 0.0]])
    >>> hidden = torch.arange(10.0).view(2, 5, 1)
    >>> out = cif_fire(alphas, hidden, tail_threshold=0.25)
    >>> out.lengths.tolist(), out.frames.tolist()
    ([4, 1], [[2, 3, 3, 4], [1, -1, -1, -1]])
    >>> # 0.4·0 + 0.4·1 + 0.2·2;  0.2·2 + 0.8·3;  1.0·3;  tail (0.2·3 + 0.3·4) / 0.5
    >>> [round(x, 4) for x in out.fired[0, :, 0].tolist()]
    [0.8, 2.8, 3.0, 3.6]
    >>> [round(x, 4) for x in out.tail_weight.tolist()]
    [0.5, 0.2]
    """
    _check_inputs(alphas, hidden, threshold, eps)
    fires, _ = _integrate(alphas, hidden, threshold, tail_threshold, eps, None)
    return fires


class CIFState(NamedTuple):
    """What streaming integrate-and-fire (:func:`cif_fire_chunk`) carries from one chunk to the next.

    Attributes
    ----------
    weight_sum : torch.Tensor
        ``[batch]`` (float64) the cumulative weight ``S`` of every frame so far:
        the fires done so far are ``⌊(S + ε)/θ⌋`` and the weight of the fire in
        progress ``S − θ·⌊(S + ε)/θ⌋``, exactly as the one-shot sums decide them.
    partial : torch.Tensor
        ``[batch, dim]`` the vector of the fire in progress, ``Σ a·h`` of its frames.
    frames : int
        Frames integrated so far (fire frames are counted from the first chunk).
    last_active : torch.Tensor
        ``[batch]`` (long) the last frame so far with ``α > 0`` (0 if none): the tail fire's frame.
    """

    weight_sum: torch.Tensor
    partial: torch.Tensor
    frames: int
    last_active: torch.Tensor

    @classmethod
    def initial(cls, batch: int, dim: int, device=None, dtype: torch.dtype = torch.float32) -> "CIFState":
        """The state before the first frame."""
        return cls(torch.zeros(batch, dtype=torch.float64, device=device),
                   torch.zeros(batch, dim, dtype=dtype, device=device), 0,
                   torch.zeros(batch, dtype=torch.long, device=device))


def cif_fire_chunk(
    alphas: torch.Tensor,
    hidden: torch.Tensor,
    state: Optional[CIFState] = None,
    threshold: float = 1.0,
    eps: float = 1e-4,
) -> Tuple[Fires, CIFState]:
    """Integrate-and-fire over one chunk of a stream, carrying the fire in progress across chunks.

    Feeding a sequence chunk by chunk (any chunking, chunks of one frame
    included) and then :func:`cif_flush` gives the fires of one-shot
    :func:`cif_fire` over the whole sequence: the same counts and fire
    frames (the fires are decided on the same float64 cumulative sums, which
    are continued from ``state.weight_sum``, not restarted), and the same
    vectors up to float rounding (a fire split by a chunk boundary is summed
    in two parts).

    Arguments
    ---------
    alphas, hidden : torch.Tensor
        This chunk's ``[batch, frames]`` weights and ``[batch, frames, dim]`` vectors.
    state : CIFState, optional
        What the previous chunk returned; None for the first chunk.
    threshold, eps : float
        As :func:`cif_fire`.

    Returns
    -------
    fires : Fires
        The fires completed in this chunk (``frames`` counted from the stream's
        start; no tail fire: see :func:`cif_flush`); ``tail_weight`` is the
        weight of the fire in progress.
    state : CIFState
        For the next chunk, or for :func:`cif_flush` at the end of the stream.

    Example
    -------
    >>> alphas = torch.tensor([[0.4, 0.4, 0.4, 2.0, 0.3]])
    >>> hidden = torch.arange(5.0).view(1, 5, 1)
    >>> first, state = cif_fire_chunk(alphas[:, :2], hidden[:, :2])
    >>> second, state = cif_fire_chunk(alphas[:, 2:], hidden[:, 2:], state)
    >>> last = cif_flush(state, tail_threshold=0.25)
    >>> first.lengths.tolist(), second.frames.tolist(), last.frames.tolist()
    ([0], [[2, 3, 3]], [[4]])
    >>> [round(x, 4) for x in torch.cat([second.fired, last.fired], 1)[0, :, 0].tolist()]
    [0.8, 2.8, 3.0, 3.6]
    """
    _check_inputs(alphas, hidden, threshold, eps)
    if state is None:
        state = CIFState.initial(hidden.shape[0], hidden.shape[2], hidden.device, hidden.dtype)
    if tuple(state.partial.shape) != (hidden.shape[0], hidden.shape[2]):
        raise ValueError(f"the state is of a stream of {tuple(state.partial.shape)} (batch, dim); "
                         f"this chunk's hidden is {tuple(hidden.shape)}")
    return _integrate(alphas, hidden, threshold, None, eps, state)


def cif_flush(state: CIFState, tail_threshold: Optional[float] = 0.5, threshold: float = 1.0,
              eps: float = 1e-4) -> Fires:
    """The end of a stream: the fire in progress fires if its weight ``w ≥ tail_threshold``
    (and ``w > 0``), rescaled to ``v / w · θ``, as :func:`cif_fire`'s tail fire.

    Arguments
    ---------
    state : CIFState
        What the stream's last :func:`cif_fire_chunk` returned.
    tail_threshold : float, optional
        None: no tail fire.
    threshold, eps : float
        Those the chunks were integrated with.

    Returns
    -------
    Fires
        ``fired`` ``[batch, 0 or 1, dim]``, ``lengths`` 0 or 1, ``frames`` the
        last frame with weight, ``tail_weight`` the leftover ``w``.
    """
    done = torch.floor((state.weight_sum + eps) / threshold)
    tail_weight = state.weight_sum - done * threshold
    fires = _tail_fires(tail_weight, tail_threshold)
    width = int(fires.any())
    scale = _tail_scale(fires, tail_weight, threshold).to(state.partial.dtype)
    fired = (state.partial * scale[:, None]).unsqueeze(1)[:, :width]
    frames = torch.where(fires, state.last_active, torch.full_like(state.last_active, -1)).unsqueeze(1)[:, :width]
    return Fires(fired, fires.long(), frames, tail_weight.to(state.partial.dtype))


def _tail_fires(tail_weight: torch.Tensor, tail_threshold: Optional[float]) -> torch.Tensor:
    """Whether the weight left after the last frame fires once more: ``w ≥ tail_threshold`` and ``w > 0``
    (never with no ``tail_threshold``)."""
    weight = tail_weight.detach()
    if tail_threshold is None:
        return torch.zeros_like(weight, dtype=torch.bool)
    return (weight >= tail_threshold) & (weight > 0)


def _tail_scale(fires: torch.Tensor, tail_weight: torch.Tensor, threshold: float) -> torch.Tensor:
    """``θ / w`` where the tail fires (the leftover rescaled to a full token), else 0; a safe
    denominator keeps the gradient of the unused branch finite."""
    safe_weight = torch.where(fires, tail_weight, torch.ones_like(tail_weight))
    return torch.where(fires, threshold / safe_weight, torch.zeros_like(tail_weight))


def _integrate(alphas: torch.Tensor, hidden: torch.Tensor, threshold: float, tail_threshold: Optional[float],
               eps: float, state: Optional[CIFState]) -> Tuple[Fires, Optional[CIFState]]:
    """:func:`cif_fire`'s computation; with ``state``, continued from a stream's earlier
    chunks, the fire in progress is returned in the new state instead of firing as a tail."""
    batch, frames, dim = hidden.shape
    device, dtype = hidden.device, hidden.dtype
    streaming = state is not None
    if streaming:
        start = state.weight_sum.to(device=device, dtype=torch.float64)
        with torch.no_grad():
            start_done = ((start + eps) / threshold).long()  # fires completed before this chunk
    else:
        start = torch.zeros(batch, dtype=torch.float64, device=device)
        start_done = torch.zeros(batch, dtype=torch.long, device=device)  # ⌊ε/θ⌋ = 0
    if frames == 0 or batch == 0:
        # Slices of the inputs (not new tensors) keep the outputs in the autograd graph.
        tail_weight = start - start_done.to(torch.float64) * threshold + alphas.sum(dim=1)
        return (Fires(hidden[:, :0], torch.zeros(batch, dtype=torch.long, device=device),
                      torch.zeros(batch, 0, dtype=torch.long, device=device), tail_weight.to(alphas.dtype)), state)

    # Indexing here uses index_select / scatter / cumsum rather than advanced indexing,
    # repeat_interleave or searchsorted: on CPU these stay cheap on a busy machine, where
    # each parallel region of the others can wait a whole scheduler slice for a thread.
    alphas64 = alphas.to(torch.float64)
    # S_t, continued from the stream's S so far (prepended, not added afterwards, so that the
    # sums are those of one pass over the whole stream, rounding included).
    cum = torch.cumsum(torch.cat([start.unsqueeze(1), alphas64], dim=1), dim=1)[:, 1:]
    cum_prev = torch.cat([start.unsqueeze(1), cum[:, :-1]], dim=1)  # S_{t-1}
    with torch.no_grad():
        # Fires completed up to and including frame t (monotone because α ≥ 0); the argument
        # is non-negative, so truncation is the floor.
        done = ((cum.detach() + eps) / threshold).long()
        done_prev = torch.cat([start_done.unsqueeze(1), done[:, :-1]], dim=1)
        counts = done[:, -1] - start_done  # fires completed in this chunk

    # Leftover after the last frame: w = S_{T-1} - F_{T-1}·θ, held by slot `counts`.
    tail_weight = cum[:, -1] - done[:, -1].to(torch.float64) * threshold
    with torch.no_grad():
        tail_fires = _tail_fires(tail_weight, tail_threshold)
        lengths = counts + tail_fires.long()
        # One device sync for both sizes; a stream also keeps the slot of the fire in progress.
        width, total_fires = (int(x) for x in torch.stack([lengths.max(), counts.sum()]).tolist())
        width += int(streaming)
    if width == 0:
        return Fires(hidden[:, :0], lengths, torch.zeros(batch, 0, dtype=torch.long, device=device),
                     tail_weight.to(alphas.dtype)), state

    # Frame t takes part in fires F_{t-1} … F_t: one "entry" each, in this order, so that
    # over a whole batch (utterance-major, then frame) the fire index never decreases.
    with torch.no_grad():
        fires_here = (done - done_prev).reshape(-1)  # fires completed at each frame
        per_frame = fires_here + 1
        entries = batch * frames + total_fires
        first = torch.cumsum(per_frame, dim=0) - per_frame  # each frame's first entry
        frame = torch.cumsum(torch.zeros(entries, dtype=torch.long, device=device).scatter_(0, first, 1), 0) - 1
        position = torch.arange(entries, device=device) - first.index_select(0, frame)
        slot = (done_prev - start_done.unsqueeze(1)).reshape(-1).index_select(0, frame) + position
        utterance = torch.div(frame, frames, rounding_mode="floor")
        completing = fires_here.nonzero().squeeze(1)  # frames where a fire completes
        last = first.index_select(0, completing) + fires_here.index_select(0, completing)
        is_tail = slot == counts.index_select(0, utterance)

    # Weights of the entries: the first takes all of α_t if nothing completes at t (α_t itself,
    # not S_t - S_{t-1}: no cancellation in the common case), else what the fire in progress
    # still lacks, (F_{t-1}+1)·θ - S_{t-1}; the last starts fire F_t with S_t - F_t·θ (possibly
    # slightly negative: the ε borrowed by the fire just completed); the ones in between are
    # whole fires inside frame t, θ each.
    left = torch.where(done > done_prev, (done_prev + 1).to(torch.float64) * threshold - cum_prev, alphas64)
    right = cum - done.to(torch.float64) * threshold
    weight = torch.full((entries,), float(threshold), dtype=torch.float64, device=device)
    weight = weight.scatter(0, first, left.reshape(-1))
    weight = weight.scatter(0, last, right.reshape(-1).index_select(0, completing))
    if not streaming:
        # The tail slot is scaled by θ / w if it fires, else emptied.
        tail_scale = _tail_scale(tail_fires, tail_weight, threshold)
        weight = torch.where(is_tail, weight * tail_scale.index_select(0, utterance), weight)

    with torch.no_grad():
        # A tail slot that does not fire may lie at `width`, past the output: its entries weigh
        # exactly 0, so counting them in the utterance's last bag changes nothing.
        rows = utterance * width + slot.clamp(max=width - 1)
        sizes = torch.bincount(rows, minlength=batch * width)
        offsets = torch.cumsum(sizes, dim=0) - sizes
    # embedding_bag is a weighted segment sum with fast kernels (forward and backward) and
    # no [batch·frames, dim] intermediate.
    fired = F.embedding_bag(frame, hidden.reshape(batch * frames, dim), offsets, mode="sum",
                            per_sample_weights=weight.to(dtype)).view(batch, width, dim)

    with torch.no_grad():
        # Entry k ≥ 1 of frame t completes fire `slot - 1` there.
        completed = (position > 0).nonzero().squeeze(1)
        where = utterance.index_select(0, completed) * width + slot.index_select(0, completed) - 1
        frame_offset = state.frames if streaming else 0
        fire_frames = torch.full((batch * width,), -1, dtype=torch.long, device=device)
        fire_frames = fire_frames.scatter_(0, where, frame.index_select(0, completed) % frames + frame_offset)
        fire_frames = fire_frames.view(batch, width)
        last_active = torch.where(alphas > 0, torch.arange(frames, device=device), 0).amax(dim=1)
    if not streaming:
        with torch.no_grad():
            tail_here = (torch.arange(width, device=device) == counts.unsqueeze(1)) & tail_fires.unsqueeze(1)
            fire_frames = torch.where(tail_here, last_active.unsqueeze(1), fire_frames)
        return Fires(fired, lengths, fire_frames, tail_weight.to(alphas.dtype)), None

    # The fire in progress at the start of the chunk is slot 0; at its end, slot `counts`.
    fired = torch.cat([fired[:, :1] + state.partial.to(dtype).unsqueeze(1), fired[:, 1:]], dim=1)
    partial = fired.gather(1, counts.view(batch, 1, 1).expand(batch, 1, dim)).squeeze(1)
    completed_slots = torch.arange(width - 1, device=device) < counts.unsqueeze(1)
    fired = torch.where(completed_slots.unsqueeze(-1), fired[:, :-1], torch.zeros_like(fired[:, :-1]))
    any_active = (alphas > 0).any(dim=1)
    new_state = CIFState(cum[:, -1].detach(), partial, state.frames + frames,
                         torch.where(any_active, last_active + state.frames, state.last_active.to(device)))
    return Fires(fired, counts, fire_frames[:, :-1], tail_weight.to(alphas.dtype)), new_state


def integrate_and_fire(
    alphas: torch.Tensor,
    hidden: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: Optional[float] = None,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate-and-fire: ``(fired [batch, N, dim], lengths [batch])``; see :func:`cif_fire`.

    Example
    -------
    >>> alphas = torch.tensor([[0.6, 0.6, 0.6, 0.7]])  # 2 fires, then 0.5 left: a tail fire
    >>> fired, lengths = integrate_and_fire(alphas, torch.ones(1, 4, 3), tail_threshold=0.5)
    >>> lengths.tolist(), tuple(fired.shape)
    ([3], (1, 3, 3))
    """
    result = cif_fire(alphas, hidden, threshold=threshold, tail_threshold=tail_threshold, eps=eps)
    return result.fired, result.lengths


@dataclass
class CIFOutput:
    """What :meth:`CIF.forward` returns.

    Attributes
    ----------
    fired : torch.Tensor
        ``[batch, N, dim]`` token-level vectors, zero past each length.  With
        target lengths, exactly ``N = max(target_lengths)``.
    fired_lengths : torch.Tensor
        ``[batch]`` tokens per utterance (the target lengths when given).
    alphas : torch.Tensor
        ``[batch, frames]`` the predicted weights (before any scaling), 0 on padding.
    alpha_sum : torch.Tensor
        ``[batch]`` their sum, for :func:`quantity_loss`.
    fire_frames : torch.Tensor
        ``[batch, N]`` frame index of each fire, ``-1`` on padding (see :func:`fire_times`).
    tail_weight : torch.Tensor
        ``[batch]`` weight left after the last frame.
    length_mismatches : int
        With target lengths: utterances whose number of fires differed from the
        target and were padded or truncated.  0 in practice, thanks to
        ``fire_eps``, unless the weights of an utterance sum to almost nothing
        (``Σα`` comparable to ``scale_eps · target / fire_eps``).
    """

    fired: torch.Tensor
    fired_lengths: torch.Tensor
    alphas: torch.Tensor
    alpha_sum: torch.Tensor
    fire_frames: torch.Tensor
    tail_weight: torch.Tensor
    length_mismatches: int = 0


class CIF(nn.Module):
    """CIF weight predictor and integrate-and-fire (as in CIF-HieraDist and Paraformer).

    ``α = sigmoid(Linear(Dropout(Conv1d(h))))`` per frame (with an optional ReLU
    after the convolution, and FunASR's ``relu(α·smooth_factor − noise_threshold)``
    when either option differs from its default), 0 on padding frames.

    Training (``target_lengths`` given): the weights are scaled to sum to the
    target, ``α' = α · θ·target / (Σα + scale_eps)`` (``θ`` = threshold, 1 by
    default, so that ``target`` tokens fire), there is no tail fire, and
    the output is padded or truncated to exactly ``max(target_lengths)`` tokens.
    Inference: no scaling, and a leftover weight ``≥ tail_threshold`` fires once more.

    Arguments
    ---------
    input_size : int
        Dimension of the encoder output.
    conv_channels : int, optional
        Channels of the convolution (default: ``input_size``).
    kernel_size : int
        Odd width of the convolution.
    dropout : float
    threshold : float
        Weight of one token.
    tail_threshold : float, optional
        Leftover weight that still fires at inference (None: never).
    fire_eps : float
        Tolerance of a fire (see :func:`cif_fire`).
    scale_eps : float
        Keeps the training-time scaling finite when all weights are 0.
    relu : bool
        ReLU after the convolution (FunASR).
    smooth_factor, noise_threshold : float
        FunASR's ``α ← relu(α·smooth_factor − noise_threshold)``.

    Example
    -------
    >>> cif = CIF(input_size=8).eval()
    >>> hidden = torch.randn(2, 20, 8)
    >>> out = cif(hidden, torch.tensor([1.0, 0.5]), target_lengths=torch.tensor([4, 2]))
    >>> tuple(out.fired.shape), out.fired_lengths.tolist(), out.length_mismatches
    ((2, 4, 8), [4, 2], 0)
    >>> float(out.alphas[1, 10:].detach().abs().sum())  # padding frames weigh nothing
    0.0
    """

    def __init__(
        self,
        input_size: int,
        conv_channels: Optional[int] = None,
        kernel_size: int = 3,
        dropout: float = 0.1,
        threshold: float = 1.0,
        tail_threshold: Optional[float] = 0.5,
        fire_eps: float = 1e-4,
        scale_eps: float = 1e-8,
        relu: bool = False,
        smooth_factor: float = 1.0,
        noise_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the output keeps the frame count), got {kernel_size}")
        conv_channels = input_size if conv_channels is None else conv_channels
        self.input_size = input_size
        self.conv = nn.Conv1d(input_size, conv_channels, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(conv_channels, 1)
        self.threshold = threshold
        self.tail_threshold = tail_threshold
        self.fire_eps = fire_eps
        self.scale_eps = scale_eps
        self.relu = relu
        self.smooth_factor = smooth_factor
        self.noise_threshold = noise_threshold

    def predict_alphas(self, hidden: torch.Tensor, mask: torch.Tensor, chunk_size: Optional[int] = None
                       ) -> torch.Tensor:
        """``[batch, frames]`` weights of ``hidden`` (already zero on padding), 0 where ``mask`` is False.

        ``chunk_size``: the convolution sees no frame past the end of each
        chunk of that many frames (zeros instead, as the encoder's chunked
        convolution), so that a streamed chunk's weights are final as soon as
        the chunk is encoded (:meth:`stream_alphas`).
        """
        if chunk_size is None:
            features = self.conv(hidden.transpose(1, 2)).transpose(1, 2)
        else:
            batch, frames, dim = hidden.shape
            reach = self.conv.padding[0]
            # Chunks with `reach` real frames of left context (zeros before the first) and `reach`
            # zeros after, convolved unpadded: [batch · chunks, dim, chunk + 2·reach] → chunk outputs.
            x = F.pad(hidden.transpose(1, 2), (reach, (-frames) % chunk_size))
            chunks = F.pad(x.unfold(2, chunk_size + reach, chunk_size), (0, reach))
            count = chunks.shape[2]
            chunks = chunks.permute(0, 2, 1, 3).reshape(batch * count, dim, chunk_size + 2 * reach)
            out = F.conv1d(chunks, self.conv.weight, self.conv.bias)
            out = out.view(batch, count, -1, chunk_size).permute(0, 1, 3, 2).reshape(batch, count * chunk_size, -1)
            features = out[:, :frames]
        return self._alphas_of(features) * mask.to(hidden.dtype)

    def stream_alphas(self, hidden: torch.Tensor, left: Optional[torch.Tensor]
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The weights of one streamed chunk ``hidden`` (``[batch, frames, dim]``), as
        :meth:`predict_alphas` with ``chunk_size`` gives them over the whole stream.

        ``left``: what the previous chunk returned (None for the first chunk). Returns the
        weights and the left context of the next chunk (the last frames the convolution reaches).
        """
        reach = self.conv.padding[0]
        if left is None:
            left = hidden.new_zeros(hidden.shape[0], reach, hidden.shape[2])  # the zeros before the first frame
        x = torch.cat([left, hidden], dim=1)
        features = F.conv1d(F.pad(x.transpose(1, 2), (0, reach)), self.conv.weight, self.conv.bias).transpose(1, 2)
        return self._alphas_of(features), x[:, x.shape[1] - reach:]

    def _alphas_of(self, features: torch.Tensor) -> torch.Tensor:
        """The convolution's output → (ReLU) → dropout → linear → sigmoid (→ FunASR's smoothing)."""
        if self.relu:
            features = torch.relu(features)
        alphas = torch.sigmoid(self.linear(self.dropout(features)).squeeze(-1))
        if self.smooth_factor != 1.0 or self.noise_threshold != 0.0:
            alphas = torch.relu(alphas * self.smooth_factor - self.noise_threshold)
        return alphas

    def weigh(self, hidden: torch.Tensor, lengths: Optional[torch.Tensor] = None,
              chunk_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``hidden`` with its padding zeroed, and its frames' weights (0 on padding); see :meth:`forward`."""
        batch, frames, _ = hidden.shape
        if lengths is None:
            valid = torch.full((batch,), frames, dtype=torch.long, device=hidden.device)
        else:
            valid = torch.round(lengths.to(device=hidden.device, dtype=torch.float64) * frames).long()
        mask = length_mask(valid, frames)
        # Zero the padding so that neither the convolution nor the integration sees it.
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        return hidden, self.predict_alphas(hidden, mask, chunk_size)

    def forward(
        self,
        hidden: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        target_lengths: Optional[torch.Tensor] = None,
        chunk_size: Optional[int] = None,
    ) -> CIFOutput:
        """Weights and fires of ``hidden`` ``[batch, frames, input_size]``.

        Arguments
        ---------
        hidden : torch.Tensor
            Encoder output.
        lengths : torch.Tensor, optional
            ``[batch]`` SpeechBrain relative lengths in ``(0, 1]``: utterance
            ``b`` has ``round(lengths[b] · frames)`` frames.  None: all frames.
        target_lengths : torch.Tensor, optional
            ``[batch]`` tokens per utterance (training); None at inference.
        chunk_size : int, optional
            The weight predictor sees no frame past each chunk (a chunked, streaming model);
            see :meth:`predict_alphas`.

        Returns
        -------
        CIFOutput
        """
        if hidden.dim() != 3 or hidden.shape[-1] != self.input_size:
            raise ValueError(f"hidden must be [batch, frames, {self.input_size}], got {tuple(hidden.shape)}")
        batch, frames, _ = hidden.shape
        if lengths is not None and tuple(lengths.shape) != (batch,):
            raise ValueError(f"lengths must be [batch] = ({batch},) for hidden {tuple(hidden.shape)}, "
                             f"got {tuple(lengths.shape)}")
        if target_lengths is not None and tuple(target_lengths.shape) != (batch,):
            raise ValueError(f"target_lengths must be [batch] = ({batch},) for hidden {tuple(hidden.shape)}, "
                             f"got {tuple(target_lengths.shape)}")
        hidden, alphas = self.weigh(hidden, lengths, chunk_size)
        alpha_sum = alphas.sum(dim=1)

        if target_lengths is None:
            fires = cif_fire(alphas, hidden, self.threshold, self.tail_threshold, self.fire_eps)
            return CIFOutput(fires.fired, fires.lengths, alphas, alpha_sum, fires.frames, fires.tail_weight)

        targets = target_lengths.to(device=hidden.device, dtype=torch.long)
        # Scaled in float64 (cheap: [batch, frames]) so that the sum misses the target by far
        # less than fire_eps, whatever the dtype of the model.
        alphas64 = alphas.to(torch.float64)
        wanted = targets.to(torch.float64) * self.threshold
        scaled = alphas64 * (wanted / (alphas64.sum(dim=1) + self.scale_eps)).unsqueeze(1)
        fires = cif_fire(scaled, hidden, self.threshold, None, self.fire_eps)
        # Line the fires up with the targets: exactly max(target) steps, zero past each target.
        width = int(targets.max().item()) if batch else 0
        have = fires.fired.shape[1]
        fired = F.pad(fires.fired[:, :width], (0, 0, 0, max(0, width - have)))
        frames_of_fire = F.pad(fires.frames[:, :width], (0, max(0, width - have)), value=-1)
        inside = length_mask(torch.minimum(targets, fires.lengths.to(targets.device)), width)
        fired = fired * inside.unsqueeze(-1).to(fired.dtype)
        frames_of_fire = torch.where(inside, frames_of_fire, torch.full_like(frames_of_fire, -1))
        mismatches = int((fires.lengths != targets).sum().item())
        return CIFOutput(fired, targets, alphas, alpha_sum, frames_of_fire, fires.tail_weight.to(alphas.dtype),
                         mismatches)


def quantity_loss(alpha_sum: torch.Tensor, target_lengths: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Per-utterance quantity loss ``|Σα / θ − target|`` in tokens (``[batch]``; the caller reduces).

    With the usual ``threshold`` ``θ = 1`` this is ``|Σα − target|``.

    Example
    -------
    >>> quantity_loss(torch.tensor([2.5, 3.0]), torch.tensor([3, 1])).tolist()
    [0.5, 2.0]
    """
    if alpha_sum.shape != target_lengths.shape:
        raise ValueError(f"alpha_sum {tuple(alpha_sum.shape)} and target_lengths "
                         f"{tuple(target_lengths.shape)} differ in shape")
    return (alpha_sum / threshold - target_lengths.to(alpha_sum.dtype)).abs()


def fire_times(fire_frames: torch.Tensor, lengths: torch.Tensor, frame_shift_seconds: float) -> List[List[float]]:
    """Times in seconds of each utterance's fires (tokens).

    Convention: a token's time is the start of the frame in which it fired,
    ``frame_index · frame_shift_seconds`` (frame 0 starts at 0 s).  Several
    tokens fired by one frame share its time.

    Arguments
    ---------
    fire_frames : torch.Tensor
        ``[batch, N]`` frame indices (``CIFOutput.fire_frames`` or ``Fires.frames``).
    lengths : torch.Tensor
        ``[batch]`` fires per utterance.
    frame_shift_seconds : float
        Duration of one frame of the encoder output (e.g. 0.04 for 10 ms
        features subsampled 4 times).

    Example
    -------
    >>> fire_times(torch.tensor([[3, 7, 7], [2, -1, -1]]), torch.tensor([3, 1]), 0.04)
    [[0.12, 0.28, 0.28], [0.08]]
    """
    rows = fire_frames.detach().cpu().tolist()
    counts = lengths.detach().cpu().tolist()
    return [[round(frame * frame_shift_seconds, 9) for frame in row[:count]] for row, count in zip(rows, counts)]


def level_crossing_times(alphas: torch.Tensor, levels: Sequence[float], frame_shift_seconds: float) -> List[float]:
    """When an utterance's accumulated CIF weight reaches each of ``levels`` (seconds).

    Frame ``t`` covers ``[t, t + 1)`` frame shifts and its weight ``alphas[t]`` accrues evenly over it, so
    a level reached part-way through a frame is placed part-way through it; frames without weight reach
    none. A level never reached is placed at the end of the last frame with weight.

    Example
    -------
    >>> level_crossing_times(torch.tensor([0.5, 0.0, 1.0, 0.5]), [0.25, 1.0, 2.0], 0.1)
    [0.05, 0.25, 0.4]
    """
    weights = alphas.detach().to(torch.float64).cpu()
    cumulative, weights = torch.cumsum(weights, dim=0).tolist(), weights.tolist()
    active = [index for index, value in enumerate(weights) if value > 0]
    last_end = (active[-1] + 1 if active else 0) * frame_shift_seconds
    times, frame, previous = [], 0, 0.0
    for level in levels:
        # A frame without weight reaches no level: a level at 0 is reached where the weight begins.
        while frame < len(cumulative) and (cumulative[frame] < level - 1e-9 or weights[frame] <= 0):
            previous = cumulative[frame]
            frame += 1
        if frame >= len(cumulative):
            times.append(round(last_end, 6))
            continue
        weight = cumulative[frame] - previous
        within = (level - previous) / weight if weight > 0 else 1.0
        times.append(round((frame + min(max(within, 0.0), 1.0)) * frame_shift_seconds, 6))
    return times


def token_spans(alphas: torch.Tensor, tokens: int, frame_shift_seconds: float, threshold: float = 1.0,
                onset: float = 0.0, first_onset: Optional[float] = None) -> List[Tuple[float, float]]:
    """Start and end (seconds) of each of an utterance's first ``tokens`` CIF tokens, from its weights.

    Token ``k`` integrates the weight between ``k`` and ``k + 1`` thresholds: it ends where the accumulated
    weight reaches ``(k + 1)·threshold`` (where it fires) and starts where it reaches
    ``(k + onset)·threshold``; ``onset`` > 0 leaves out the little weight that silence before a token gives
    it. The first token has no earlier fire to start from: the silence before the speech gives it weight
    from the first frame, so it starts at ``first_onset`` (default ``onset``).
    (:data:`hieradist_lobes.inference.TOKEN_ONSET` and ``FIRST_TOKEN_ONSET`` are the ones chosen by measurement.)
    A tail token (fired by leftover weight) ends at the end of the last frame with weight.

    Example
    -------
    >>> token_spans(torch.tensor([0.1, 0.1, 0.8, 0.6, 0.4]), 2, 0.1, onset=0.1)
    [(0.1, 0.3), (0.316667, 0.5)]
    """
    first_onset = onset if first_onset is None else first_onset
    levels = [level * threshold for k in range(tokens) for level in (k + (first_onset if k == 0 else onset), k + 1)]
    times = level_crossing_times(alphas, levels, frame_shift_seconds)
    return [(times[2 * k], max(times[2 * k], times[2 * k + 1])) for k in range(tokens)]
