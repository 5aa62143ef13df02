"""Streaming CIF recognition end to end on the tiny corpus: a model trained with dynamic chunks
streams the same tokens as it decodes whole under the same chunked attention, and never loses
the last token (hieradist_lobes.streaming, CIFASR's streaming interface)."""

import os

import pytest
import torch
from speechbrain.dataio.dataio import read_audio
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig

from hieradist_lobes.data.manifest import read_manifest
from tests.plm_fixtures import tiny_plm_folder
from tests.test_cif_recipes import SMALL_MODEL, words_of

# A few real updates, so that the weights are not those of initialisation; the claims hold for any weights.
TRAIN = ["--debug", "--debug_batches=4", "--debug_epochs=1", "--number_of_epochs=1"]


@pytest.fixture(scope="module")
def streaming_model(tiny_corpus, tmp_path_factory, recipes):
    results = tmp_path_factory.mktemp("streaming_results")
    plm = tiny_plm_folder(str(tmp_path_factory.mktemp("plm")), words_of(tiny_corpus), hidden_size=32)
    labels = len(words_of(tiny_corpus, ("train",))) + 4
    run = recipes.train_cif(["hparams/synth/cif_streaming.yaml", f"--data_folder={tiny_corpus}", "--corpus_size=tiny",
                             f"--output_root={results}", "--num_workers=0", f"--plm_path={plm}",
                             f"--output_neurons={labels}", *SMALL_MODEL, *TRAIN,
                             "--streaming_chunk_size=2", "--streaming_left_chunks=2"])
    return run["model_dir"]


def load(folder, **overrides):
    from hieradist_lobes.inference import CIFASR

    # Streaming decodes greedily with the decoder alone: compare with the same offline decoding.
    overrides = {"beam_size": 1, "ctc_weight_decode": 0.0, **overrides}
    return CIFASR.from_hparams(source=folder, savedir=folder, overrides=overrides)


def evaluation_rows(tiny_corpus):
    return read_manifest(os.path.join(tiny_corpus, "test.csv")) + read_manifest(os.path.join(tiny_corpus, "valid.csv"))


def stream(asr, signal, piece_samples):
    """Feed ``signal`` in pieces of ``piece_samples``; the tokens and the streamed text."""
    context = asr.make_streaming_context()
    text = "".join(asr.transcribe_signal_streaming(signal, context, piece_samples))
    return context.tokens, text


def offline(asr, signal, config):
    hyps, _ = asr.decode_batch(signal[None], torch.ones(1), dynchunktrain_config=config)
    return hyps[0]


@pytest.mark.parametrize("tail_threshold", [None, 0.05])
def test_streaming_equals_the_whole_utterance_under_the_same_chunked_attention(streaming_model, tiny_corpus,
                                                                                 tail_threshold):
    """File by file, for pieces of audio of several sizes (not chunk-aligned, one far smaller than a
    chunk): the streamed tokens are those of the same model decoding the whole file with the same
    chunked attention, and the streamed text is its transcription. tail_threshold 0.05: nearly every
    utterance ends with a tail fire."""
    asr = load(streaming_model, **({} if tail_threshold is None else {"tail_threshold": tail_threshold}))
    config = asr.streaming_config()
    assert (config.chunk_size, config.left_context_size) == (2, 2)
    chunk = asr.chunk_samples()
    compared = 0
    for row in evaluation_rows(tiny_corpus):
        signal = read_audio(row["wav"])
        expected = offline(asr, signal, config)
        for piece in (chunk, 1000, chunk * 3 + 17):
            tokens, text = stream(asr, signal, piece)
            assert tokens == expected, (row["ID"], piece)
            assert text == asr.tokenizer.decode_ids(expected)
        compared += bool(expected)
    assert compared >= 3  # the untrained-looking model still emits tokens on most files


def test_no_utterance_loses_its_final_token_in_streaming(streaming_model, tiny_corpus):
    """Whatever the last piece of audio (a few samples, or nothing after a whole chunk), the
    stream's last token is the offline decode's: the last, shorter chunk is encoded and the
    leftover weight fires at the end of the stream."""
    asr = load(streaming_model, tail_threshold=0.05)
    config = asr.streaming_config()
    chunk = asr.chunk_samples()
    with_tail = 0
    for row in evaluation_rows(tiny_corpus):
        signal = read_audio(row["wav"])
        expected = offline(asr, signal, config)
        if not expected:
            continue
        for cut in (signal.shape[0] - 3, (signal.shape[0] // chunk) * chunk):
            context = asr.make_streaming_context()
            asr.transcribe_chunk(context, signal[:cut])
            asr.transcribe_chunk(context, signal[cut:], end_of_stream=True)
            assert context.tokens[-1:] == expected[-1:], (row["ID"], cut)
        with torch.no_grad():
            encoded = asr.encode_batch(signal[None], torch.ones(1), config)
            fires = asr.mods.model.cif(encoded, torch.ones(1), chunk_size=config.chunk_size)
        with_tail += int(fires.tail_weight[0] >= 0.05)
    assert with_tail >= 1


def test_the_final_pass_is_the_whole_file_beam_search_with_ctc_under_the_same_chunks(streaming_model, tiny_corpus):
    """At the end of a stream, the fires and CTC frames it stored are decoded with the folder's beam
    and CTC weight: the whole-file decoding with them under the same chunked attention; the tokens
    streamed as they came stay the greedy pass's."""
    greedy = load(streaming_model)
    joint = load(streaming_model, beam_size=3, ctc_weight_decode=0.5)
    config = joint.streaming_config()
    for row in evaluation_rows(tiny_corpus):
        signal = read_audio(row["wav"])
        context = joint.make_streaming_context()
        assert context.final_pass is not None
        joint.transcribe_chunk(context, signal[:5000])
        with pytest.raises(RuntimeError, match="has not ended"):
            joint.final_transcript(context)
        joint.transcribe_chunk(context, signal[5000:], end_of_stream=True)
        expected = offline(joint, signal, config)
        assert context.final_tokens == expected, row["ID"]
        assert joint.final_transcript(context) == joint.tokenizer.decode_ids(expected)
        assert context.tokens == offline(greedy, signal, config)
    # Without a final pass (greedy folder, or final_pass=False) the final transcript is the stream's.
    context = greedy.make_streaming_context()
    assert context.final_pass is None and joint.make_streaming_context(final_pass=False).final_pass is None
    greedy.transcribe_chunk(context, signal, end_of_stream=True)
    assert context.final_tokens == context.tokens


def test_transcribe_file_streaming_yields_the_transcript_piece_by_piece(streaming_model, tiny_corpus):
    asr = load(streaming_model)
    row = evaluation_rows(tiny_corpus)[0]
    pieces = list(asr.transcribe_file_streaming(row["wav"]))
    signal = read_audio(row["wav"])
    assert len(pieces) == -(-signal.shape[0] // asr.chunk_samples()) + 1
    assert "".join(pieces) == asr.tokenizer.decode_ids(offline(asr, signal, asr.streaming_config()))


def test_a_stream_that_has_ended_or_has_no_audio_is_refused(streaming_model, tiny_corpus):
    asr = load(streaming_model)
    context = asr.make_streaming_context()
    with pytest.raises(ValueError, match="ended before any audio"):
        asr.transcribe_chunk(context, torch.zeros(0), end_of_stream=True)
    signal = read_audio(evaluation_rows(tiny_corpus)[0]["wav"])
    asr.transcribe_chunk(context, signal, end_of_stream=True)
    with pytest.raises(RuntimeError, match="has ended"):
        asr.transcribe_chunk(context, signal)
    with pytest.raises(ValueError, match="one recording at a time"):
        asr.transcribe_chunk(asr.make_streaming_context(), torch.zeros(2, 1600))


def test_a_full_context_model_is_refused_for_streaming_naming_what_to_train(tmp_path):
    """A full-context model normalises each utterance by its own statistics: no stream can."""
    from hieradist_lobes.streaming import make_streaming_context
    from hieradist_lobes.conformer import PooledConformerEncoder
    from hieradist_lobes.features import Fbank
    from speechbrain.processing.features import InputNormalization

    model = torch.nn.Module()
    model.compute_features = Fbank(n_mels=20)
    model.normalize = InputNormalization(norm_type="sentence")
    model.enc = PooledConformerEncoder(20, 16, 1, 2, 32, pool_after=[1], frontend_channels=4, kernel_size=3)
    with pytest.raises(ValueError, match="cif_streaming.yaml"):
        make_streaming_context(model, DynChunkTrainConfig(2, 2))
    model.normalize = InputNormalization(norm_type="global")
    with pytest.raises(ValueError, match="top_db: null"):
        make_streaming_context(model, DynChunkTrainConfig(2, 2))


class ScriptedDecoder:
    """A decoder whose step returns prescribed logits, one row per fire."""

    def __init__(self, rows):
        self.rows, self.previous = rows, []

    def step(self, prev_tokens, fired, cache):
        step = 0 if cache is None else cache
        self.previous.append(int(prev_tokens[0]))
        return torch.tensor([self.rows[step]]), step + 1


@pytest.mark.parametrize("more_fires", [True, False])
def test_a_fire_whose_best_class_is_eos_holds_its_token_until_the_next_fire_or_the_end(more_fires):
    """As the greedy offline search: <eos> only counts at the last fire. Classes: 0 blank, 1 bos,
    2 eos, 3.. tokens. Fire 0 prefers eos, then token 4: if another fire comes, token 4 is emitted
    (and fed to the next step); if the stream ends there, fire 0 was the end: nothing."""
    from hieradist_lobes.streaming import CIFStreamingContext, _decode_fire

    decoder = ScriptedDecoder([[0.0, 0.0, 5.0, 1.0, 3.0], [0.0, 0.0, 0.0, 4.0, 1.0]])
    context = CIFStreamingContext(config=None, features=None, encoder=None)
    first = _decode_fire(decoder, context, torch.zeros(1, 2), 1, 2, [0, 1])
    assert first == [] and context.held == 4
    if more_fires:
        assert _decode_fire(decoder, context, torch.zeros(1, 2), 1, 2, [0, 1]) == [4, 3]
        assert decoder.previous == [1, 4]
    else:
        assert context.held == 4  # the end of the stream (stream_tokens) drops it: <eos> won the last fire
