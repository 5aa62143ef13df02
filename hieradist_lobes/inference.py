"""Inference with trained CIF models: :class:`CIFASR`.

Every CIF model folder that training exports (``hyperparams.yaml``,
``model.ckpt``, ``normalize.ckpt``, ``tokenizer.ckpt``) loads with::

    from hieradist_lobes.inference import CIFASR
    asr = CIFASR.from_hparams(source="results/synth/cif/model", savedir="results/synth/cif/model")
    asr.transcribe_file("utt.wav")                  # 'the garden could travel'
    asr.transcribe_file_with_timestamps("utt.wav")  # [('the', 0.32), ('garden', 0.56), ...]

Decoding is the beam search over the CIF fires
(:func:`~hieradist_lobes.cif_decoder.cif_beam_search`, ``beam_size`` of the
folder's YAML; the CIF module's ``tail_threshold`` decides whether leftover
weight at the end fires one more token); each fire is one token and
``<eos>`` can only come at the last fire, so nothing is cut.  Recordings
longer than ``CIFASR.max_segment_seconds`` (about twice the median training
utterance, recorded in the folder's ``info.json``, at most 30 s; or the
``max_segment_seconds`` argument) are cut at pauses
(:mod:`hieradist_lobes.segmentation`) and decoded in segments whose tokens
and times are joined.  ``ctc_weight_decode`` (the folder's YAML, or an
override) adds the CTC head's prefix scores to the beam search (joint
CTC/attention decoding; 0: the decoder alone).  Shallow fusion with a token LM
trained by ``recipes/train_lm.py``::

    CIFASR.from_hparams(source=folder, savedir=folder,
                        overrides={"lm_folder": "results/synth/lm/model", "lm_weight": 0.2})

Token timestamps come from the fires: token ``k`` is stamped with the start
time of the encoder frame at which fire ``k`` happened.  A token fires when
its weight is complete, so the stamp falls near the token's end (within one
encoder frame, 80 ms at 8× subsampling of 10 ms features).
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import torch
from speechbrain.inference.interfaces import Pretrained

from hieradist_lobes.cif import fire_times
from hieradist_lobes.export import read_info, verify_model_folder
from hieradist_lobes.hparams import check_hparams, hparam_rules
from hieradist_lobes.segmentation import silence_cuts


class CIFASR(Pretrained):
    """A CIF ASR model (encoder, CIF, decoder) ready to transcribe.

    Loaded with :meth:`from_hparams` from a model folder; see the module
    docstring.  ``self.mods.model`` is the
    :class:`~hieradist_lobes.models.CIFModel` (its ``encode`` and ``decode``
    are the training's); ``self.hparams`` the tokenizer, ``beam_size``,
    ``sample_rate``, ``lm_folder``, ``lm_weight`` and ``ctc_weight_decode``.
    """

    HPARAMS_NEEDED = ["tokenizer", "beam_size", "sample_rate"]
    #: Files longer than this (seconds) are transcribed in segments cut at pauses;
    #: :meth:`from_hparams` sets it from the training utterances (:func:`segment_seconds_for`).
    max_segment_seconds = 30.0
    MODULES_NEEDED = ["model"]

    @classmethod
    def from_hparams(cls, source, hparams_file: str = "hyperparams.yaml", **kwargs):
        """Load a model folder (see the module docstring); a local folder with
        a missing or corrupt file fails here, naming the folder and the file."""
        if os.path.isdir(str(source)):
            # The checkpoints are checked by the folder's CheckedPretrainer; the YAML is read before it exists.
            verify_model_folder(str(source), [hparams_file])
        asr = super().from_hparams(source, hparams_file=hparams_file, **kwargs)
        info = read_info(str(source)) if os.path.isfile(os.path.join(str(source), "info.json")) else {}
        if info.get("train_median_seconds"):
            asr.max_segment_seconds = segment_seconds_for(float(info["train_median_seconds"]))
        return asr

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Overrides given to from_hparams (beam_size, lm_weight, ...) get the training YAML's range checks.
        check_hparams({key: getattr(self.hparams, key) for key in hparam_rules() if hasattr(self.hparams, key)},
                      "CIFASR hyperparameters")
        self.tokenizer = self.hparams.tokenizer
        self.lm = None
        lm_folder = getattr(self.hparams, "lm_folder", None)
        if lm_folder:
            from hieradist_lobes.lm import load_lm

            self.lm = load_lm(lm_folder, expected_labels=self.tokenizer.labels(), device=self.device)

    def encode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """Encoder outputs (``batch × frames × d_model``) of a padded batch."""
        wavs, wav_lens = wavs.float().to(self.device), wav_lens.float().to(self.device)
        return self.mods.model.encode(wavs, wav_lens)

    def decode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor,
                     beam_size: Optional[int] = None) -> Tuple[List[List[int]], List[List[float]]]:
        """Token indices and their times (seconds) for a padded batch."""
        with torch.no_grad():
            encoded = self.encode_batch(wavs, wav_lens)
            hyps, fires = self.mods.model.decode(
                encoded, wav_lens.to(self.device), self.tokenizer, beam_size=int(beam_size or self.hparams.beam_size),
                lm=self.lm, lm_weight=float(getattr(self.hparams, "lm_weight", 0.0) or 0.0),
                ctc_weight=float(getattr(self.hparams, "ctc_weight_decode", 0.0) or 0.0),
            )
        times = fire_times(fires.fire_frames.cpu(), fires.fired_lengths.cpu(), self.frame_shift_seconds())
        return hyps, [[round(t, 3) for t in utterance[: len(hyp)]] for utterance, hyp in zip(times, hyps)]

    def frame_shift_seconds(self) -> float:
        """Seconds per encoder frame: the feature hop times the encoder's subsampling."""
        hop = self.mods.model.compute_features.compute_STFT.hop_length  # samples
        return hop / float(self.hparams.sample_rate) * self.mods.model.enc.subsampling

    def decode_signal(self, signal: torch.Tensor, max_segment_seconds: Optional[float] = None,
                      segments_per_batch: int = 8) -> Tuple[List[int], List[float]]:
        """Token indices and times (seconds) of one whole recording.

        A recording longer than ``max_segment_seconds`` (default: the class
        attribute :attr:`max_segment_seconds`) is cut at pauses
        (:func:`~hieradist_lobes.segmentation.silence_cuts`), the segments
        are decoded in batches, and their tokens joined with times offset by
        each segment's start.
        """
        limit = float(max_segment_seconds or self.max_segment_seconds)
        rate = int(self.hparams.sample_rate)
        signal = signal.reshape(-1)
        if signal.numel() == 0:
            raise ValueError("the signal holds no audio samples")
        spans = silence_cuts(signal, rate, max_segment_seconds=limit)
        tokens: List[int] = []
        times: List[float] = []
        for first in range(0, len(spans), segments_per_batch):
            group = spans[first:first + segments_per_batch]
            pieces = [signal[start:end] for start, end in group]
            longest = max(piece.shape[0] for piece in pieces)
            wavs = torch.stack([torch.nn.functional.pad(piece, (0, longest - piece.shape[0])) for piece in pieces])
            wav_lens = torch.tensor([piece.shape[0] / longest for piece in pieces])
            hyps, hyp_times = self.decode_batch(wavs, wav_lens)
            for (start, _), hyp, stamps in zip(group, hyps, hyp_times):
                tokens.extend(hyp)
                times.extend(round(t + start / rate, 3) for t in stamps)
        return tokens, times

    def transcribe_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> Tuple[List[str], List[List[int]]]:
        """Transcribe a padded batch: (texts, token indices), as EncoderDecoderASR."""
        hyps, _ = self.decode_batch(wavs, wav_lens)
        return [self.tokenizer.decode_ids(hyp) for hyp in hyps], hyps

    def transcribe_file(self, path: str, max_segment_seconds: Optional[float] = None, **kwargs) -> str:
        """Transcribe one audio file (resampled to the model's rate), whole:
        a long recording is decoded in segments cut at pauses (:meth:`decode_signal`)."""
        tokens, _ = self.decode_signal(self._load_file(path, **kwargs), max_segment_seconds)
        return self.tokenizer.decode_ids(tokens)

    def token_timestamps(self, path: str, max_segment_seconds: Optional[float] = None,
                         **kwargs) -> List[Tuple[str, float]]:
        """``(token, seconds)`` for each output token of one file."""
        tokens, times = self.decode_signal(self._load_file(path, **kwargs), max_segment_seconds)
        return [(self.tokenizer.ind2lab[int(i)], t) for i, t in zip(tokens, times)]

    def _load_file(self, path: str, **kwargs) -> torch.Tensor:
        # SpeechBrain's loader ends a missing local file with soundfile's "System error."
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path} is a folder, not an audio file: give the audio file's path")
        if "://" not in path and not os.path.exists(path):
            raise FileNotFoundError(f"audio file {path} does not exist")
        signal = self.load_audio(path, **kwargs)
        if signal.numel() == 0:
            raise ValueError(f"{path} holds no audio samples")
        return signal

    def transcribe_file_with_timestamps(self, path: str, max_segment_seconds: Optional[float] = None,
                                        **kwargs) -> List[Tuple[str, float]]:
        """``(word, seconds)`` per word of one file: wordpieces are merged,
        a word takes the time of its first piece."""
        return merge_pieces(self.token_timestamps(path, max_segment_seconds, **kwargs))

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> Tuple[List[str], List[List[int]]]:
        return self.transcribe_batch(wavs, wav_lens)


def segment_seconds_for(train_median_seconds: float) -> float:
    """The longest segment to decode: about twice the model's typical training
    utterance, between 2 and 30 seconds.

    The decoder attends to every earlier token and the encoder to the whole
    input: on inputs far longer than its training utterances a model degrades
    (measured on the built-in corpus, median 2.4 s: 69 % token error rate on
    52 s decoded whole, 64 % in 30 s segments, 56 % in 5 s segments, 41 % one
    utterance at a time; see the README).

    Example
    -------
    >>> segment_seconds_for(2.36), segment_seconds_for(14.0), segment_seconds_for(0.5)
    (4.72, 28.0, 2.0)
    """
    return round(min(30.0, max(2.0, 2.0 * train_median_seconds)), 2)


def merge_pieces(pieces: Sequence[Tuple[str, float]], continuation: str = "##") -> List[Tuple[str, float]]:
    """Merge ``##`` wordpieces into words, keeping each word's first time.

    Example
    -------
    >>> merge_pieces([("play", 0.1), ("##ing", 0.3), ("now", 0.5)])
    [('playing', 0.1), ('now', 0.5)]
    """
    words: List[Tuple[str, float]] = []
    for piece, time in pieces:
        if piece.startswith(continuation) and words:
            words[-1] = (words[-1][0] + piece[len(continuation):], words[-1][1])
        else:
            words.append((piece, time))
    return words
