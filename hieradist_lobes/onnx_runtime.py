"""Decode an ONNX export (:mod:`hieradist_lobes.onnx_export`) with onnxruntime and NumPy only.

This module imports no torch (nor SpeechBrain): a deployment needs ``numpy``,
``onnxruntime`` and ``soundfile``::

    from hieradist_lobes.onnx_runtime import load_onnx_folder
    asr = load_onnx_folder("results/synth/cif/onnx")
    asr.transcribe_file("utt.wav")       # the text CIFASR gives with greedy decoding

A CIF export is decoded as :class:`~hieradist_lobes.inference.CIFASR` decodes
with ``beam_size=1`` and the decoder alone (``ctc_weight_decode=0``): one token
per fire, ``<eos>`` only at the last fire, the leftover weight firing when it
reaches the tail threshold.  A CTC/attention export is decoded greedily with
its CTC head (best class per frame, repeats merged, blanks dropped).
Recordings are read at the model's sample rate (no resampling here: a file at
another rate is refused, naming both rates) and mixed down to mono.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from hieradist_lobes.text import join_labels

__all__ = ["ONNXCIFASR", "ONNXCTCASR", "load_onnx_folder", "integrate_and_fire", "power_spectrogram", "run_graph"]

ONNX_MODEL_FILE = "onnx_model.json"


def power_spectrogram(signal: np.ndarray, window: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """``|STFT|²`` (``[frames, n_fft/2 + 1]``, float32) of a mono signal, as the models' centred, zero-padded
    STFT computes it: frame ``i`` is centred on sample ``i·hop_length``, ``1 + samples // hop_length`` frames.

    Example
    -------
    >>> power_spectrogram(np.ones(1600, dtype=np.float32), np.hanning(400), 400, 160).shape
    (11, 201)
    """
    half = n_fft // 2
    padded = np.pad(np.asarray(signal, dtype=np.float64), (half, half))
    count = 1 + (padded.shape[0] - n_fft) // hop_length
    starts = np.arange(count)[:, None] * hop_length + np.arange(n_fft)[None, :]
    spectrum = np.fft.rfft(padded[starts] * window[None, :], n=n_fft, axis=1)
    return (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)


def integrate_and_fire(alphas: np.ndarray, hidden: np.ndarray, threshold: float = 1.0,
                       tail_threshold: Optional[float] = None, eps: float = 1e-4) -> np.ndarray:
    """The fired vectors (``[N, dim]``) of one utterance, decided as
    :func:`hieradist_lobes.cif.cif_fire` decides them (float64 cumulative sums,
    ``F_t = ⌊(S_t + ε)/θ⌋``), one frame at a time.

    Example
    -------
    >>> fired = integrate_and_fire(np.array([0.4, 0.4, 0.4, 2.0, 0.3]), np.arange(5.0)[:, None], tail_threshold=0.25)
    >>> [round(float(value), 4) for value in fired[:, 0]]
    [0.8, 2.8, 3.0, 3.6]
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    cumulative = np.cumsum(alphas)
    done = np.floor((cumulative + eps) / threshold).astype(np.int64)
    fired: List[np.ndarray] = []
    partial = np.zeros(hidden.shape[1], dtype=np.float64)
    previous_sum, previous_done = 0.0, 0
    for t in range(alphas.shape[0]):
        completed = int(done[t] - previous_done)
        if completed == 0:
            partial = partial + alphas[t] * hidden[t]
        else:
            # What the fire in progress lacks, then whole fires inside this frame, then the start of the next.
            fired.append(partial + ((previous_done + 1) * threshold - previous_sum) * hidden[t])
            fired.extend(threshold * hidden[t] for _ in range(completed - 1))
            partial = (cumulative[t] - done[t] * threshold) * hidden[t]
        previous_sum, previous_done = cumulative[t], int(done[t])
    leftover = (cumulative[-1] - done[-1] * threshold) if alphas.shape[0] else 0.0
    if tail_threshold is not None and leftover >= tail_threshold and leftover > 0:
        fired.append(partial / leftover * threshold)
    if not fired:
        return np.zeros((0, hidden.shape[1]), dtype=np.float32)
    return np.stack(fired).astype(np.float32)


def run_graph(session, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """``session.run`` with the feeds the graph takes (the export drops an input the model does not
    read, as the lengths of a model normalised with global statistics)."""
    names = {graph_input.name for graph_input in session.get_inputs()}
    return session.run(None, {name: value for name, value in feeds.items() if name in names})


class _ONNXModel:
    """What both kinds of export share: the configuration, the STFT, reading audio, the encoder session."""

    def __init__(self, folder: str, config: Dict[str, object], threads: Optional[int] = None) -> None:
        import onnxruntime

        self.folder, self.config = folder, config
        self.labels: List[str] = list(config["labels"])
        features = config["features"]
        self.sample_rate = int(features["sample_rate"])
        self.n_fft, self.hop_length = int(features["n_fft"]), int(features["hop_length"])
        self.window = np.load(os.path.join(folder, "stft_window.npy")).astype(np.float64)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self._options = options
        self.encoder = onnxruntime.InferenceSession(os.path.join(folder, "encoder.onnx"), options,
                                                    providers=["CPUExecutionProvider"])

    def read_audio(self, path: str) -> np.ndarray:
        """A mono float32 signal at the model's rate."""
        import soundfile

        if os.path.isdir(path):
            raise IsADirectoryError(f"{path} is a folder, not an audio file: give the audio file's path")
        if not os.path.exists(path):
            raise FileNotFoundError(f"audio file {path} does not exist")
        signal, rate = soundfile.read(path, dtype="float32", always_2d=True)
        if rate != self.sample_rate:
            raise ValueError(f"{path} is at {rate} Hz; this model takes {self.sample_rate} Hz: resample it first")
        if signal.shape[0] == 0:
            raise ValueError(f"{path} holds no audio samples")
        return signal.mean(axis=1)

    def spectrogram(self, signal: np.ndarray) -> np.ndarray:
        """``[1, frames, n_fft/2 + 1]``: the encoder graph's input."""
        return power_spectrogram(signal, self.window, self.n_fft, self.hop_length)[None]

    def run_encoder(self, signal: np.ndarray) -> List[np.ndarray]:
        """The encoder graph's outputs for one recording."""
        return run_graph(self.encoder, {"spectrogram": self.spectrogram(signal),
                                        "lengths": np.ones(1, dtype=np.float32)})

    def text(self, tokens: List[int]) -> str:
        return join_labels([self.labels[token] for token in tokens], str(self.config["unit"]))

    def transcribe_file(self, path: str) -> str:
        """The transcription of one audio file, decoded whole."""
        return self.text(self.decode_signal(self.read_audio(path)))

    def decode_signal(self, signal: np.ndarray) -> List[int]:
        raise NotImplementedError


class ONNXCIFASR(_ONNXModel):
    """A CIF model's export: encoder and CIF weights in onnxruntime, integrate-and-fire in NumPy,
    greedy decoding with one onnxruntime decoder step per fire."""

    def __init__(self, folder: str, config: Dict[str, object], threads: Optional[int] = None) -> None:
        import onnxruntime

        super().__init__(folder, config, threads)
        self.decoder = onnxruntime.InferenceSession(os.path.join(folder, "decoder_step.onnx"), self._options,
                                                    providers=["CPUExecutionProvider"])

    def encode(self, signal: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(encoded [T, d], alphas [T])`` of one recording."""
        encoded, alphas = self.run_encoder(signal)
        return encoded[0], alphas[0]

    def fire(self, signal: np.ndarray) -> np.ndarray:
        """The CIF's fired vectors ``[N, d]`` of one recording (free-running, with the tail fire)."""
        encoded, alphas = self.encode(signal)
        cif = self.config["cif"]
        return integrate_and_fire(alphas, encoded, cif["threshold"], cif["tail_threshold"], cif["fire_eps"])

    def decode_signal(self, signal: np.ndarray) -> List[int]:
        """Token indices of one recording (greedy, one token per fire, ``<eos>`` only at the last)."""
        fired = self.fire(signal)
        shape = self.config["decoder"]
        cache = np.zeros((shape["layers"], 1, shape["heads"], 0, shape["head_size"]), dtype=np.float32)
        keys, values = cache, cache.copy()
        bos, eos = int(self.config["bos_index"]), int(self.config["eos_index"])
        blocked = [int(self.config["blank_index"]), bos]
        previous_token, previous_fired = bos, np.zeros((1, fired.shape[1]), dtype=np.float32)
        tokens: List[int] = []
        for step in range(fired.shape[0]):
            logits, keys, values = self.decoder.run(None, {
                "previous_token": np.array([previous_token], dtype=np.int64), "fired": fired[step:step + 1],
                "previous_fired": previous_fired, "position": np.array([float(step)], dtype=np.float32),
                "past_keys": keys, "past_values": values})
            scores = logits[0].astype(np.float64)
            scores[blocked] = -np.inf
            if step < fired.shape[0] - 1:
                scores[eos] = -np.inf
            token = int(np.argmax(scores))
            if token == eos:
                break
            tokens.append(token)
            previous_token, previous_fired = token, fired[step:step + 1]
        return tokens


class ONNXCTCASR(_ONNXModel):
    """A CTC/attention model's export: the encoder and CTC head in onnxruntime, greedy CTC decoding."""

    def decode_signal(self, signal: np.ndarray) -> List[int]:
        """Token indices of one recording: best class per frame, repeats merged, blank, bos and eos dropped."""
        (logprobs,) = self.run_encoder(signal)
        best = np.argmax(logprobs[0], axis=-1)
        dropped = {int(self.config["blank_index"]), int(self.config["bos_index"]), int(self.config["eos_index"])}
        tokens, previous = [], None
        for index in best.tolist():
            if index != previous and index not in dropped:
                tokens.append(int(index))
            previous = index
        return tokens


def load_onnx_folder(folder: str, threads: Optional[int] = None) -> _ONNXModel:
    """The runtime of an ONNX export: :class:`ONNXCIFASR` or :class:`ONNXCTCASR`
    (``threads``: onnxruntime's threads per graph; default: its own choice, every core)."""
    path = os.path.join(folder, ONNX_MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} is not an ONNX export (no {ONNX_MODEL_FILE}); make one with "
                                "python -m hieradist_lobes.onnx_export MODEL_FOLDER OUTPUT_FOLDER")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    kinds = {"CIF": ONNXCIFASR, "CTC": ONNXCTCASR}
    if config.get("system") not in kinds:
        raise ValueError(f"{path}: unknown system {config.get('system')!r} (expected CIF or CTC)")
    return kinds[config["system"]](folder, config, threads)
