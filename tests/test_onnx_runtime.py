import numpy as np
import torch
from hypothesis import given, settings

from hieradist_lobes.cif import cif_fire
from hieradist_lobes.features import Fbank
from hieradist_lobes.onnx_export import _stft_window, power_spectrogram_torch
from hieradist_lobes.onnx_runtime import integrate_and_fire, power_spectrogram
from tests.test_cif import cif_inputs


@settings(max_examples=200, deadline=None)
@given(cif_inputs())
def test_numpy_integrate_and_fire_decides_as_cif_fire(case):
    """The runtime's frame loop against the vectorised cif_fire, utterance by utterance."""
    alphas, hidden, threshold, tail = case
    whole = cif_fire(alphas, hidden, threshold, tail)
    for b in range(alphas.shape[0]):
        fired = integrate_and_fire(alphas[b].numpy(), hidden[b].numpy(), threshold, tail)
        count = int(whole.lengths[b])
        assert fired.shape == (count, hidden.shape[2])
        np.testing.assert_allclose(fired, whole.fired[b, :count].numpy(), atol=1e-5, rtol=1e-5)


def test_numpy_spectrogram_is_the_models():
    fbank = Fbank(n_mels=20)
    for samples in (1, 400, 16001):
        wav = torch.randn(1, samples)
        expected = power_spectrogram_torch(fbank.compute_STFT, wav)[0].numpy()
        got = power_spectrogram(wav[0].numpy(), _stft_window(fbank.compute_STFT), 400, 160)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.max()))
