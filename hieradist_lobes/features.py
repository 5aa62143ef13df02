"""Filterbank features, whole or streamed: :class:`Fbank` and :class:`StreamingFbank`.

SpeechBrain's ``Fbank`` floors each utterance's log-energies at 80 dB below the
utterance's own maximum, so a frame's features depend on the whole recording.
:class:`Fbank` is SpeechBrain's with that floor made optional (``top_db``):
with ``top_db=None`` each frame depends only on the samples under its window,
which is what lets :class:`StreamingFbank` compute, chunk by chunk, exactly
the frames that the whole recording gives.

Example
-------
>>> fbank = Fbank(n_mels=20, top_db=None)
>>> wav = torch.randn(1, 16000)
>>> stream = StreamingFbank(fbank)
>>> pieces = [stream(wav[:, :5000]), stream(wav[:, 5000:5003]), stream(wav[:, 5003:]), stream.finish()]
>>> streamed = torch.cat(pieces, dim=1)
>>> whole = fbank(wav)
>>> streamed.shape == whole.shape, bool(torch.allclose(streamed, whole, atol=1e-4))
(True, True)
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from speechbrain.lobes import features as sb_features
from speechbrain.processing.features import spectral_magnitude

__all__ = ["Fbank", "StreamingFbank"]


class Fbank(sb_features.Fbank):
    """SpeechBrain's :class:`~speechbrain.lobes.features.Fbank` with its per-utterance dB floor optional.

    Arguments
    ---------
    top_db : float, optional
        Log-energies are floored at ``top_db`` dB below the utterance's
        maximum (SpeechBrain's 80 by default). None: no floor, so that a
        frame's features depend on its own window only (streaming models).
    **kwargs
        SpeechBrain's ``Fbank`` arguments.
    """

    def __init__(self, top_db: Optional[float] = 80.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_db = top_db
        # max(x, max(x) − ∞) = x: no floor.
        self.compute_fbanks.top_db = float("inf") if top_db is None else float(top_db)


class StreamingFbank:
    """The frames of a :class:`Fbank` (``top_db=None``) computed as the audio arrives.

    Each call takes the next samples (``[batch, samples]``, any number) and
    returns the frames that are now complete; :meth:`finish` returns the
    rest, as the whole recording's centred STFT pads its end.  The frames
    are those of ``fbank(whole_recording)``: frame ``i`` is centred on sample
    ``i·hop`` and ``1 + samples // hop`` frames come out in all.

    Arguments
    ---------
    fbank : Fbank
        The model's features, without the per-utterance floor and without
        deltas or context windows (both look at later frames).
    """

    def __init__(self, fbank: torch.nn.Module) -> None:
        if getattr(fbank, "deltas", False) or getattr(fbank, "context", False):
            raise ValueError("streamed features cannot have deltas or a context window (they look ahead)")
        if not (isinstance(fbank, Fbank) and fbank.top_db is None):
            raise ValueError(
                "streamed features need a Fbank whose frames depend on their own window only: "
                "hieradist_lobes.features.Fbank with top_db: null (this model's features are floored per "
                "utterance; train a streaming model with a streaming overlay, e.g. hparams/synth/cif_streaming.yaml)")
        self.fbank = fbank
        stft = fbank.compute_STFT
        if stft.pad_mode != "constant" or not stft.center:
            raise ValueError(f"streamed features assume a centred, zero-padded STFT; got center={stft.center}, "
                             f"pad_mode={stft.pad_mode}")
        self.hop = int(stft.hop_length)
        self.n_fft = int(stft.n_fft)
        # The same STFT reading windows as they are (the buffer carries the centring's zeros itself).
        self._windows = copy.copy(stft)
        self._windows.center = False
        self._buffer: Optional[torch.Tensor] = None
        self.finished = False

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        """The frames completed by ``samples`` (``[batch, new frames, n_mels]``, possibly 0 frames)."""
        if self.finished:
            raise RuntimeError("this stream has finished; start a new one for new audio")
        if samples.dim() != 2:
            raise ValueError(f"samples must be [batch, samples], got {tuple(samples.shape)}")
        samples = samples.float()
        if self._buffer is None:
            # The centred STFT's zeros before the first sample.
            self._buffer = samples.new_zeros(samples.shape[0], self.n_fft // 2)
        self._buffer = torch.cat([self._buffer, samples], dim=1)
        return self._frames()

    def finish(self) -> torch.Tensor:
        """The last frames, with the centred STFT's zeros after the last sample."""
        if self._buffer is None:
            raise RuntimeError("no audio was given to this stream")
        if self.finished:
            raise RuntimeError("this stream has already finished")
        self._buffer = torch.nn.functional.pad(self._buffer, (0, self.n_fft // 2))
        frames = self._frames()
        self.finished = True
        return frames

    def _frames(self) -> torch.Tensor:
        buffer = self._buffer
        count = (buffer.shape[1] - self.n_fft) // self.hop + 1 if buffer.shape[1] >= self.n_fft else 0
        if count <= 0:
            return buffer.new_zeros(buffer.shape[0], 0, self.fbank.compute_fbanks.n_mels)
        used = buffer[:, : (count - 1) * self.hop + self.n_fft]
        frames = self.fbank.compute_fbanks(spectral_magnitude(self._windows(used)))
        self._buffer = buffer[:, count * self.hop:]
        return frames
