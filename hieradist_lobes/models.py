"""The two model classes, each with its one forward pass.

:class:`CTCAttentionModel` (multi-teacher KD: teachers and students) and
:class:`CIFModel` (CIF-HieraDist) own the order in which their modules run.
The training Brains (:mod:`hieradist_lobes.brains`), teacher inference into
the store (:mod:`hieradist_lobes.teachers`) and the inference interfaces
(``EncoderDecoderASR`` through :class:`ModelEncoder`, and
:class:`~hieradist_lobes.inference.CIFASR`) all call these methods, so a
change to the architecture's data flow is made once.

The modules themselves are declared in ``hparams/models/*.yaml``; the model
is the YAML's ``asr_model``, saved as ``model.ckpt``.

Example
-------
>>> import torch
>>> from speechbrain.lobes.features import Fbank
>>> from speechbrain.processing.features import InputNormalization
>>> from speechbrain.nnet.linear import Linear
>>> from speechbrain.nnet.embedding import Embedding
>>> from speechbrain.nnet.RNN import AttentionalRNNDecoder
>>> enc = torch.nn.Sequential(Linear(input_size=40, n_neurons=16), torch.nn.Tanh())
>>> model = CTCAttentionModel(
...     Fbank(n_mels=40), InputNormalization(), enc, Embedding(num_embeddings=6, embedding_dim=8),
...     AttentionalRNNDecoder("gru", "content", 16, 16, 1, enc_dim=16, input_size=8),
...     Linear(input_size=16, n_neurons=6), Linear(input_size=16, n_neurons=6))
>>> out = model(torch.randn(2, 8000), torch.tensor([1.0, 0.5]), torch.tensor([[1, 3, 4], [1, 5, 0]]))
>>> out.ctc_logprobs.shape[0], out.seq_logprobs.shape
(2, torch.Size([2, 3, 6]))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig

from hieradist_lobes.cif import CIFOutput
from hieradist_lobes.cif_decoder import cif_beam_search


@dataclass
class ASROutput:
    """What :meth:`CTCAttentionModel.forward` gives the objectives."""

    encoded: torch.Tensor
    ctc_logits: torch.Tensor
    ctc_logprobs: torch.Tensor
    seq_logits: torch.Tensor
    seq_logprobs: torch.Tensor
    wav_lens: torch.Tensor


class CTCAttentionModel(torch.nn.Module):
    """Joint CTC/attention ASR: features → normaliser → encoder, a CTC head on
    the encoder and an attentional decoder with its output head.

    Arguments
    ---------
    compute_features, normalize, enc, emb, dec, ctc_lin, seq_lin : torch.nn.Module
        SpeechBrain's Fbank, InputNormalization, encoder (e.g. CRDNN),
        embedding, ``AttentionalRNNDecoder`` and the two linear heads.
    """

    def __init__(self, compute_features: torch.nn.Module, normalize: torch.nn.Module, enc: torch.nn.Module,
                 emb: torch.nn.Module, dec: torch.nn.Module, ctc_lin: torch.nn.Module,
                 seq_lin: torch.nn.Module) -> None:
        super().__init__()
        # Registration order is the optimiser's parameter order: keep it.
        self.compute_features, self.normalize, self.enc = compute_features, normalize, enc
        self.emb, self.dec, self.ctc_lin, self.seq_lin = emb, dec, ctc_lin, seq_lin

    def encode(self, wavs: torch.Tensor, wav_lens: torch.Tensor, epoch: Optional[int] = None) -> torch.Tensor:
        """Encoder outputs (``batch × frames × dim``); ``epoch`` lets the
        normaliser update its statistics during training."""
        feats = self.compute_features(wavs)
        feats = self.normalize(feats, wav_lens, epoch=epoch)
        return self.enc(feats)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor, tokens_bos: torch.Tensor,
                epoch: Optional[int] = None) -> ASROutput:
        """Both heads, the decoder teacher-forced on ``tokens_bos``."""
        encoded = self.encode(wavs, wav_lens, epoch)
        ctc_logits = self.ctc_lin(encoded)
        decoded, _ = self.dec(self.emb(tokens_bos), encoded, wav_lens)
        seq_logits = self.seq_lin(decoded)
        return ASROutput(encoded=encoded, ctc_logits=ctc_logits, ctc_logprobs=torch.log_softmax(ctc_logits, dim=-1),
                         seq_logits=seq_logits, seq_logprobs=torch.log_softmax(seq_logits, dim=-1), wav_lens=wav_lens)


class ModelEncoder(torch.nn.Module):
    """``model.encode`` as a module, for ``EncoderDecoderASR``, which calls
    ``mods.encoder(wavs, wav_lens)``: inference encodes as training does."""

    def __init__(self, model: CTCAttentionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        return self.model.encode(wavs, wav_lens)


@dataclass
class CIFOutputs:
    """What :meth:`CIFModel.forward` gives the objectives."""

    encoded: torch.Tensor
    ctc_logprobs: torch.Tensor
    frame_lengths: torch.Tensor   # encoder frames per utterance (absolute)
    cif: CIFOutput                # teacher-forced: weights scaled to the targets
    logits: torch.Tensor          # B × (tokens + eos) × vocab
    states: torch.Tensor          # decoder states before c_i is joined
    final_states: torch.Tensor    # the output bottleneck over [state; c_i] (the paper's "final state")
    target_lengths: torch.Tensor  # tokens + eos


class CIFModel(torch.nn.Module):
    """CIF ASR (CIF-HieraDist's model): features → normaliser → (SpecAugment)
    → Conformer encoder → CIF → decoder, with a CTC head on the encoder.

    Arguments
    ---------
    compute_features, normalize, enc, cif, dec, ctc_lin : torch.nn.Module
        Fbank, InputNormalization,
        :class:`~hieradist_lobes.conformer.PooledConformerEncoder`,
        :class:`~hieradist_lobes.cif.CIF`,
        :class:`~hieradist_lobes.cif_decoder.CIFDecoder` and the CTC head.
    """

    def __init__(self, compute_features: torch.nn.Module, normalize: torch.nn.Module, enc: torch.nn.Module,
                 cif: torch.nn.Module, dec: torch.nn.Module, ctc_lin: torch.nn.Module) -> None:
        super().__init__()
        self.compute_features, self.normalize, self.enc = compute_features, normalize, enc
        self.cif, self.dec, self.ctc_lin = cif, dec, ctc_lin

    def encode(self, wavs: torch.Tensor, wav_lens: torch.Tensor, epoch: Optional[int] = None,
               feature_augmentation: Optional[torch.nn.Module] = None,
               dynchunktrain_config: Optional[DynChunkTrainConfig] = None) -> torch.Tensor:
        """Encoder outputs; ``feature_augmentation`` (SpecAugment) is given in training only;
        ``dynchunktrain_config``: chunked attention (a streaming model; None: full context)."""
        feats = self.compute_features(wavs)
        feats = self.normalize(feats, wav_lens, epoch=epoch)
        if feature_augmentation is not None:
            feats, _ = feature_augmentation(feats, wav_lens)
        return self.enc(feats, wav_lens, dynchunktrain_config=dynchunktrain_config)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor, tokens_bos: torch.Tensor,
                target_lengths: torch.Tensor, epoch: Optional[int] = None,
                feature_augmentation: Optional[torch.nn.Module] = None,
                dynchunktrain_config: Optional[DynChunkTrainConfig] = None) -> CIFOutputs:
        """Teacher-forced pass: the CIF weights are scaled to ``target_lengths``
        (tokens + eos) and the decoder reads ``tokens_bos``; ``dynchunktrain_config``
        chunks the encoder and the CIF weight predictor (dynamic chunk training)."""
        encoded = self.encode(wavs, wav_lens, epoch, feature_augmentation, dynchunktrain_config)
        frame_lengths = encoder_frame_lengths(encoded, wav_lens)
        ctc_logprobs = torch.log_softmax(self.ctc_lin(encoded), dim=-1)
        cif = self.cif(encoded, wav_lens, target_lengths, chunk_size=chunk_size_of(dynchunktrain_config))
        decoded = self.dec(tokens_bos, cif.fired, target_lengths)
        return CIFOutputs(encoded=encoded, ctc_logprobs=ctc_logprobs, frame_lengths=frame_lengths, cif=cif,
                          logits=decoded.logits, states=decoded.states, final_states=decoded.final_states,
                          target_lengths=target_lengths)

    def decode(self, encoded: torch.Tensor, wav_lens: torch.Tensor, tokenizer, beam_size: int = 1,
               lm: Optional[torch.nn.Module] = None, lm_weight: float = 0.0,
               ctc_weight: float = 0.0, dynchunktrain_config: Optional[DynChunkTrainConfig] = None
               ) -> Tuple[List[List[int]], CIFOutput]:
        """Free-running fires (no scaling, tail fire) and the fire-synchronous
        beam search over them (:func:`~hieradist_lobes.cif_decoder.cif_beam_search`);
        ``tokenizer`` gives bos and eos, and blank and bos are never emitted.
        ``ctc_weight`` > 0 adds the CTC head's prefix scores (joint decoding),
        ``lm``/``lm_weight`` shallow fusion.

        ``dynchunktrain_config``: that ``encoded`` was encoded with (its chunks
        also bound the CIF weight predictor).

        Returns the token sequences and the fires (for counts and times).
        """
        fires = self.cif(encoded, wav_lens, chunk_size=chunk_size_of(dynchunktrain_config))
        bos, blank = tokenizer.get_bos_index(), tokenizer.get_blank_index()
        ctc_logprobs = torch.log_softmax(self.ctc_lin(encoded), dim=-1) if ctc_weight else None
        hyps = cif_beam_search(self.dec, fires.fired, fires.fired_lengths, bos, tokenizer.get_eos_index(),
                               beam_size=beam_size, blocked=[blank, bos], lm=lm, lm_weight=lm_weight,
                               ctc_logprobs=ctc_logprobs, ctc_lengths=encoder_frame_lengths(encoded, wav_lens),
                               ctc_weight=ctc_weight, blank_index=blank)
        return hyps, fires


def chunk_size_of(config: Optional[DynChunkTrainConfig]) -> Optional[int]:
    """The chunk size (encoder frames) of a dynamic chunk training configuration, None for full context."""
    return None if config is None else int(config.chunk_size)


def encoder_frame_lengths(encoded: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
    """Valid encoder frames per utterance (absolute) from SpeechBrain's relative lengths.

    Example
    -------
    >>> encoder_frame_lengths(torch.zeros(2, 10, 4), torch.tensor([1.0, 0.44])).tolist()
    [10, 4]
    """
    return torch.round(wav_lens * encoded.shape[1]).long().clamp(1, encoded.shape[1])


def load_encoder_weights(folder: str, encoder: torch.nn.Module, prefix: str = "enc.") -> None:
    """Initialise ``encoder`` from the encoder of a trained model folder
    (``init_encoder_from``: a student starting from a teacher's encoder).

    Raises
    ------
    ValueError
        If the folder's encoder does not have the same shapes.
    """
    path = os.path.join(folder, "model.ckpt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} is not a model folder: no model.ckpt")
    state = torch.load(path, map_location="cpu")
    encoder_state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    try:
        encoder.load_state_dict(encoder_state)
    except RuntimeError as error:
        raise ValueError(f"the encoder of {folder} does not fit the student's encoder: {error}") from error
