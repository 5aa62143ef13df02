"""SpeechBrain's CRDNN encoder with its CNN blocks run in channels-last layout.

SpeechBrain's CNN block keeps its maps as ``batch × time × freq × channels``
and each of its layers transposes them to the layout it needs: every
convolution, layer norm, pooling and dropout copies the map (the teacher's and
the student's largest single cost on the CPU: the block runs at the full frame
rate, before time pooling).  That memory order *is* PyTorch's channels-last
layout of a ``batch × channels × time × freq`` map, so here each convolution
reads it in place (a permuted view, the kernel's two axes swapped to match),
writes channels-last, and the layer norms, the pooling over frequency and the
channel dropout work on it without a copy.  Same parameters (and state-dict
keys), same function (docs/benchmarks.md: with the decoder's loop, the built-in
corpus's teacher and student steps 1.3-1.4x faster).  A block this does not cover (strided or
dilated convolutions, ``max_norm``, 2-D pooling) runs SpeechBrain's own layers.

Example
-------
>>> import torch
>>> encoder = CRDNN(input_shape=[None, None, 20], cnn_blocks=1, cnn_channels=[4], time_pooling=True,
...                 rnn_layers=1, rnn_neurons=8, dnn_blocks=1, dnn_neurons=8).eval()
>>> features = torch.randn(2, 30, 20)
>>> reference = speechbrain.lobes.models.CRDNN.CRDNN.forward(encoder, features)
>>> encoder(features).shape, torch.allclose(encoder(features), reference, atol=1e-5)
(torch.Size([2, 15, 8]), True)
"""

from __future__ import annotations

import speechbrain.lobes.models.CRDNN
import torch
import torch.nn.functional as F
from speechbrain.nnet.CNN import Conv2d, get_padding_elem
from speechbrain.nnet.dropout import Dropout2d
from speechbrain.nnet.pooling import Pooling1d


class CRDNN(speechbrain.lobes.models.CRDNN.CRDNN):
    """``speechbrain.lobes.models.CRDNN.CRDNN`` (same arguments) whose CNN blocks
    are :class:`ChannelsLastCNNBlock` (see the module)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "CNN" in self:
            for name in list(self.CNN.keys()):
                self.CNN[name] = ChannelsLastCNNBlock(self.CNN[name])


def _conv_supported(layer: torch.nn.Module) -> bool:
    if not isinstance(layer, Conv2d) or layer.padding != "same" or layer.max_norm is not None:
        return False
    conv = layer.conv
    return (not layer.skip_transpose and not layer.swap and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding == (0, 0))


class ChannelsLastCNNBlock(torch.nn.Module):
    """One of SpeechBrain's CRDNN CNN blocks (conv, norm, activation, conv,
    norm, activation, pooling over frequency, channel dropout), computed on
    the channels-last map; its layers are the block's own, under the same names.

    Arguments
    ---------
    block : speechbrain.lobes.models.CRDNN.CNN_Block
        The block whose layers to run.
    """

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__()
        for name, layer in block.named_children():
            self.add_module(name, layer)
        self.layer_names = [name for name, _ in block.named_children()]
        pooling = getattr(self, "pooling", None)
        self.fast = (self.layer_names == ["conv_1", "norm_1", "act_1", "conv_2", "norm_2", "act_2", "pooling", "drop"]
                     and _conv_supported(self.conv_1) and _conv_supported(self.conv_2)
                     and isinstance(pooling, Pooling1d) and pooling.pool_axis == 2
                     and isinstance(pooling.pool_layer, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))
                     and isinstance(self.drop, Dropout2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``batch × time × freq`` (or ``× channels``) in, ``batch × time × freq' × channels`` out."""
        if not self.fast:
            for name in self.layer_names:
                x = getattr(self, name)(x)
            return x
        if x.dim() == 3:
            x = x.unsqueeze(-1)
        x = self.act_1(self.norm_1(self._conv(self.conv_1, x)))
        x = self.act_2(self.norm_2(self._conv(self.conv_2, x)))
        # The pooling layer pools the last axis of a batch × channels × time × freq map (kernel 1 × k).
        x = self.pooling.pool_layer(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self._drop_frequencies(x)

    @staticmethod
    def _conv(layer: Conv2d, x: torch.Tensor) -> torch.Tensor:
        """SpeechBrain's ``Conv2d`` (``same`` padding in its mode) on ``batch × time × freq × channels``."""
        conv = layer.conv  # its kernel is (freq, time): SpeechBrain convolves batch × channels × freq × time
        pad_time = get_padding_elem(layer.in_channels, conv.stride[1], conv.kernel_size[1], conv.dilation[1])
        pad_freq = get_padding_elem(layer.in_channels, conv.stride[0], conv.kernel_size[0], conv.dilation[0])
        maps = F.pad(x.permute(0, 3, 1, 2), (*pad_freq, *pad_time), mode=layer.padding_mode)
        maps = maps.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(maps, conv.weight.transpose(2, 3), conv.bias, groups=conv.groups)
        return out.permute(0, 2, 3, 1).contiguous()

    def _drop_frequencies(self, x: torch.Tensor) -> torch.Tensor:
        """SpeechBrain's ``Dropout2d`` here zeroes whole frequency bins (per utterance, every
        frame and channel): one mask of ``batch × 1 × freq × 1``."""
        rate = self.drop.drop.p
        if not self.training or rate == 0:
            return x
        keep = 1.0 - rate
        mask = torch.empty(x.shape[0], 1, x.shape[2], 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
        return x * mask.div_(keep)
