"""Streaming CIF recognition: audio in as it arrives, tokens out as they fire.

A model trained with dynamic chunks (``hparams/synth/cif_streaming.yaml``) is
run chunk by chunk, each stage carrying its state across chunk boundaries:

1. filterbank frames from the samples so far (:class:`~hieradist_lobes.features.StreamingFbank`),
   normalised with the training's global statistics;
2. the encoder, one chunk at a time with each layer's cached left context
   (:meth:`~hieradist_lobes.conformer.PooledConformerEncoder.forward_streaming`);
3. the CIF weights of the chunk (the predictor's convolution sees the previous
   chunk's frames, nothing past its own), then integrate-and-fire carrying the
   accumulated weight and the partial vector (:func:`~hieradist_lobes.cif.cif_fire_chunk`);
4. one decoder step per fire, with the decoder's key/value cache.

At the end of the stream the last, shorter chunk is encoded (never dropped),
and leftover weight ≥ the tail threshold fires the last token
(:func:`~hieradist_lobes.cif.cif_flush`).  Decoding is greedy, as
:func:`~hieradist_lobes.cif_decoder.cif_beam_search` with ``beam_size=1``:
``<eos>`` may only win at the last fire, which a stream knows only at its
end, so a fire whose best class is ``<eos>`` holds its best other token until
the next fire (then it is emitted) or the end (then it was the end).  The
tokens are those of the same model decoding the whole recording at once with
the same chunked attention (``CIFASR.decode_batch(..., dynchunktrain_config=...)``).

:class:`~hieradist_lobes.inference.CIFASR` wraps this in SpeechBrain's
streaming interface (``make_streaming_context``, ``transcribe_chunk``,
``transcribe_file_streaming``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig

from hieradist_lobes.cif import CIFState, cif_fire_chunk, cif_flush
from hieradist_lobes.cif_decoder import DecoderCache
from hieradist_lobes.conformer import EncoderStreamingContext
from hieradist_lobes.features import StreamingFbank

__all__ = ["CIFStreamingContext", "make_streaming_context", "stream_tokens"]


@dataclass
class CIFStreamingContext:
    """Everything one stream carries from chunk to chunk (one recording; batch 1)."""

    config: DynChunkTrainConfig
    features: StreamingFbank
    encoder: EncoderStreamingContext
    cif_state: Optional[CIFState] = None
    #: The last encoder frames, the CIF weight predictor's left context.
    cif_left: Optional[torch.Tensor] = None
    decoder_cache: Optional[DecoderCache] = None
    previous_token: Optional[int] = None
    #: The latest fire's best token other than ``<eos>``, when ``<eos>`` scored above it.
    held: Optional[int] = None
    #: Every token emitted so far, and the audio received (seconds) when each was emitted.
    tokens: List[int] = field(default_factory=list)
    emitted_at: List[float] = field(default_factory=list)
    samples: int = 0
    finished: bool = False


def make_streaming_context(model: torch.nn.Module, config: DynChunkTrainConfig) -> CIFStreamingContext:
    """A blank context for :func:`stream_tokens` (``model``: a :class:`~hieradist_lobes.models.CIFModel`)."""
    if config is None or config.chunk_size is None or int(config.chunk_size) < 1:
        raise ValueError(f"streaming needs a chunk size of at least 1 encoder frame, got {config}")
    if getattr(model.normalize, "norm_type", "global") != "global":
        raise ValueError(
            f"this model normalises each utterance with its own statistics (norm_type: {model.normalize.norm_type}), "
            "which a stream does not have until it ends: streaming needs a model trained with global "
            "normalisation and dynamic chunks (e.g. hparams/synth/cif_streaming.yaml)")
    return CIFStreamingContext(config=config, features=StreamingFbank(model.compute_features),
                               encoder=model.enc.make_streaming_context(config))


@torch.no_grad()
def stream_tokens(model: torch.nn.Module, context: CIFStreamingContext, samples: torch.Tensor, sample_rate: int,
                  bos_index: int, eos_index: int, blocked: Sequence[int] = (), final: bool = False) -> List[int]:
    """Feed the next ``samples`` (``[1, samples]``, any number, 0 included) of a stream; returns the tokens
    emitted by them (with ``final``, also those of the end of the stream).

    Arguments
    ---------
    model : CIFModel
        In eval mode.
    context : CIFStreamingContext
        From :func:`make_streaming_context`; updated in place.
    samples : torch.Tensor
        The next audio samples at the model's rate.
    sample_rate : int
        To time the emissions (``context.emitted_at``).
    bos_index, eos_index : int
    blocked : sequence of int
        Classes never emitted (blank, bos).
    final : bool
        The stream ends after these samples: the last chunk is encoded and the leftover weight may fire.
    """
    if context.finished:
        raise RuntimeError("this stream has ended; make a new context for a new stream")
    if samples.dim() == 1:
        samples = samples.unsqueeze(0)
    if samples.dim() != 2 or samples.shape[0] != 1:
        raise ValueError(f"a stream takes [1, samples] (one recording at a time), got {tuple(samples.shape)}")
    if context.samples == 0 and samples.shape[1] == 0 and final:
        raise ValueError("the stream ended before any audio was given")
    parameters = next(model.parameters())
    samples = samples.to(device=parameters.device, dtype=torch.float32)
    context.samples += samples.shape[1]
    arrived = context.samples / float(sample_rate)

    feats = context.features(samples)
    if final:
        feats = torch.cat([feats, context.features.finish()], dim=1)
    feats = model.normalize(feats, torch.ones(1, device=feats.device))
    encoded = model.enc.forward_streaming(feats, context.encoder, final=final)

    emitted: List[int] = []
    cif = model.cif
    reach = cif.conv.padding[0]
    chunk = int(context.config.chunk_size)
    for start in range(0, encoded.shape[1], chunk):
        piece = encoded[:, start:start + chunk]
        alphas = cif.stream_alphas(piece, context.cif_left)
        left = context.cif_left if context.cif_left is not None else piece.new_zeros(1, reach, piece.shape[2])
        context.cif_left = torch.cat([left, piece], dim=1)[:, left.shape[1] + piece.shape[1] - reach:]
        fires, context.cif_state = cif_fire_chunk(alphas, piece, context.cif_state, cif.threshold, cif.fire_eps)
        for index in range(int(fires.lengths[0])):
            emitted.extend(_decode_fire(model.dec, context, fires.fired[:, index], bos_index, eos_index, blocked))
    if final:
        if context.cif_state is not None:
            tail = cif_flush(context.cif_state, cif.tail_threshold, cif.threshold, cif.fire_eps)
            if int(tail.lengths[0]):
                emitted.extend(_decode_fire(model.dec, context, tail.fired[:, 0], bos_index, eos_index, blocked))
        # A token still held belonged to the last fire, whose best class was <eos>: the end.
        context.held = None
        context.finished = True
    context.tokens.extend(emitted)
    context.emitted_at.extend([arrived] * len(emitted))
    return emitted


def _decode_fire(decoder: torch.nn.Module, context: CIFStreamingContext, fired: torch.Tensor, bos_index: int,
                 eos_index: int, blocked: Sequence[int]) -> List[int]:
    """One decoder step for one fire; the tokens this fire makes certain (0, 1 or 2)."""
    emitted = []
    if context.held is not None:
        # Another fire came: the held fire was not the last, so its token stands.
        emitted.append(context.held)
        context.previous_token, context.held = context.held, None
    previous = bos_index if context.previous_token is None else context.previous_token
    logits, context.decoder_cache = decoder.step(torch.tensor([previous], device=fired.device), fired,
                                                 context.decoder_cache)
    logprobs = torch.log_softmax(logits.float(), dim=-1)[0]
    if blocked:
        logprobs[list(blocked)] = float("-inf")
    best = int(logprobs.argmax())
    if best != eos_index:
        emitted.append(best)
        context.previous_token = best
    else:
        logprobs[eos_index] = float("-inf")
        context.held = int(logprobs.argmax())
    return emitted
