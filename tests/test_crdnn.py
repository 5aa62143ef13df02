"""hieradist_lobes.crdnn: channels-last CNN blocks against SpeechBrain's CRDNN."""

import pytest
import speechbrain.lobes.models.CRDNN
import speechbrain.nnet.RNN
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hieradist_lobes.crdnn import CRDNN, ChannelsLastCNNBlock

REFERENCE = speechbrain.lobes.models.CRDNN.CRDNN


def encoders(seed: int, **sizes):
    """Ours and SpeechBrain's, with the same parameters."""
    arguments = dict(input_shape=[None, None, 12], cnn_blocks=2, cnn_channels=[3, 5], time_pooling=True,
                     rnn_class=speechbrain.nnet.RNN.GRU, rnn_layers=1, rnn_neurons=6, dnn_blocks=1, dnn_neurons=6,
                     dropout=0.0)
    arguments.update(sizes)
    torch.manual_seed(seed)
    ours = CRDNN(**arguments)
    theirs = REFERENCE(**arguments)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def double(*models):
    # float64: the two sum in other orders, and layer norms over a few frames magnify float32 rounding
    return [model.double() for model in models]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), frames=st.integers(4, 40), freq=st.sampled_from([12, 13]),
       kernel=st.sampled_from([(3, 3), (5, 3), (3, 5)]), padding=st.sampled_from(["reflect", "replicate", "constant"]))
def test_values_and_gradients_equal_speechbrains(seed, frames, freq, kernel, padding):
    ours, theirs = double(*encoders(seed, input_shape=[None, None, freq], cnn_kernelsize=list(kernel)))
    for block in ours.CNN.values():
        assert block.fast
        block.conv_1.padding_mode = block.conv_2.padding_mode = padding
    for block in theirs.CNN.values():
        block.conv_1.padding_mode = block.conv_2.padding_mode = padding
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, frames, freq, generator=generator, dtype=torch.float64)
    outputs = []
    for model in (ours, theirs):
        model.train()  # no dropout (0.0): deterministic, and layer norms train as they would
        inputs = features.clone().requires_grad_()
        out = model(inputs)
        out.square().sum().backward()
        outputs.append([out, inputs.grad, *[p.grad for p in model.parameters()]])
    for mine, reference in zip(*outputs):
        torch.testing.assert_close(mine, reference, rtol=1e-9, atol=1e-10)


def test_same_state_dict_keys_so_earlier_checkpoints_load():
    ours, theirs = encoders(0)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(isinstance(block, ChannelsLastCNNBlock) for block in ours.CNN.values())


def test_channel_dropout_zeroes_whole_frequency_bins_in_training_only():
    ours, _ = encoders(0, dropout=0.5)
    block = ours.CNN.block_0
    maps = torch.randn(3, 10, 12, 1)
    block.eval()
    evaluated = block(maps)  # layer norms and activations act alike in training: dropout is the difference
    block.train()
    torch.manual_seed(1)
    dropped = block(maps)
    zero_bins = (dropped == 0).all(dim=1).all(dim=-1)  # batch × freq: zero at every frame and channel
    assert zero_bins.any() and not zero_bins.all()
    kept = ~zero_bins[:, None, :, None].expand_as(dropped)
    # Inverted dropout, as SpeechBrain's Dropout2d: every kept bin is scaled by 1 / (1 - p).
    torch.testing.assert_close(dropped[kept], evaluated[kept] / 0.5)


@pytest.mark.parametrize("sizes", [{"using_2d_pooling": True}])
def test_blocks_it_does_not_cover_run_speechbrains_layers(sizes):
    ours, theirs = encoders(0, **sizes)
    assert not any(block.fast for block in ours.CNN.values())
    features = torch.randn(2, 16, 12)
    torch.testing.assert_close(ours.eval()(features), theirs.eval()(features))
