import random

import pytest
import torch
from speechbrain.lobes.features import Fbank as SpeechBrainFbank

from hieradist_lobes.features import Fbank, StreamingFbank


def test_the_default_floor_gives_speechbrains_features():
    wav = torch.randn(2, 8000)
    assert torch.equal(Fbank(n_mels=20)(wav), SpeechBrainFbank(n_mels=20)(wav))


def test_without_the_floor_a_quiet_stretch_keeps_its_own_energies():
    wav = torch.randn(1, 8000)
    wav[:, :4000] *= 1e-6  # 120 dB quieter than the rest
    floored, own = Fbank(n_mels=20)(wav), Fbank(n_mels=20, top_db=None)(wav)
    assert float(floored[0, :10].min()) >= float(floored.max()) - 80.0 - 1e-3
    assert float(own[0, :10].min()) < float(own.max()) - 100.0


@pytest.mark.parametrize("samples", [1, 159, 160, 400, 16000, 16001])
def test_streamed_frames_are_those_of_the_whole_recording(samples):
    """Pieces of random sizes, one sample included, then the end: every frame, as many as the whole
    recording's centred STFT gives (1 + samples // hop)."""
    fbank = Fbank(n_mels=20, top_db=None)
    generator = random.Random(samples)
    wav = torch.randn(1, samples)
    stream, pieces, start = StreamingFbank(fbank), [], 0
    while start < samples:
        size = generator.choice([1, 7, 160, 1234])
        pieces.append(stream(wav[:, start:start + size]))
        start += size
    pieces.append(stream.finish())
    streamed = torch.cat(pieces, dim=1)
    whole = fbank(wav)
    assert streamed.shape == whole.shape == (1, 1 + samples // 160, 20)
    assert torch.allclose(streamed, whole, atol=1e-4)


def test_features_that_look_at_the_whole_utterance_are_refused():
    with pytest.raises(ValueError, match="top_db: null"):
        StreamingFbank(Fbank(n_mels=20))
    with pytest.raises(ValueError, match="deltas"):
        StreamingFbank(Fbank(n_mels=20, top_db=None, deltas=True))
    stream = StreamingFbank(Fbank(n_mels=20, top_db=None))
    stream(torch.randn(1, 500))
    stream.finish()
    with pytest.raises(RuntimeError, match="finished"):
        stream(torch.randn(1, 500))
