"""SpeechBrain's RNN modules of the CTC/attention (CRDNN) recipes, changed where it pays.

- :class:`GRU`: SpeechBrain's GRU without the inter-layer dropout that a
  one-layer GRU cannot apply. SpeechBrain's CRDNN passes its one ``dropout`` to
  the CNN, the RNN and the DNN blocks; PyTorch applies an RNN's dropout between
  its layers only, so on a one-layer RNN (the students) it does nothing, and
  PyTorch warned about it each time such a model was built. The model computes
  the same either way.
- :class:`AttentionalRNNDecoder`: SpeechBrain's decoder with the same
  parameters and the same step for the searchers, whose teacher-forced
  ``forward`` (every training step) does once per sequence what SpeechBrain's
  loop redoes at every token.

Example
-------
>>> import torch
>>> rnn = GRU(hidden_size=8, input_shape=[None, None, 4], num_layers=1, dropout=0.25)
>>> rnn.rnn.dropout, rnn(torch.randn(2, 5, 4))[0].shape
(0.0, torch.Size([2, 5, 8]))
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import speechbrain.nnet.RNN
import torch
from speechbrain.dataio.dataio import length_to_mask


class GRU(speechbrain.nnet.RNN.GRU):
    """``speechbrain.nnet.RNN.GRU``; ``dropout`` is dropped where ``num_layers`` is 1 (see the module).
    The signature is SpeechBrain's, spelt out: its containers look for ``input_shape`` in it."""

    def __init__(self, hidden_size: int, input_shape: Optional[Sequence[Any]] = None, input_size: Optional[int] = None,
                 num_layers: int = 1, bias: bool = True, dropout: float = 0.0, re_init: bool = True,
                 bidirectional: bool = False) -> None:
        super().__init__(hidden_size, input_shape=input_shape, input_size=input_size, num_layers=num_layers,
                         bias=bias, dropout=dropout if num_layers > 1 else 0.0, re_init=re_init,
                         bidirectional=bidirectional)


class AttentionalRNNDecoder(speechbrain.nnet.RNN.AttentionalRNNDecoder):
    """``speechbrain.nnet.RNN.AttentionalRNNDecoder`` whose teacher-forced
    ``forward`` does once per sequence the work that does not depend on the
    previous step (the same parameters, the same ``forward_step`` for the
    searchers, the same function).

    SpeechBrain's ``forward`` calls ``forward_step`` once per token, and each
    step recomputes what the recurrence does not need: the embedding's share of
    the RNN's input projection, the attention's output projection (applied to
    the context) and the output projection of the step.  Here, for location-aware
    attention and a one-layer GRU or LSTM (the CRDNN recipes' decoder):

    - the embedding's share of the input gates is one matrix product over all tokens;
    - the context's projection is applied to the encoder states once: the
      attention weights sum to 1, so ``W (sum_i a_i e_i) + b = sum_i a_i (W e_i + b)``;
    - the output projection is one matrix product over all steps;
    - dropout on the cell's input ``[embedding, previous context]`` draws the
      embedding's mask for the whole sequence and the contexts' masks at once
      (the same distribution as one draw per step, another random stream).

    A step then does the recurrent matrix products, the gates, the attention
    energies and one weighted sum. Other configurations use SpeechBrain's loop.

    Example
    -------
    >>> import torch
    >>> decoder = AttentionalRNNDecoder(rnn_type="gru", attn_type="location", hidden_size=8, attn_dim=6,
    ...                                 num_layers=1, enc_dim=5, input_size=4, channels=3, kernel_size=2).eval()
    >>> tokens, encoded, lengths = torch.randn(2, 7, 4), torch.randn(2, 9, 5), torch.tensor([1.0, 0.6])
    >>> fast, _ = decoder(tokens, encoded, lengths)
    >>> reference, _ = speechbrain.nnet.RNN.AttentionalRNNDecoder.forward(decoder, tokens, encoded, lengths)
    >>> fast.shape, torch.allclose(fast, reference, atol=1e-6)
    (torch.Size([2, 7, 8]), True)
    """

    def forward(self, inp_tensor: torch.Tensor, enc_states: torch.Tensor,
                wav_len: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decoder outputs (``batch × tokens × hidden_size``) and attention
        weights (``batch × tokens × frames``), teacher-forced on ``inp_tensor``."""
        if self.attn_type != "location" or self.num_layers != 1 or self.rnn_type not in ("gru", "lstm"):
            return super().forward(inp_tensor, enc_states, wav_len)
        attn, cell = self.attn, self.rnn.rnn_cells[0]
        batch, steps, frames = inp_tensor.shape[0], inp_tensor.shape[1], enc_states.shape[1]
        emb_size = inp_tensor.shape[-1]
        # As SpeechBrain: the encoder's length in frames, the mask and the first (uniform) attention.
        enc_len = torch.round(frames * wav_len).long()
        mask = length_to_mask(enc_len, max_len=frames, device=enc_states.device)
        previous = mask * (1 / enc_len.float()).unsqueeze(1)
        padded = mask == 0

        dropping = self.training and self.dropout > 0
        inputs = self.drop(inp_tensor)
        input_gates = torch.nn.functional.linear(inputs, cell.weight_ih[:, :emb_size], cell.bias_ih)
        context_weight = cell.weight_ih[:, emb_size:]
        if dropping:
            keep = 1.0 - self.dropout
            context_masks = torch.empty(steps, batch, self.attn_dim, device=enc_states.device,
                                        dtype=enc_states.dtype).bernoulli_(keep).div_(keep)
        enc_keys = attn.mlp_enc(enc_states)
        enc_values = attn.mlp_out(enc_states)

        hidden = enc_states.new_zeros(batch, self.hidden_size)
        memory = enc_states.new_zeros(batch, self.hidden_size) if self.rnn_type == "lstm" else None
        context = enc_states.new_zeros(batch, self.attn_dim)
        hiddens, contexts, weights = [], [], []
        for step in range(steps):
            cell_context = context * context_masks[step] if dropping else context
            gates_in = torch.addmm(input_gates[:, step], cell_context, context_weight.t())
            gates_hidden = torch.nn.functional.linear(hidden, cell.weight_hh, cell.bias_hh)
            if memory is None:  # GRU (PyTorch's gate order: reset, update, new)
                reset_in, update_in, new_in = gates_in.chunk(3, dim=1)
                reset_hidden, update_hidden, new_hidden = gates_hidden.chunk(3, dim=1)
                reset = torch.sigmoid(reset_in + reset_hidden)
                update = torch.sigmoid(update_in + update_hidden)
                new = torch.tanh(new_in + reset * new_hidden)
                hidden = new + update * (hidden - new)
            else:  # LSTM (input, forget, cell, output)
                in_gate, forget_gate, cell_gate, out_gate = (gates_in + gates_hidden).chunk(4, dim=1)
                memory = torch.sigmoid(forget_gate) * memory + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
                hidden = torch.sigmoid(out_gate) * torch.tanh(memory)
            location = attn.mlp_loc(attn.conv_loc(previous.unsqueeze(1)).transpose(1, 2))
            energy = attn.mlp_attn(torch.tanh(enc_keys + attn.mlp_dec(hidden).unsqueeze(1) + location)).squeeze(-1)
            weight = torch.softmax(energy.masked_fill(padded, -float("inf")) * attn.scaling, dim=-1)
            previous = weight.detach()
            context = torch.bmm(weight.unsqueeze(1), enc_values).squeeze(1)
            hiddens.append(hidden)
            contexts.append(context)
            weights.append(weight)
        outputs = self.proj(torch.cat([torch.stack(contexts, dim=1), torch.stack(hiddens, dim=1)], dim=-1))
        return outputs, torch.stack(weights, dim=1)
