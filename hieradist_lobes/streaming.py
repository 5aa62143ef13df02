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
(:func:`~hieradist_lobes.cif.cif_flush`).  The tokens come out greedily, as
:func:`~hieradist_lobes.cif_decoder.cif_beam_search` with ``beam_size=1``:
``<eos>`` may only win at the last fire, which a stream knows only at its
end, so a fire whose best class is ``<eos>`` holds its best other token until
the next fire (then it is emitted) or the end (then it was the end).  The
tokens are those of the same model decoding the whole recording at once with
the same chunked attention (``CIFASR.decode_batch(..., dynchunktrain_config=...)``).

A :class:`FinalPass` adds a second pass at the end of the stream: the beam
search over every fire of the stream, with the CTC head's prefix scores (and an
LM), which need the whole utterance's frames; ``context.final_tokens`` is then
the whole-file decoding with that beam search under the same chunks, while the
tokens streamed as they came stay the greedy first pass.

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
from hieradist_lobes.cif_decoder import DecoderCache, cif_beam_search
from hieradist_lobes.conformer import EncoderStreamingContext
from hieradist_lobes.features import StreamingFbank

__all__ = ["CIFStreamingContext", "FinalPass", "make_streaming_context", "stream_tokens"]


@dataclass
class FinalPass:
    """The decoding of the stream's final transcript, at its end (see the module docstring)."""

    beam_size: int = 1
    ctc_weight: float = 0.0
    blank_index: int = 0
    lm: Optional[torch.nn.Module] = None
    lm_weight: float = 0.0


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
    #: With a final pass: every fire so far and the CTC head's log-probabilities of every frame.
    final_pass: Optional[FinalPass] = None
    fired: List[torch.Tensor] = field(default_factory=list)
    ctc_logprobs: List[torch.Tensor] = field(default_factory=list)
    #: At the end of the stream: the final pass's tokens (the streamed tokens without a final pass).
    final_tokens: Optional[List[int]] = None


def make_streaming_context(model: torch.nn.Module, config: DynChunkTrainConfig,
                           final_pass: Optional[FinalPass] = None) -> CIFStreamingContext:
    """A blank context for :func:`stream_tokens` (``model``: a :class:`~hieradist_lobes.models.CIFModel`);
    ``final_pass``: decode the final transcript again at the end of the stream."""
    if config is None or config.chunk_size is None or int(config.chunk_size) < 1:
        raise ValueError(f"streaming needs a chunk size of at least 1 encoder frame, got {config}")
    if getattr(model.normalize, "norm_type", "global") != "global":
        raise ValueError(
            f"this model normalises each utterance with its own statistics (norm_type: {model.normalize.norm_type}), "
            "which a stream does not have until it ends: streaming needs a model trained with global "
            "normalisation and dynamic chunks (e.g. hparams/synth/cif_streaming.yaml)")
    return CIFStreamingContext(config=config, features=StreamingFbank(model.compute_features),
                               encoder=model.enc.make_streaming_context(config), final_pass=final_pass)


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
    chunk = int(context.config.chunk_size)
    for start in range(0, encoded.shape[1], chunk):
        piece = encoded[:, start:start + chunk]
        alphas, context.cif_left = cif.stream_alphas(piece, context.cif_left)
        fires, context.cif_state = cif_fire_chunk(alphas, piece, context.cif_state, cif.threshold, cif.fire_eps)
        if context.final_pass is not None:
            context.ctc_logprobs.append(torch.log_softmax(model.ctc_lin(piece), dim=-1))
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
        context.final_tokens = context.tokens + emitted
        if context.final_pass is not None and context.fired:
            context.final_tokens = _final_pass(model, context, bos_index, eos_index, blocked)
    context.tokens.extend(emitted)
    context.emitted_at.extend([arrived] * len(emitted))
    return emitted


def _decode_fire(decoder: torch.nn.Module, context: CIFStreamingContext, fired: torch.Tensor, bos_index: int,
                 eos_index: int, blocked: Sequence[int]) -> List[int]:
    """One decoder step for one fire; the tokens this fire makes certain (0, 1 or 2)."""
    emitted = []
    if context.final_pass is not None:
        context.fired.append(fired)
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


def _final_pass(model: torch.nn.Module, context: CIFStreamingContext, bos_index: int, eos_index: int,
                blocked: Sequence[int]) -> List[int]:
    """The beam search over every fire of the stream with the CTC head's prefix scores (and the LM),
    as :meth:`~hieradist_lobes.models.CIFModel.decode` does on the whole file."""
    final = context.final_pass
    fired = torch.stack(context.fired, dim=1)  # [1, fires, dim]
    ctc_logprobs = torch.cat(context.ctc_logprobs, dim=1)
    return cif_beam_search(model.dec, fired, torch.tensor([fired.shape[1]], device=fired.device), bos_index,
                           eos_index, beam_size=final.beam_size, blocked=blocked, lm=final.lm,
                           lm_weight=final.lm_weight, ctc_logprobs=ctc_logprobs,
                           ctc_lengths=torch.tensor([ctc_logprobs.shape[1]], device=fired.device),
                           ctc_weight=final.ctc_weight, blank_index=final.blank_index)[0]
