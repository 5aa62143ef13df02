"""ONNX export end to end on the tiny corpus: a CIF model and a CTC/attention student trained here,
exported, decoded by onnxruntime with the transcriptions of PyTorch's greedy decoding."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from speechbrain.dataio.dataio import read_audio

from hieradist_lobes.data.manifest import read_manifest
from tests.plm_fixtures import tiny_plm_folder
from tests.test_cif_recipes import SMALL_MODEL, words_of

TRAIN = ["--debug", "--debug_batches=4", "--debug_epochs=1", "--number_of_epochs=1"]


@pytest.fixture(scope="module")
def exported(tiny_corpus, tmp_path_factory, recipes):
    from hieradist_lobes.onnx_export import export_onnx_folder

    results = tmp_path_factory.mktemp("onnx_results")
    data = [f"--data_folder={tiny_corpus}", "--corpus_size=tiny", f"--output_root={results}", "--num_workers=0"]
    plm = tiny_plm_folder(str(tmp_path_factory.mktemp("plm")), words_of(tiny_corpus), hidden_size=32)
    labels = len(words_of(tiny_corpus, ("train",))) + 4
    cif = recipes.train_cif(["hparams/synth/cif.yaml", *data, f"--plm_path={plm}", f"--output_neurons={labels}",
                             *SMALL_MODEL, *TRAIN])["model_dir"]
    student = recipes.train_teacher(["hparams/synth/student.yaml", *data, *TRAIN,
                                     "--experiment_name=student_baseline"])["model_dir"]
    return {"cif": cif, "cif_onnx": export_onnx_folder(cif, str(results / "cif_onnx")),
            "student": student, "student_onnx": export_onnx_folder(student, str(results / "student_onnx")),
            "corpus": str(tiny_corpus)}


def wavs(corpus):
    return [row["wav"] for split in ("test", "valid") for row in read_manifest(os.path.join(corpus, f"{split}.csv"))]


def test_cif_export_gives_pytorchs_encoder_weights_fires_and_greedy_transcriptions(exported):
    from hieradist_lobes.inference import CIFASR
    from hieradist_lobes.onnx_runtime import load_onnx_folder

    folder = exported["cif"]
    asr = CIFASR.from_hparams(source=folder, savedir=folder, overrides={"beam_size": 1, "ctc_weight_decode": 0.0})
    onnx = load_onnx_folder(exported["cif_onnx"])
    assert sorted(os.listdir(exported["cif_onnx"])) == ["decoder_step.onnx", "encoder.onnx", "onnx_model.json",
                                                        "stft_window.npy"]
    spoken = 0
    for path in wavs(exported["corpus"]):
        signal = read_audio(path)
        with torch.no_grad():
            hidden, alphas = asr.mods.model.cif.weigh(asr.encode_batch(signal[None], torch.ones(1)))
            fires = asr.mods.model.cif(hidden)
        encoded_onnx, alphas_onnx = onnx.encode(signal.numpy())
        np.testing.assert_allclose(encoded_onnx, hidden[0].numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(alphas_onnx, alphas[0].numpy(), atol=1e-4, rtol=1e-4)
        fired = onnx.fire(signal.numpy())
        assert fired.shape[0] == int(fires.fired_lengths[0])
        np.testing.assert_allclose(fired, fires.fired[0, :fired.shape[0]].numpy(), atol=1e-4, rtol=1e-4)
        text = asr.transcribe_file(path)
        assert onnx.transcribe_file(path) == text, path
        spoken += bool(text)
    assert spoken >= 5  # the comparison is of transcriptions, not of empty strings
    # A padded batch through the encoder graph: the padding masks follow the lengths given.
    from speechbrain.utils.data_utils import batch_pad_right

    from hieradist_lobes.onnx_export import EncoderGraph, power_spectrogram_torch
    from hieradist_lobes.onnx_runtime import run_graph

    batch, lengths = batch_pad_right([read_audio(path) for path in wavs(exported["corpus"])[:4]])
    assert lengths.min() < 1  # padding
    spectrogram = power_spectrogram_torch(asr.mods.model.compute_features.compute_STFT, batch)
    with torch.no_grad():
        expected = EncoderGraph(asr.mods.model).eval()(spectrogram, lengths)
    got = run_graph(onnx.encoder, {"spectrogram": spectrogram.numpy(), "lengths": lengths.numpy()})
    for name, value, want in zip(("encoded", "alphas"), got, expected):
        np.testing.assert_allclose(value, want.numpy(), atol=1e-4, rtol=1e-4, err_msg=name)


def test_student_export_gives_pytorchs_greedy_ctc_transcriptions(exported):
    from speechbrain.inference.ASR import EncoderDecoderASR

    from hieradist_lobes.ctc_scoring import ctc_greedy_decode
    from hieradist_lobes.onnx_runtime import load_onnx_folder

    folder = exported["student"]
    asr = EncoderDecoderASR.from_hparams(source=folder, savedir=folder)
    onnx = load_onnx_folder(exported["student_onnx"])
    tokenizer = asr.tokenizer
    spoken = 0
    for path in wavs(exported["corpus"]):
        signal = read_audio(path)
        with torch.no_grad():
            logprobs = torch.log_softmax(asr.mods.model.ctc_lin(asr.encode_batch(signal[None], torch.ones(1))), -1)
        tokens = ctc_greedy_decode(logprobs, torch.tensor([logprobs.shape[1]]), tokenizer.get_blank_index(),
                                   drop=[tokenizer.get_bos_index(), tokenizer.get_eos_index()])[0]
        assert onnx.decode_signal(signal.numpy()) == tokens, path
        assert onnx.transcribe_file(path) == tokenizer.decode_ids(tokens)
        spoken += bool(tokens)
    assert spoken >= 5


def test_the_runtime_decodes_without_torch_or_speechbrain(exported):
    """The runtime module in a process where importing torch or SpeechBrain fails."""
    path = wavs(exported["corpus"])[0]
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'speechbrain', 'torchaudio'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from hieradist_lobes.onnx_runtime import load_onnx_folder\n"
            "print(load_onnx_folder(sys.argv[1]).transcribe_file(sys.argv[2]))\n")
    expected = {}
    for kind in ("cif_onnx", "student_onnx"):
        from hieradist_lobes.onnx_runtime import load_onnx_folder

        expected[kind] = load_onnx_folder(exported[kind]).transcribe_file(path)
        done = subprocess.run([sys.executable, "-c", code, exported[kind], path], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.rstrip("\n") == expected[kind]


def test_bad_input_to_the_runtime_and_the_command_is_named(exported, tmp_path):
    import soundfile

    from hieradist_lobes.export import ModelFolderError
    from hieradist_lobes.onnx_export import main
    from hieradist_lobes.onnx_runtime import load_onnx_folder

    onnx = load_onnx_folder(exported["cif_onnx"])
    other_rate = str(tmp_path / "8k.wav")
    soundfile.write(other_rate, np.zeros(8000, dtype=np.float32), 8000)
    with pytest.raises(ValueError, match="8000 Hz; this model takes 16000 Hz"):
        onnx.transcribe_file(other_rate)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        onnx.transcribe_file(str(tmp_path / "missing.wav"))
    with pytest.raises(FileNotFoundError, match="not an ONNX export"):
        load_onnx_folder(exported["cif"])
    with pytest.raises(SystemExit):
        main([exported["cif"], exported["cif"]])  # would replace the model folder
    with pytest.raises(ModelFolderError, match="has no hyperparams.yaml"):
        main([str(tmp_path), str(tmp_path / "out")])
    (tmp_path / "hyperparams.yaml").write_text("lr: 1\n")
    with pytest.raises(ModelFolderError, match="neither a CIF nor a CTC/attention model folder"):
        main([str(tmp_path), str(tmp_path / "out")])
    assert json.load(open(os.path.join(exported["cif_onnx"], "onnx_model.json")))["system"] == "CIF"
