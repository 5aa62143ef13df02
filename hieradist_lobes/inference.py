"""Inference with trained CIF models: :class:`CIFASR`.

Every CIF model folder that training exports (``hyperparams.yaml``,
``model.ckpt``, ``normalize.ckpt``, ``tokenizer.ckpt``) loads with::

    from hieradist_lobes.inference import CIFASR
    asr = CIFASR.from_hparams(source="results/synth/cif/model", savedir="results/synth/cif/model")
    asr.transcribe_file("utt.wav")                  # 'the garden could travel'
    asr.transcribe_file_with_timestamps("utt.wav")  # [('the', 0.21, 0.33), ('garden', 0.33, 0.67), ...]

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

A model trained with dynamic chunks (``hparams/synth/cif_streaming.yaml``) also
streams, in SpeechBrain's ``StreamingASR`` interface (:mod:`hieradist_lobes.streaming`)::

    context = asr.make_streaming_context()
    for samples in pieces_of_audio:
        print(asr.transcribe_chunk(context, samples)[0], end="")
    asr.transcribe_chunk(context, torch.zeros(0), end_of_stream=True)
    asr.final_transcript(context)       # the folder's beam search with CTC scores, at the end

Timestamps come from the CIF weights (:func:`~hieradist_lobes.cif.token_spans`):
token ``k`` integrates the weight between ``k`` and ``k + 1``; it ends where
the accumulated weight reaches ``k + 1`` (where it fires) and starts where it
reaches ``k +`` :data:`TOKEN_ONSET` (the first token :data:`FIRST_TOKEN_ONSET`:
silence gives it weight from the first frame), placed within the encoder frame
by how far into its weight the level falls.  A word runs from its first wordpiece's start
to its last's end.  Their error against the synthesiser's own word times is
measured by ``benchmarks/timestamp_benchmark.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import os
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig

from hieradist_lobes.cif import token_spans
from hieradist_lobes.export import read_info, verify_model_folder
from hieradist_lobes.hparams import check_hparams, hparam_rules
from hieradist_lobes.segmentation import silence_cuts
from hieradist_lobes.streaming import CIFStreamingContext, FinalPass, make_streaming_context, stream_tokens

#: Where a token starts: the accumulated CIF weight at ``k + TOKEN_ONSET`` thresholds
#: (:func:`~hieradist_lobes.cif.token_spans`), chosen on the built-in corpus's validation speakers by
#: ``benchmarks/timestamp_benchmark.py``.
TOKEN_ONSET = 0.0
#: Where the first token starts: the silence before the speech gives it weight from the first frame.
FIRST_TOKEN_ONSET = 0.6


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

    def encode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor,
                     dynchunktrain_config: Optional[DynChunkTrainConfig] = None) -> torch.Tensor:
        """Encoder outputs (``batch × frames × d_model``) of a padded batch
        (``dynchunktrain_config``: with chunked attention, as a stream sees it)."""
        wavs, wav_lens = wavs.float().to(self.device), wav_lens.float().to(self.device)
        return self.mods.model.encode(wavs, wav_lens, dynchunktrain_config=dynchunktrain_config)

    def decode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor, beam_size: Optional[int] = None,
                     dynchunktrain_config: Optional[DynChunkTrainConfig] = None
                     ) -> Tuple[List[List[int]], List[List[Tuple[float, float]]]]:
        """Token indices and each token's start and end (seconds) for a padded batch
        (``dynchunktrain_config``: decoded whole with the chunked attention a stream has)."""
        hyps, fires = self.decode_fires(wavs, wav_lens, beam_size, dynchunktrain_config)
        shift = self.frame_shift_seconds()
        threshold = float(self.mods.model.cif.threshold)
        # The last encoder frame can reach past the audio's end: times stop at it.
        durations = (wav_lens.float().cpu() * wavs.shape[-1] / float(self.hparams.sample_rate)).tolist()
        spans = [token_spans(alphas, len(hyp), shift, threshold=threshold, onset=TOKEN_ONSET,
                             first_onset=FIRST_TOKEN_ONSET)
                 for alphas, hyp in zip(fires.alphas.cpu(), hyps)]
        return hyps, [[(round(min(start, limit), 3), round(min(end, limit), 3)) for start, end in utterance]
                      for utterance, limit in zip(spans, durations)]

    def decode_fires(self, wavs: torch.Tensor, wav_lens: torch.Tensor, beam_size: Optional[int] = None,
                     dynchunktrain_config: Optional[DynChunkTrainConfig] = None):
        """Token indices and the CIF's output (its weights, fires) for a padded batch."""
        with torch.no_grad():
            encoded = self.encode_batch(wavs, wav_lens, dynchunktrain_config)
            return self.mods.model.decode(
                encoded, wav_lens.to(self.device), self.tokenizer, beam_size=int(beam_size or self.hparams.beam_size),
                lm=self.lm, lm_weight=float(getattr(self.hparams, "lm_weight", 0.0) or 0.0),
                ctc_weight=float(getattr(self.hparams, "ctc_weight_decode", 0.0) or 0.0),
                dynchunktrain_config=dynchunktrain_config,
            )

    def frame_shift_seconds(self) -> float:
        """Seconds per encoder frame: the feature hop times the encoder's subsampling."""
        hop = self.mods.model.compute_features.compute_STFT.hop_length  # samples
        return hop / float(self.hparams.sample_rate) * self.mods.model.enc.subsampling

    def decode_signal(self, signal: torch.Tensor, max_segment_seconds: Optional[float] = None,
                      segments_per_batch: int = 8) -> Tuple[List[int], List[Tuple[float, float]]]:
        """Token indices and their start and end (seconds) of one whole recording.

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
        times: List[Tuple[float, float]] = []
        for first in range(0, len(spans), segments_per_batch):
            group = spans[first:first + segments_per_batch]
            pieces = [signal[start:end] for start, end in group]
            longest = max(piece.shape[0] for piece in pieces)
            wavs = torch.stack([torch.nn.functional.pad(piece, (0, longest - piece.shape[0])) for piece in pieces])
            wav_lens = torch.tensor([piece.shape[0] / longest for piece in pieces])
            hyps, hyp_spans = self.decode_batch(wavs, wav_lens)
            for (start, _), hyp, token_times in zip(group, hyps, hyp_spans):
                offset = start / rate
                tokens.extend(hyp)
                times.extend((round(begin + offset, 3), round(end + offset, 3)) for begin, end in token_times)
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
                         **kwargs) -> List[Tuple[str, float, float]]:
        """``(token, start, end)`` (seconds) for each output token of one file."""
        tokens, times = self.decode_signal(self._load_file(path, **kwargs), max_segment_seconds)
        return [(self.tokenizer.ind2lab[int(i)], start, end) for i, (start, end) in zip(tokens, times)]

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
                                        **kwargs) -> List[Tuple[str, float, float]]:
        """``(word, start, end)`` (seconds) per word of one file: wordpieces are merged, a word runs from
        its first piece's start to its last piece's end."""
        return merge_pieces(self.token_timestamps(path, max_segment_seconds, **kwargs))

    def transcribe_batch_with_timestamps(self, wavs: torch.Tensor, wav_lens: torch.Tensor
                                         ) -> List[List[Tuple[str, float, float]]]:
        """``(word, start, end)`` per word of each recording of a padded batch (each decoded whole)."""
        hyps, spans = self.decode_batch(wavs, wav_lens)
        return [merge_pieces([(self.tokenizer.ind2lab[int(i)], start, end) for i, (start, end) in zip(hyp, times)])
                for hyp, times in zip(hyps, spans)]

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> Tuple[List[str], List[List[int]]]:
        return self.transcribe_batch(wavs, wav_lens)

    # ---- Streaming (SpeechBrain's StreamingASR interface; hieradist_lobes.streaming) ----

    def streaming_config(self) -> DynChunkTrainConfig:
        """The chunking the model was trained to stream with (its YAML's ``streaming_chunk_size``
        encoder frames, ``streaming_left_chunks`` chunks of left context)."""
        chunk = getattr(self.hparams, "streaming_chunk_size", None)
        if not chunk:
            raise ValueError(
                "this model was trained with full context and has no streaming chunk size: train one with "
                "dynamic chunks (e.g. hparams/synth/cif_streaming.yaml), or give a DynChunkTrainConfig")
        return DynChunkTrainConfig(int(chunk), getattr(self.hparams, "streaming_left_chunks", None))

    def chunk_samples(self, dynchunktrain_config: Optional[DynChunkTrainConfig] = None) -> int:
        """Audio samples per chunk (as SpeechBrain's ``StreamingASR.get_chunk_size_frames``)."""
        config = dynchunktrain_config or self.streaming_config()
        hop = int(self.mods.model.compute_features.compute_STFT.hop_length)
        return int(config.chunk_size) * self.mods.model.enc.subsampling * hop

    def make_streaming_context(self, dynchunktrain_config: Optional[DynChunkTrainConfig] = None,
                               final_pass: bool = True) -> CIFStreamingContext:
        """A blank context for one stream (default chunking: :meth:`streaming_config`).

        ``final_pass``: at the end of the stream, decode its fires again with the folder's beam
        search, CTC weight and LM (when they differ from greedy decoding with the decoder alone):
        :meth:`final_transcript`.
        """
        self.mods.model.eval()
        beam_size = int(self.hparams.beam_size)
        ctc_weight = float(getattr(self.hparams, "ctc_weight_decode", 0.0) or 0.0)
        lm_weight = float(getattr(self.hparams, "lm_weight", 0.0) or 0.0)
        second = None
        if final_pass and (beam_size > 1 or ctc_weight or (self.lm is not None and lm_weight)):
            second = FinalPass(beam_size=beam_size, ctc_weight=ctc_weight,
                               blank_index=self.tokenizer.get_blank_index(), lm=self.lm, lm_weight=lm_weight)
        return make_streaming_context(self.mods.model, dynchunktrain_config or self.streaming_config(), second)

    def final_transcript(self, context: CIFStreamingContext) -> str:
        """The transcript of an ended stream: its final pass (the folder's beam search with CTC prefix
        scores over all the stream's fires) if it had one, else the streamed text."""
        if context.final_tokens is None:
            raise RuntimeError("the stream has not ended: give its last audio with end_of_stream=True first")
        return self.tokenizer.decode_ids(context.final_tokens)

    def transcribe_chunk(self, context: CIFStreamingContext, chunk: torch.Tensor,
                         chunk_len: Optional[torch.Tensor] = None, end_of_stream: bool = False) -> List[str]:
        """Transcribe the next audio of a stream: the text it adds (a list of one string, as
        ``StreamingASR.transcribe_chunk``).

        ``chunk`` (``[1, samples]`` or ``[samples]``) may hold any number of samples; a whole
        chunk's tokens come out once its last sample (and the 10 ms the features look ahead)
        has arrived.  ``chunk_len``: the valid part of a zero-padded ``chunk``, relative.
        ``end_of_stream``: no more audio follows; the last, shorter chunk is decoded and
        leftover CIF weight may fire the last token.  Give it with the last audio, or with
        an empty chunk.
        """
        if chunk.dim() == 1:
            chunk = chunk.unsqueeze(0)
        if chunk_len is not None:
            chunk = chunk[:, : int(round(float(chunk_len.reshape(-1)[0]) * chunk.shape[1]))]
        emitted = stream_tokens(self.mods.model, context, chunk, int(self.hparams.sample_rate),
                                self.tokenizer.get_bos_index(), self.tokenizer.get_eos_index(),
                                blocked=[self.tokenizer.get_blank_index(), self.tokenizer.get_bos_index()],
                                final=end_of_stream)
        if not emitted:  # most pieces of audio complete no chunk
            return [""]
        before = self.tokenizer.decode_ids(context.tokens[: len(context.tokens) - len(emitted)])
        text = self.tokenizer.decode_ids(context.tokens)
        # Wordpieces may join the previous text ("play" + "##ing"): give what the text gained.
        return [text[len(before):] if text.startswith(before) else text]

    def transcribe_signal_streaming(self, signal: torch.Tensor, context: Optional[CIFStreamingContext] = None,
                                    piece_samples: Optional[int] = None) -> Iterator[str]:
        """Feed a recording (``[samples]``) to a stream in pieces of ``piece_samples`` (default: one chunk),
        then end the stream, yielding the text each piece adds (the last yield is the end's);
        ``context``: the stream (default: a new one, :meth:`make_streaming_context`), which then holds
        the tokens, their emission times and the final pass."""
        context = context if context is not None else self.make_streaming_context()
        step = int(piece_samples or self.chunk_samples(context.config))
        for start in range(0, signal.shape[0], step):
            yield self.transcribe_chunk(context, signal[start:start + step])[0]
        yield self.transcribe_chunk(context, signal[:0], end_of_stream=True)[0]

    def transcribe_file_streaming(self, path: str, dynchunktrain_config: Optional[DynChunkTrainConfig] = None,
                                  **kwargs) -> Iterator[str]:
        """Transcribe a file as a stream, one chunk of audio at a time, yielding the text each chunk adds
        (the last yield is the end of the stream's); ``"".join`` of them is the transcript."""
        signal = self._load_file(path, **kwargs)
        yield from self.transcribe_signal_streaming(signal, self.make_streaming_context(dynchunktrain_config))


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


def merge_pieces(pieces: Sequence[Tuple[str, float, float]], continuation: str = "##"
                 ) -> List[Tuple[str, float, float]]:
    """Merge ``##`` wordpieces into words: a word starts with its first piece and ends with its last.

    Example
    -------
    >>> merge_pieces([("play", 0.1, 0.2), ("##ing", 0.2, 0.35), ("now", 0.4, 0.6)])
    [('playing', 0.1, 0.35), ('now', 0.4, 0.6)]
    """
    words: List[Tuple[str, float, float]] = []
    for piece, start, end in pieces:
        if piece.startswith(continuation) and words:
            words[-1] = (words[-1][0] + piece[len(continuation):], words[-1][1], end)
        else:
            words.append((piece, start, end))
    return words
