"""A Conformer encoder that subsamples 8× in time: the CIF model's encoder.

A Conv2d front end (stride 2) followed by Conformer layers (SpeechBrain's
:class:`~speechbrain.lobes.models.transformer.Conformer.ConformerEncoderLayer`,
relative-position attention) with max-pooling over time after some of the
layers, as in CIF-HieraDist (pooling after layers 5 and 10 of 15: 2 × 2 × 2 =
8×).  A low frame rate is what CIF wants: each token then integrates a few
frames, not dozens.

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

from typing import Optional, Sequence

import torch
from speechbrain.lobes.models.transformer.Conformer import ConformerEncoderLayer
from speechbrain.nnet.attention import RelPosEncXL

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

    def forward(self, feats: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode ``feats`` (batch × frames × features); ``lengths`` relative, in (0, 1]."""
        if feats.dim() != 3:
            raise ValueError(f"expected features of shape batch × frames × features, got {tuple(feats.shape)}")
        if lengths is None:
            lengths = torch.ones(feats.shape[0], device=feats.device)
        x = torch.relu(self.frontend(feats.unsqueeze(1)))  # B × C × T/2 × F/2
        x = self.dropout(self.frontend_out(x.permute(0, 2, 1, 3).flatten(2)))
        if 0 in self.pool_after:
            x = max_pool_time(x, padding_mask(lengths, x.shape[1]))
        for number, layer in enumerate(self.layers, start=1):
            mask = padding_mask(lengths, x.shape[1])
            pos_embs = self.positions(x) if self.positions is not None else None
            x, _ = layer(x, src_key_padding_mask=mask, pos_embs=pos_embs)
            if number in self.pool_after:
                x = max_pool_time(x, mask)
        return self.norm(x)


def max_pool_time(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max-pool ``x`` (batch × frames × dim) by 2 in time; ``mask`` is ``True`` on padded frames.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [2.0], [-5.0]]])
    >>> max_pool_time(x, torch.tensor([[False, False, False, True]])).flatten().tolist()
    [3.0, 2.0]
    """
    # Padded frames must not win the max: fill them with -inf first.
    x = x.masked_fill(mask.unsqueeze(-1), float("-inf"))
    x = torch.nn.functional.max_pool1d(x.transpose(1, 2), 2, ceil_mode=True).transpose(1, 2)
    return x.masked_fill(torch.isinf(x), 0.0)
