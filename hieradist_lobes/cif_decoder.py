"""The CIF model's autoregressive decoder and the beam search over CIF fires.

CIF gives one acoustic embedding ``c_i`` per output token.  The decoder
(CIF-HieraDist's, as in its fairseq code) is a stack of causal pre-LN
Transformer layers *without* cross-attention.  Step ``i`` reads
``Linear_noBias([√e·embed(y_{i−1}); c_{i−1}])`` plus sinusoidal positions;
after the layers and a LayerNorm, the decoder state ``s_i`` is joined with
``c_i`` and goes through a bottleneck ``f_i = Linear_noBias([s_i; c_i] → d_out)``
and the output layer ``Linear_noBias(f_i → V)``.  ``f_i`` is the paper's
"final state" that LRD regresses by default.  The number of decoding steps is
the number of fires, so decoding needs no end-of-sentence guess; the model is
trained to emit ``<eos>`` at the last fire.

Example
-------
>>> decoder = CIFDecoder(vocab_size=7, cif_size=8, d_model=16, num_layers=1, nhead=2, d_ffn=32)
>>> fired = torch.randn(2, 4, 8)
>>> out = decoder(torch.tensor([[1, 3, 4, 5], [1, 6, 0, 0]]), fired, torch.tensor([4, 2]))
>>> out.logits.shape, out.states.shape, out.final_states.shape
(torch.Size([2, 4, 7]), torch.Size([2, 4, 16]), torch.Size([2, 4, 16]))
>>> hyps = cif_beam_search(decoder, fired, torch.tensor([4, 2]), bos_index=1, eos_index=2, beam_size=3,
...                        blocked=[0, 1])
>>> len(hyps), all(len(h) <= 4 for h in hyps)
(2, True)
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from hieradist_lobes.ctc_scoring import CTCPrefixScorer
from hieradist_lobes.losses import length_mask


def sinusoids(length: int, dim: int, device=None, start: int = 0) -> torch.Tensor:
    """Sinusoidal position encodings of positions ``start … start + length − 1``, ``length × dim``."""
    positions = torch.arange(start, start + length, device=device, dtype=torch.float32)
    return position_encodings(positions, dim)


def position_encodings(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encodings ``len(positions) × dim`` (even ``dim``) of float ``positions``: ``sin`` at even
    indices, ``cos`` at odd; built without in-place writes, so that it also exports to ONNX with the
    position as an input."""
    if dim % 2:
        raise ValueError(f"sinusoidal position encodings need an even size, got {dim}")
    rates = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
                      * (-math.log(10000.0) / dim))
    angles = positions.to(torch.float32)[:, None] * rates
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(positions.shape[0], dim)


class DecoderOutput(NamedTuple):
    """What :class:`CIFDecoder` returns for teacher-forced decoding."""

    logits: torch.Tensor        # B × L × vocab
    states: torch.Tensor        # B × L × d_model: the layers' output after the final LayerNorm
    final_states: torch.Tensor  # B × L × output_dim: the bottleneck over [states; c_i]


class DecoderCache(NamedTuple):
    """What :meth:`CIFDecoder.step` carries from one fire to the next: each
    layer's self-attention keys and values of the steps so far (``B × heads ×
    t × d_head``), the last fire ``c_{t−1}`` (the next step's input) and ``t``."""

    keys: List[torch.Tensor]
    values: List[torch.Tensor]
    previous_fired: torch.Tensor
    steps: int


class CIFDecoder(torch.nn.Module):
    """Causal Transformer decoder fed by CIF outputs (no cross-attention).

    Arguments
    ---------
    vocab_size : int
        Output classes (the same vocabulary as the CTC head).
    cif_size : int
        Size of the CIF outputs ``c_i``.
    d_model : int
        Transformer width.
    num_layers : int
        Causal self-attention layers (pre-LN).
    nhead : int
        Attention heads.
    d_ffn : int
        Feed-forward width.
    embedding_size : int, optional
        Token embedding size (default ``d_model``).
    output_dim : int, optional
        Width of the output bottleneck ``[state; c_i] → output_dim`` (default
        ``d_model``; the paper: 256).
    dropout : float
        Dropout on the layers' input and in the layers (the paper: 0.2).
    """

    def __init__(self, vocab_size: int, cif_size: int, d_model: int, num_layers: int, nhead: int, d_ffn: int,
                 embedding_size: Optional[int] = None, output_dim: Optional[int] = None,
                 dropout: float = 0.1) -> None:
        super().__init__()
        embedding_size = embedding_size or d_model
        output_dim = output_dim or d_model
        # fairseq's initialisation and scale: N(0, 1/e) embeddings times √e are unit-scale inputs.
        self.embedding = torch.nn.Embedding(vocab_size, embedding_size)
        torch.nn.init.normal_(self.embedding.weight, mean=0.0, std=embedding_size**-0.5)
        self.embedding_scale = math.sqrt(embedding_size)
        self.input_proj = torch.nn.Linear(embedding_size + cif_size, d_model, bias=False)
        self.dropout = torch.nn.Dropout(dropout)
        self.layers = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(d_model, nhead, d_ffn, dropout, batch_first=True, norm_first=True)
            for _ in range(num_layers)
        )
        self.norm = torch.nn.LayerNorm(d_model)
        self.bottleneck = torch.nn.Linear(d_model + cif_size, output_dim, bias=False)
        self.output_proj = torch.nn.Linear(output_dim, vocab_size, bias=False)
        torch.nn.init.normal_(self.output_proj.weight, mean=0.0, std=output_dim**-0.5)
        self.d_model = d_model

    def forward(self, prev_tokens: torch.Tensor, fired: torch.Tensor,
                lengths: Optional[torch.Tensor] = None) -> DecoderOutput:
        """Teacher-forced decoding.

        Arguments
        ---------
        prev_tokens : torch.Tensor
            ``B × L``: ``<bos>, y_1, ..., y_{L−1}``.
        fired : torch.Tensor
            ``B × L' × cif_size`` CIF outputs, ``L' ≥ L`` (extra steps are ignored).
        lengths : torch.Tensor, optional
            Valid steps per sequence (absolute); padding is masked.

        Returns
        -------
        DecoderOutput
            ``logits`` (``B × L × vocab``), ``states`` (``B × L × d_model``,
            before ``c_i`` is joined) and ``final_states`` (``B × L ×
            output_dim``, the bottleneck output that the logits are read from).
        """
        steps = prev_tokens.shape[1]
        if fired.shape[1] < steps:
            raise ValueError(f"{steps} decoding steps but only {fired.shape[1]} CIF outputs")
        fired = fired[:, :steps]
        previous_fired = torch.nn.functional.pad(fired, (0, 0, 1, 0))[:, :steps]  # c_{i−1}, c_0 = 0
        x = self.layer_inputs(prev_tokens, previous_fired, sinusoids(steps, self.d_model, fired.device))
        causal = torch.triu(torch.ones(steps, steps, dtype=torch.bool, device=x.device), diagonal=1)
        pad = None
        if lengths is not None:
            pad = ~length_mask(lengths, steps)
            pad[:, 0] = False  # a fully masked row would give NaN
        for layer in self.layers:
            x = layer(x, src_mask=causal, src_key_padding_mask=pad)
        return self.read_out(x, fired)

    def layer_inputs(self, prev_tokens: torch.Tensor, previous_fired: torch.Tensor,
                     positions: torch.Tensor) -> torch.Tensor:
        """``Linear([√e·embed(y_{i−1}); c_{i−1}])`` plus the position encodings, then dropout."""
        embedded = self.embedding_scale * self.embedding(prev_tokens)
        x = self.input_proj(torch.cat([embedded, previous_fired], dim=-1))
        return self.dropout(x + positions.to(x.dtype))

    def read_out(self, x: torch.Tensor, fired: torch.Tensor) -> DecoderOutput:
        """The layers' output ``x`` → LayerNorm → bottleneck over ``[state; c_i]`` → logits."""
        states = self.norm(x)
        final_states = self.bottleneck(torch.cat([states, fired], dim=-1))
        return DecoderOutput(self.output_proj(final_states), states, final_states)

    def step(self, prev_tokens: torch.Tensor, fired: torch.Tensor,
             cache: Optional[DecoderCache] = None) -> Tuple[torch.Tensor, DecoderCache]:
        """One decoding step with the earlier steps' keys and values carried
        in ``cache``: the same logits as :meth:`forward`'s last step over the
        whole prefix, at the cost of one step (the beam search's inner loop).

        Arguments
        ---------
        prev_tokens : torch.Tensor
            ``B``: the previous token (``<bos>`` at the first step).
        fired : torch.Tensor
            ``B × cif_size``: this step's CIF output ``c_i``.
        cache : DecoderCache, optional
            What the previous step returned (``None`` at the first step).

        Returns
        -------
        logits : torch.Tensor
            ``B × vocab``.
        cache : DecoderCache
            For the next step; reorder it with :meth:`reorder_state` when
            hypotheses are re-ranked.

        Example
        -------
        >>> decoder = CIFDecoder(vocab_size=7, cif_size=8, d_model=16, num_layers=2, nhead=2, d_ffn=32).eval()
        >>> fired, tokens = torch.randn(1, 3, 8), torch.tensor([[1, 4, 5]])
        >>> cache = None
        >>> for i in range(3):
        ...     logits, cache = decoder.step(tokens[:, i], fired[:, i], cache)
        >>> torch.allclose(logits, decoder(tokens, fired).logits[:, -1], atol=1e-5)
        True
        """
        position = 0 if cache is None else cache.steps
        previous_fired = torch.zeros_like(fired) if cache is None else cache.previous_fired
        x = self.layer_inputs(prev_tokens[:, None], previous_fired[:, None],
                              sinusoids(1, self.d_model, fired.device, start=position))
        keys, values = [], []
        for index, layer in enumerate(self.layers):
            x, layer_keys, layer_values = cached_layer_step(
                layer, x, None if cache is None else cache.keys[index], None if cache is None else cache.values[index])
            keys.append(layer_keys)
            values.append(layer_values)
        return self.read_out(x, fired[:, None]).logits[:, 0], DecoderCache(keys, values, fired, position + 1)

    @staticmethod
    def reorder_state(cache: DecoderCache, rows: torch.Tensor) -> DecoderCache:
        """The cache of the hypotheses ``rows`` (indices into the batch)."""
        return DecoderCache([k[rows] for k in cache.keys], [v[rows] for v in cache.values],
                            cache.previous_fired[rows], cache.steps)


def cached_layer_step(layer: torch.nn.TransformerEncoderLayer, x: torch.Tensor, keys: Optional[torch.Tensor],
                      values: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A pre-LN ``TransformerEncoderLayer`` applied to one new position ``x``
    (``B × 1 × d``) that attends to itself and to the earlier positions'
    ``keys`` and ``values`` (``B × heads × t × d_head``, or ``None``); returns
    the layer's output and the keys and values including the new position.
    Written with the layer's own weights, because PyTorch's layer has no
    incremental mode."""
    attention = layer.self_attn
    batch, _, width = x.shape
    heads = attention.num_heads

    def split_heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, -1, heads, width // heads).transpose(1, 2)

    query, key, value = torch.nn.functional.linear(
        layer.norm1(x), attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
    key, value = split_heads(key), split_heads(value)
    if keys is not None:
        key, value = torch.cat([keys, key], dim=2), torch.cat([values, value], dim=2)
    attended = torch.nn.functional.scaled_dot_product_attention(split_heads(query), key, value)
    x = x + layer.dropout1(attention.out_proj(attended.transpose(1, 2).reshape(batch, 1, width)))
    feed_forward = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x)))))
    return x + layer.dropout2(feed_forward), key, value


@torch.no_grad()
def cif_beam_search(
    decoder: CIFDecoder,
    fired: torch.Tensor,
    fired_lengths: torch.Tensor,
    bos_index: int,
    eos_index: int,
    beam_size: int = 10,
    blocked: Sequence[int] = (),
    lm: Optional[torch.nn.Module] = None,
    lm_weight: float = 0.0,
    ctc_logprobs: Optional[torch.Tensor] = None,
    ctc_lengths: Optional[torch.Tensor] = None,
    ctc_weight: float = 0.0,
    blank_index: int = 0,
) -> List[List[int]]:
    """Beam search whose steps are the CIF fires.

    Step ``i`` scores every token given the prefix and fire ``i``:
    ``(1 − ctc_weight) · log p_asr + ctc_weight · Δψ_ctc + lm_weight · log p_lm``,
    where ``Δψ_ctc`` is the change of the prefix's CTC log-probability
    (:class:`~hieradist_lobes.ctc_scoring.CTCPrefixScorer`, joint CTC
    scoring when ``ctc_logprobs`` are given) and the last term is shallow
    fusion when ``lm`` is given.  The decoder's self-attention keys and values and the LM's state
    are carried from fire to fire (:meth:`CIFDecoder.step`), so that each
    fire costs one decoder step and one LM step, not a pass over the prefix.
    Every fire is one output token, so ``<eos>`` may only be emitted at the last fire (the model was trained
    with N tokens + eos = N + 1 fires): an early ``<eos>`` would drop every
    later fire's token, which on long audio cut the transcript short.  At
    the last fire all hypotheses end.

    Arguments
    ---------
    decoder : CIFDecoder
    fired, fired_lengths : torch.Tensor
        CIF outputs (``B × N × D``) and fire counts (``B``).
    bos_index, eos_index : int
    beam_size : int
        1 is greedy decoding.
    blocked : sequence of int
        Classes never emitted (blank, bos).
    lm : torch.nn.Module, optional
        With ``step(prev_tokens, state) → (log-probabilities B × vocab,
        state)`` and ``reorder_state(state, rows)``, as
        :class:`~hieradist_lobes.lm.TokenLM`.
    lm_weight : float
    ctc_logprobs, ctc_lengths : torch.Tensor, optional
        The CTC head's log-probabilities (``B × T × vocab``) and valid frames (``B``).
    ctc_weight : float
        In [0, 1]; 0 (or no ``ctc_logprobs``) decodes exactly as without CTC.
    blank_index : int
        The CTC blank (only read with CTC scoring).

    Returns
    -------
    list of list of int
        The best token sequence per utterance, without ``<eos>``; its
        ``k``-th token was emitted at fire ``k``.
    """
    batch, steps = fired.shape[0], fired.shape[1]
    device = fired.device
    if steps == 0:
        return [[] for _ in range(batch)]
    k = beam_size
    tokens = torch.full((batch * k, 1), bos_index, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
    fired_beams = fired.repeat_interleave(k, dim=0)
    fire_counts = fired_lengths.to(device)
    use_lm = lm is not None and bool(lm_weight)
    use_ctc = ctc_logprobs is not None and bool(ctc_weight)
    if use_ctc:
        ctc = CTCPrefixScorer(ctc_logprobs.repeat_interleave(k, dim=0), ctc_lengths.repeat_interleave(k, dim=0),
                              blank_index)
        ctc_state = ctc.initial_state()
    cache = lm_state = None
    for step in range(steps):
        logits, cache = decoder.step(tokens[:, -1], fired_beams[:, step], cache)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        if use_ctc:
            ctc_scores, ctc_candidates = ctc.extend(ctc_state)
            logprobs = (1.0 - ctc_weight) * logprobs + ctc_weight * ctc_scores
        if use_lm:
            lm_logprobs, lm_state = lm.step(tokens[:, -1], lm_state)
            logprobs = logprobs + lm_weight * lm_logprobs.float()
        vocab = logprobs.shape[-1]
        logprobs = logprobs.view(batch, k, vocab)
        if blocked:
            logprobs[:, :, list(blocked)] = float("-inf")
        before_last_fire = (step < fire_counts - 1)[:, None]
        logprobs[:, :, eos_index] = logprobs[:, :, eos_index].masked_fill(before_last_fire, float("-inf"))
        # Finished hypotheses (and utterances with fewer fires) only extend
        # with <eos> at no cost, so that they keep their score.
        done = finished | (step >= fire_counts)[:, None]
        filler = torch.full((vocab,), float("-inf"), device=device)
        filler[eos_index] = 0.0
        logprobs = torch.where(done[:, :, None], filler, logprobs)
        candidates = (scores[:, :, None] + logprobs).view(batch, k * vocab)
        scores, flat = candidates.topk(k, dim=-1)
        origin, token = flat // vocab, flat % vocab
        rows = (origin + torch.arange(batch, device=device)[:, None] * k).view(-1)
        tokens = torch.cat([tokens[rows], token.view(-1, 1)], dim=1)
        cache = decoder.reorder_state(cache, rows)
        if use_lm:
            lm_state = lm.reorder_state(lm_state, rows)
        if use_ctc:
            ctc_state = ctc.advance(ctc_candidates, rows, token.view(-1))
        finished = finished.gather(1, origin) | (token == eos_index)
    best = scores.argmax(dim=-1)
    results = []
    for b in range(batch):
        sequence = tokens[b * k + best[b], 1:].tolist()
        results.append(sequence[: sequence.index(eos_index)] if eos_index in sequence else sequence)
    return results
