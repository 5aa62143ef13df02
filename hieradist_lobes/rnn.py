"""SpeechBrain's GRU for the CRDNN of the built-in corpus's YAMLs, without the
inter-layer dropout that a one-layer GRU cannot apply.

SpeechBrain's CRDNN passes its one ``dropout`` to the CNN, the RNN and the DNN
blocks; PyTorch applies an RNN's dropout between its layers only, so on a
one-layer RNN (the students) it does nothing, and PyTorch warned about it each
time such a model was built. The model computes the same either way.

Example
-------
>>> import torch
>>> rnn = GRU(hidden_size=8, input_shape=[None, None, 4], num_layers=1, dropout=0.25)
>>> rnn.rnn.dropout, rnn(torch.randn(2, 5, 4))[0].shape
(0.0, torch.Size([2, 5, 8]))
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import speechbrain.nnet.RNN


class GRU(speechbrain.nnet.RNN.GRU):
    """``speechbrain.nnet.RNN.GRU``; ``dropout`` is dropped where ``num_layers`` is 1 (see the module).
    The signature is SpeechBrain's, spelt out: its containers look for ``input_shape`` in it."""

    def __init__(self, hidden_size: int, input_shape: Optional[Sequence[Any]] = None, input_size: Optional[int] = None,
                 num_layers: int = 1, bias: bool = True, dropout: float = 0.0, re_init: bool = True,
                 bidirectional: bool = False) -> None:
        super().__init__(hidden_size, input_shape=input_shape, input_size=input_size, num_layers=num_layers,
                         bias=bias, dropout=dropout if num_layers > 1 else 0.0, re_init=re_init,
                         bidirectional=bidirectional)
