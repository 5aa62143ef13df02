import random

import pytest
import torch

from hieradist_lobes.conformer import PooledConformerEncoder, padding_mask


def make(pool_after=(1, 2)):
    torch.manual_seed(0)
    return PooledConformerEncoder(input_size=12, d_model=16, num_layers=3, nhead=2, d_ffn=32, kernel_size=3,
                                  pool_after=pool_after, frontend_channels=4, dropout=0.0).eval()


def test_subsampling_is_two_per_pool_times_two():
    assert make((1, 2)).subsampling == 8
    assert make((2,)).subsampling == 4
    out = make((1, 2))(torch.randn(3, 77, 12))
    assert out.shape == (3, 10, 16)  # ceil(ceil(ceil(77/2)/2)/2)


def test_pooling_before_the_first_layer_runs_every_layer_at_the_lower_rate():
    encoder = make((0, 1))
    rates = []
    for layer in encoder.layers:
        layer.register_forward_hook(lambda module, inputs, output: rates.append(output[0].shape[1]))
    out = encoder(torch.randn(2, 77, 12), torch.tensor([1.0, 0.6]))
    assert encoder.subsampling == 8 and out.shape == (2, 10, 16)
    assert rates == [20, 10, 10]  # 39 frames after the front end, pooled before layer 1 and after it


def test_padded_frames_do_not_win_the_max_pool():
    encoder = make((2, 3))  # the last layer pools: its padded output frames are all padding
    feats = torch.randn(2, 64, 12)
    out = encoder(feats, torch.tensor([1.0, 0.5]))
    assert out.shape == (2, 8, 16) and torch.isfinite(out).all()
    # Pooled frames made only of padding are 0 before the final LayerNorm: all equal.
    assert torch.allclose(out[1, 4:], out[1, 4:5].expand(4, -1), atol=1e-6)
    assert not torch.allclose(out[1, 3], out[1, 4])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"distinct layers in 0\.\.3"):
        make((1, 4))
    with pytest.raises(ValueError, match=r"distinct layers in 0\.\.3"):
        make((1, 1))
    with pytest.raises(ValueError, match="batch × frames × features"):
        make()(torch.randn(2, 12))
    assert padding_mask(torch.tensor([0.25]), 8).tolist() == [[False, False, True, True, True, True, True, True]]


@pytest.mark.parametrize("pool_after", [[0, 1], [1, 2], [2]])
@pytest.mark.parametrize("left_chunks", [None, 0, 2])
def test_streaming_encoder_equals_the_chunked_encoder_on_the_whole_input(pool_after, left_chunks):
    """Features fed in pieces of random sizes (not chunk-aligned), then the end of the stream: the
    frames of forward() on the whole input with the same chunking; and the chunking matters."""
    from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig

    torch.manual_seed(0)
    generator = random.Random(1)
    encoder = PooledConformerEncoder(input_size=20, d_model=16, num_layers=3, nhead=2, d_ffn=32,
                                     pool_after=pool_after, frontend_channels=4, kernel_size=5).eval()
    config = DynChunkTrainConfig(3, left_chunks)
    for frames in (1, 7, 50, 101):
        feats = torch.randn(1, frames, 20)
        with torch.no_grad():
            whole = encoder(feats, dynchunktrain_config=config)
            context = encoder.make_streaming_context(config)
            pieces, start = [], 0
            while start < frames:
                size = generator.randint(1, 9)
                pieces.append(encoder.forward_streaming(feats[:, start:start + size], context))
                start += size
            pieces.append(encoder.forward_streaming(feats[:, :0], context, final=True))
            streamed = torch.cat(pieces, dim=1)
            full_context = encoder(feats)
        assert streamed.shape == whole.shape
        assert torch.allclose(streamed, whole, atol=1e-5)
        if frames >= 50:
            assert not torch.allclose(full_context, whole, atol=1e-2)


def test_chunk_attention_mask_limits_keys_to_the_chunk_and_its_left_chunks():
    from hieradist_lobes.conformer import chunk_attention_mask

    mask = chunk_attention_mask(7, 2, 1)
    allowed = [[key for key in range(7) if not mask[query, key]] for query in range(7)]
    assert allowed[0] == [0, 1] and allowed[3] == [0, 1, 2, 3] and allowed[4] == [2, 3, 4, 5]
    assert allowed[6] == [4, 5, 6]
    assert not chunk_attention_mask(7, 2, None)[6, :7].any()
