"""A Conformer encoder that subsamples 8× in time: the CIF model's encoder.

A Conv2d front end (stride 2) followed by Conformer layers (SpeechBrain's
:class:`~speechbrain.lobes.models.transformer.Conformer.ConformerEncoderLayer`,
relative-position attention) with max-pooling over time after some of the
layers, as in CIF-HieraDist (pooling after layers 5 and 10 of 15: 2 × 2 × 2 =
8×).  A low frame rate is what CIF wants: each token then integrates a few
frames, not dozens.

Streaming: given a ``DynChunkTrainConfig`` (SpeechBrain's dynamic chunk
training), each layer attends only to its own chunk and ``left_context_size``
chunks before it, and its convolution sees no frame past its chunk
(SpeechBrain's Dynamic Chunk Convolution).  The chunk size counts *encoder
output* frames; a layer before a pooling sees chunks twice as long, so that
chunks line up across the poolings.  :meth:`PooledConformerEncoder.forward_streaming`
then encodes chunk by chunk, carrying each layer's left context, with the
outputs of ``forward`` under the same configuration.

Known limitation (SpeechBrain's Conformer layer): its convolution module masks
padding *after* the depthwise convolution, so the last valid frames of a
padded utterance see padded neighbours; batched outputs therefore differ
slightly from single-utterance outputs.

Example
-------
>>> encoder = PooledConformerEncoder(input_size=20, d_model=16, num_layers=3, nhead=2, d_ffn=32,
...                                  pool_after=[1, 2], frontend_channels=4, kernel_size=3)
>>> encoded = encoder(torch.randn(2, 80, 20), torch.tensor([1.0, 0.5]))
>>> encoded.shape
torch.Size([2, 10, 16])
>>> encoder.subsampling
8
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from speechbrain.lobes.models.transformer.Conformer import (
    ConformerEncoderLayer,
    ConformerEncoderLayerStreamingContext,
)
from speechbrain.nnet.attention import RelPosEncXL
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig

from hieradist_lobes.losses import length_mask


def padding_mask(relative_lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``True`` on padded frames, from SpeechBrain's relative lengths.

    Example
    -------
    >>> padding_mask(torch.tensor([1.0, 0.5]), 4).tolist()
    [[False, False, False, False], [False, False, True, True]]
    """
    valid = torch.round(relative_lengths * frames).long().clamp(min=1, max=frames)
    return ~length_mask(valid, frames)


def chunk_attention_mask(frames: int, chunk_size: int, left_chunks: Optional[int],
                         device: Optional[torch.device] = None) -> torch.Tensor:
    """``[frames, frames]``, ``True`` where a query frame may not attend to a key frame:
    keys in a later chunk, or (``left_chunks`` not None) more than ``left_chunks`` chunks earlier.

    Written here rather than taken from SpeechBrain's Transformer ASR because
    each pooled stage has its own chunk size.

    Example
    -------
    >>> chunk_attention_mask(5, 2, 1).int().tolist()
    [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [1, 1, 0, 0, 0]]
    """
    chunk = torch.arange(frames, device=device) // chunk_size
    behind = chunk.unsqueeze(1) - chunk.unsqueeze(0)  # query's chunk minus key's chunk
    masked = behind < 0
    if left_chunks is not None:
        masked = masked | (behind > left_chunks)
    return masked


@dataclass
class EncoderStreamingContext:
    """What :meth:`PooledConformerEncoder.forward_streaming` carries from one call to the next."""

    config: DynChunkTrainConfig
    layers: List[ConformerEncoderLayerStreamingContext]
    #: Feature frames not yet read by the front end, after the one frame of left context its kernel needs.
    features: Optional[torch.Tensor] = None
    #: Front-end outputs waiting for a whole chunk.
    frontend: Optional[torch.Tensor] = None
    finished: bool = False


class PooledConformerEncoder(torch.nn.Module):
    """Conv2d front end, Conformer layers, max-pooling ×2 after chosen layers.

    Arguments
    ---------
    input_size : int
        Feature dimension (e.g. 80 filter banks).
    d_model : int
        Conformer width.
    num_layers : int
        Number of Conformer layers.
    nhead : int
        Attention heads.
    d_ffn : int
        Feed-forward width.
    kernel_size : int
        Conformer convolution kernel.
    pool_after : sequence of int
        1-based layer numbers after which time is max-pooled by 2; 0 pools
        the front end's output, before layer 1 (cheaper: every layer then
        runs at a lower frame rate).
    frontend_channels : int
        Channels of the Conv2d (kernel 3, stride 2) front end.
    dropout : float
        Dropout in the layers and after the front end.
    attention_type : str
        ``RelPosMHAXL`` (relative positions, as the paper) or ``regularMHA``.
    """

    def __init__(self, input_size: int, d_model: int, num_layers: int, nhead: int, d_ffn: int,
                 kernel_size: int = 15, pool_after: Sequence[int] = (5, 10), frontend_channels: int = 128,
                 dropout: float = 0.1, attention_type: str = "RelPosMHAXL") -> None:
        super().__init__()
        bad = [layer for layer in pool_after if not 0 <= layer <= num_layers]
        if bad or len(set(pool_after)) != len(pool_after):
            raise ValueError(f"pool_after {list(pool_after)}: give distinct layers in 0..{num_layers} "
                             "(0: right after the front end)")
        self.frontend = torch.nn.Conv2d(1, frontend_channels, kernel_size=3, stride=2, padding=1)
        self.frontend_out = torch.nn.Linear(frontend_channels * ((input_size + 1) // 2), d_model)
        self.dropout = torch.nn.Dropout(dropout)
        self.attention_type = attention_type
        self.positions = RelPosEncXL(d_model) if attention_type == "RelPosMHAXL" else None
        self.layers = torch.nn.ModuleList(
            ConformerEncoderLayer(d_model=d_model, d_ffn=d_ffn, nhead=nhead, kernel_size=kernel_size,
                                  dropout=dropout, attention_type=attention_type)
            for _ in range(num_layers)
        )
        self.pool_after = set(int(layer) for layer in pool_after)
        self.norm = torch.nn.LayerNorm(d_model)
        self.subsampling = 2 * 2 ** len(self.pool_after)

    def forward(self, feats: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                dynchunktrain_config: Optional[DynChunkTrainConfig] = None) -> torch.Tensor:
        """Encode ``feats`` (batch × frames × features); ``lengths`` relative, in (0, 1].

        ``dynchunktrain_config``: chunked attention and convolution (chunk size
        in encoder output frames; see the module docstring); None: full context.
        """
        if feats.dim() != 3:
            raise ValueError(f"expected features of shape batch × frames × features, got {tuple(feats.shape)}")
        if lengths is None:
            lengths = torch.ones(feats.shape[0], device=feats.device)
        x = self._frontend(feats.unsqueeze(1), padding=1)
        if 0 in self.pool_after:
            x = max_pool_time(x, padding_mask(lengths, x.shape[1]))
        for number, layer in enumerate(self.layers, start=1):
            mask = padding_mask(lengths, x.shape[1])
            pos_embs = self.positions(x) if self.positions is not None else None
            layer_config = src_mask = None
            if dynchunktrain_config is not None:
                layer_config = self.layer_chunks(dynchunktrain_config, number)
                src_mask = chunk_attention_mask(x.shape[1], layer_config.chunk_size,
                                                layer_config.left_context_size, x.device)
            x, _ = layer(x, src_mask=src_mask, src_key_padding_mask=mask, pos_embs=pos_embs,
                         dynchunktrain_config=layer_config)
            if number in self.pool_after:
                x = max_pool_time(x, mask)
        return self.norm(x)

    def _frontend(self, feats: torch.Tensor, padding: int) -> torch.Tensor:
        """The Conv2d front end on ``feats`` (B × 1 × T × F), ``padding`` zero frames at each end of time."""
        x = torch.nn.functional.conv2d(feats, self.frontend.weight, self.frontend.bias, stride=2,
                                       padding=(padding, 1))
        x = torch.relu(x)  # B × C × T/2 × F/2
        return self.dropout(self.frontend_out(x.permute(0, 2, 1, 3).flatten(2)))

    def layer_chunks(self, config: DynChunkTrainConfig, number: int) -> DynChunkTrainConfig:
        """Layer ``number``'s chunking (0: the front end's output): the chunk in its own frames."""
        if config.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 encoder frame, got {config.chunk_size}")
        later_pools = sum(1 for layer in self.pool_after if layer >= number)
        return DynChunkTrainConfig(config.chunk_size * 2 ** later_pools, config.left_context_size)

    def make_streaming_context(self, config: DynChunkTrainConfig) -> EncoderStreamingContext:
        """A blank context for :meth:`forward_streaming` with ``config``'s chunks and left context."""
        layers = []
        for number, layer in enumerate(self.layers, start=1):
            chunks = self.layer_chunks(config, number)
            # Unlimited left context: keep every frame (memory grows with the stream).
            keep = 1 << 30 if chunks.left_context_size is None else chunks.left_context_size_frames()
            layers.append(layer.make_streaming_context(mha_left_context_size=keep))
        return EncoderStreamingContext(config, layers)

    def forward_streaming(self, feats: torch.Tensor, context: EncoderStreamingContext,
                          final: bool = False) -> torch.Tensor:
        """Encode the next feature frames of a stream (``batch × frames × features``, any number).

        Returns the encoder frames completed so far (a whole number of chunks;
        with ``final``, the rest too): over a stream, the frames of
        :meth:`forward` on the whole features with ``dynchunktrain_config``
        = ``context.config`` (to float rounding).  The front end looks one
        feature frame ahead, so a chunk is complete one frame after its end.
        """
        if context.finished:
            raise RuntimeError("this stream has finished; make a new context for a new stream")
        if feats.dim() != 3:
            raise ValueError(f"expected features of shape batch × frames × features, got {tuple(feats.shape)}")
        if context.features is None:
            # The front end's zero padding before the first frame.
            context.features = feats.new_zeros(feats.shape[0], 1, feats.shape[2])
            context.frontend = feats.new_zeros(feats.shape[0], 0, self.frontend_out.out_features)
        buffer = torch.cat([context.features, feats], dim=1)
        if final and (buffer.shape[1] - 1) % 2:
            buffer = torch.nn.functional.pad(buffer, (0, 0, 0, 1))  # the zero padding after the last frame
        # Output j reads frames 2j−1, 2j, 2j+1: the buffer starts at 2j−1.
        ready = (buffer.shape[1] - 1) // 2
        if ready:
            context.frontend = torch.cat([context.frontend, self._frontend(buffer[:, None, :2 * ready + 1], 0)], 1)
        context.features = buffer[:, 2 * ready:]
        chunk = self.layer_chunks(context.config, 0).chunk_size
        outputs = []
        while context.frontend.shape[1] >= chunk or (final and context.frontend.shape[1]):
            x, context.frontend = context.frontend[:, :chunk], context.frontend[:, chunk:]
            outputs.append(self._stream_chunk(x, context))
        context.finished = final
        if not outputs:
            return feats.new_zeros(feats.shape[0], 0, self.norm.normalized_shape[0])
        return torch.cat(outputs, dim=1)

    def _stream_chunk(self, x: torch.Tensor, context: EncoderStreamingContext) -> torch.Tensor:
        """One chunk (or the last, shorter one) of front-end outputs through the layers and poolings."""
        if 0 in self.pool_after:
            x = max_pool_time(x, torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device))
        for number, (layer, layer_context) in enumerate(zip(self.layers, context.layers), start=1):
            pos_embs = None
            if self.positions is not None:
                left = 0 if layer_context.mha_left_context is None else layer_context.mha_left_context.shape[1]
                pos_embs = self.positions(x.new_empty(1, left + x.shape[1], x.shape[2]))
            x, _ = layer.forward_streaming(x, layer_context, pos_embs=pos_embs)
            if number in self.pool_after:
                x = max_pool_time(x, torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device))
        return self.norm(x)


def max_pool_time(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max-pool ``x`` (batch × frames × dim) by 2 in time; ``mask`` is ``True`` on padded frames.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [2.0], [-5.0], [7.0]]])
    >>> max_pool_time(x, torch.tensor([[False, False, False, True, True]])).flatten().tolist()
    [3.0, 2.0, 0.0]
    """
    # Padded frames must not win the max: fill them with -inf first. A window of padding only is 0
    # (found from the mask, not from the -inf: onnxruntime's MaxPool gives the lowest float there).
    x = x.masked_fill(mask.unsqueeze(-1), float("-inf"))
    x = torch.nn.functional.max_pool1d(x.transpose(1, 2), 2, ceil_mode=True).transpose(1, 2)
    valid = torch.nn.functional.max_pool1d((~mask).to(x.dtype).unsqueeze(1), 2, ceil_mode=True).transpose(1, 2)
    return x.masked_fill(valid <= 0, 0.0)
