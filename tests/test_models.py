"""The model classes: one forward pass per system, used by training, teacher inference and inference."""

import pytest
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.nnet.embedding import Embedding
from speechbrain.nnet.linear import Linear
from speechbrain.nnet.RNN import AttentionalRNNDecoder
from speechbrain.processing.features import InputNormalization

from hieradist_lobes.cif import CIF
from hieradist_lobes.cif_decoder import CIFDecoder
from hieradist_lobes.conformer import PooledConformerEncoder
from hieradist_lobes.models import CIFModel, CTCAttentionModel, ModelEncoder, load_encoder_weights
from hieradist_lobes.tokens import build_label_encoder

VOCAB = 7


def ctc_attention_model():
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(Linear(input_size=40, n_neurons=16), torch.nn.Tanh())
    return CTCAttentionModel(
        Fbank(n_mels=40), InputNormalization(norm_type="sentence"), encoder, Embedding(num_embeddings=VOCAB, embedding_dim=8),
        AttentionalRNNDecoder("gru", "content", 16, 16, 1, enc_dim=16, input_size=8),
        Linear(input_size=16, n_neurons=VOCAB), Linear(input_size=16, n_neurons=VOCAB)).eval()


def cif_model():
    torch.manual_seed(0)
    return CIFModel(
        Fbank(n_mels=40), InputNormalization(norm_type="sentence"),
        PooledConformerEncoder(input_size=40, d_model=16, num_layers=2, nhead=2, d_ffn=32, pool_after=[1, 2],
                               frontend_channels=4),
        CIF(input_size=16, conv_channels=16), CIFDecoder(vocab_size=VOCAB, cif_size=16, d_model=16, num_layers=1,
                                                         nhead=2, d_ffn=32),
        Linear(input_size=16, n_neurons=VOCAB)).eval()


def batch():
    torch.manual_seed(1)
    return torch.randn(2, 16000), torch.tensor([1.0, 0.7])


def test_ctc_attention_forward_is_encode_then_both_heads():
    model = ctc_attention_model()
    wavs, wav_lens = batch()
    tokens_bos = torch.tensor([[1, 3, 4, 5], [1, 6, 0, 0]])
    with torch.no_grad():
        out = model(wavs, wav_lens, tokens_bos)
        encoded = model.encode(wavs, wav_lens)
        decoded, _ = model.dec(model.emb(tokens_bos), encoded, wav_lens)
    assert torch.equal(out.encoded, encoded)
    assert torch.allclose(out.ctc_logprobs, torch.log_softmax(model.ctc_lin(encoded), -1))
    assert torch.allclose(out.seq_logprobs, torch.log_softmax(model.seq_lin(decoded), -1))
    assert out.seq_logprobs.shape == (2, 4, VOCAB)
    # What EncoderDecoderASR calls is the same encoding.
    assert torch.equal(ModelEncoder(model)(wavs, wav_lens), encoded)


def test_parameters_are_registered_in_the_optimisers_order():
    """Optimiser state and gradient clipping follow registration order: features, encoder, decoder, heads."""
    model = ctc_attention_model()
    names = [name.split(".")[0] for name, _ in model.named_parameters()]
    assert list(dict.fromkeys(names)) == ["enc", "emb", "dec", "ctc_lin", "seq_lin"]
    assert list(dict.fromkeys(n.split(".")[0] for n, _ in cif_model().named_parameters())) == [
        "enc", "cif", "dec", "ctc_lin"]


def test_cif_teacher_forced_pass_scales_fires_to_the_targets():
    model = cif_model()
    wavs, wav_lens = batch()
    target_lengths = torch.tensor([4, 2])
    tokens_bos = torch.tensor([[1, 3, 4, 5], [1, 6, 0, 0]])
    with torch.no_grad():
        out = model(wavs, wav_lens, tokens_bos, target_lengths)
    assert out.logits.shape == (2, 4, VOCAB) and out.states.shape == (2, 4, 16)
    assert out.final_states.shape == (2, 4, 16)
    assert out.cif.fired_lengths.tolist() == [4, 2]
    assert torch.allclose(out.ctc_logprobs.exp().sum(-1), torch.ones(out.ctc_logprobs.shape[:2]), atol=1e-5)
    assert int(out.frame_lengths[0]) == out.encoded.shape[1]


def test_cif_decoding_emits_one_token_per_free_fire():
    model = cif_model()
    wavs, wav_lens = batch()
    with torch.no_grad():
        encoded = model.encode(wavs, wav_lens)
        hyps, fires = model.decode(encoded, wav_lens, build_label_encoder("wrd", "from_data", [["a", "b", "c", "d"]]),
                                   beam_size=3)
    for hyp, count in zip(hyps, fires.fired_lengths.tolist()):
        assert len(hyp) in (count - 1, count) and not {0, 1, 2} & set(hyp)


def test_feature_augmentation_runs_only_when_given():
    model = cif_model()
    wavs, wav_lens = batch()
    calls = []

    def augmentation(feats, lengths):
        calls.append(feats.shape)
        return feats * 0, lengths

    with torch.no_grad():
        plain = model.encode(wavs, wav_lens)
        masked = model.encode(wavs, wav_lens, feature_augmentation=augmentation)
    assert len(calls) == 1 and not torch.equal(plain, masked)


def test_encoder_weights_load_from_a_model_checkpoint(tmp_path):
    source, target = ctc_attention_model(), ctc_attention_model()
    with torch.no_grad():
        for parameter in source.enc.parameters():
            parameter.add_(1.0)
    torch.save(source.state_dict(), tmp_path / "model.ckpt")
    load_encoder_weights(str(tmp_path), target.enc)
    assert all(torch.equal(a, b) for a, b in zip(source.enc.parameters(), target.enc.parameters()))
    with pytest.raises(ValueError, match="does not fit the student's encoder"):
        load_encoder_weights(str(tmp_path), Linear(input_size=40, n_neurons=8))
    with pytest.raises(FileNotFoundError, match="no model.ckpt"):
        load_encoder_weights(str(tmp_path / "absent"), target.enc)
