"""hieradist_lobes.rnn: the decoder's teacher-forced forward against SpeechBrain's loop."""

import pytest
import speechbrain.nnet.RNN
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hieradist_lobes.rnn import AttentionalRNNDecoder

REFERENCE = speechbrain.nnet.RNN.AttentionalRNNDecoder.forward


def decoder(rnn_type: str = "gru", dropout: float = 0.0, num_layers: int = 1, attn_type: str = "location",
            scaling: float = 1.0) -> AttentionalRNNDecoder:
    return AttentionalRNNDecoder(rnn_type=rnn_type, attn_type=attn_type, hidden_size=12, attn_dim=10,
                                 num_layers=num_layers, enc_dim=7, input_size=5, channels=3, kernel_size=4,
                                 scaling=scaling, dropout=dropout)


def inputs(batch: int, tokens: int, frames: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    # At least one frame each (a zero-length encoder output is NaN in SpeechBrain's loop as in ours).
    lengths = (torch.rand(batch, generator=generator) * 0.8 + 0.2).clamp(min=1 / frames)
    lengths[0] = 1.0  # the longest fills the padded length, as a batch's does
    return (torch.randn(batch, tokens, 5, generator=generator, requires_grad=True),
            torch.randn(batch, frames, 7, generator=generator, requires_grad=True), lengths)


@settings(max_examples=25, deadline=None)
@given(rnn_type=st.sampled_from(["gru", "lstm"]), batch=st.integers(1, 4), tokens=st.integers(1, 9),
       frames=st.integers(1, 15), scaling=st.sampled_from([1.0, 2.0]), seed=st.integers(0, 10_000))
def test_forward_equals_speechbrains_loop_values_and_gradients(rnn_type, batch, tokens, frames, scaling, seed):
    torch.manual_seed(seed)
    model = decoder(rnn_type, scaling=scaling).train()  # no dropout: both are deterministic
    tokens_in, encoded, lengths = inputs(batch, tokens, frames, seed)
    outputs, weights = model(tokens_in, encoded, lengths)
    (outputs.square().sum() + weights.sum()).backward()
    fast = [outputs, weights, tokens_in.grad, encoded.grad, *[p.grad for p in model.parameters()]]
    model.zero_grad()
    tokens_in.grad = encoded.grad = None
    outputs, weights = REFERENCE(model, tokens_in, encoded, lengths)
    (outputs.square().sum() + weights.sum()).backward()
    reference = [outputs, weights, tokens_in.grad, encoded.grad, *[p.grad for p in model.parameters()]]
    for ours, theirs in zip(fast, reference):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert weights.shape == (batch, tokens, frames)


def test_padded_frames_get_no_attention_and_weights_sum_to_one():
    model = decoder().eval()
    tokens_in, encoded, _ = inputs(3, 6, 10, seed=1)
    lengths = torch.tensor([1.0, 0.5, 0.3])
    _, weights = model(tokens_in, encoded, lengths)
    assert torch.all(weights[1, :, 5:] == 0) and torch.all(weights[2, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))


def test_dropout_applies_in_training_only_and_keeps_the_scale():
    torch.manual_seed(0)
    model = decoder(dropout=0.5)
    tokens_in, encoded, lengths = inputs(2, 5, 8, seed=2)
    model.eval()
    evaluated, _ = model(tokens_in, encoded, lengths)
    reference, _ = REFERENCE(model, tokens_in, encoded, lengths)
    torch.testing.assert_close(evaluated, reference)  # eval: no dropout, the same function
    model.train()
    first, _ = model(tokens_in, encoded, lengths)
    second, _ = model(tokens_in, encoded, lengths)
    assert not torch.allclose(first, evaluated) and not torch.allclose(first, second)
    # Inverted dropout: over many draws the mean input gate pre-activation matches the undropped one.
    cell = model.rnn.rnn_cells[0]
    drawn = torch.stack([model.drop(tokens_in.detach()) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(drawn, tokens_in.detach(), atol=0.1, rtol=0)
    assert cell.weight_ih.shape[1] == 5 + 10  # [embedding, context], as SpeechBrain's cell


@pytest.mark.parametrize("setting", [{"num_layers": 2}, {"attn_type": "content"}, {"rnn_type": "rnn"}])
def test_other_configurations_use_speechbrains_loop(setting, monkeypatch):
    model = decoder(**setting).eval()
    calls = []
    monkeypatch.setattr(speechbrain.nnet.RNN.AttentionalRNNDecoder, "forward",
                        lambda self, *a: calls.append(1) or REFERENCE(self, *a))
    tokens_in, encoded, lengths = inputs(2, 4, 6, seed=3)
    outputs, _ = model(tokens_in, encoded, lengths)
    assert calls == [1] and outputs.shape == (2, 4, 12)


def test_searchers_step_is_speechbrains():
    assert AttentionalRNNDecoder.forward_step is speechbrain.nnet.RNN.AttentionalRNNDecoder.forward_step
