"""Every LibriSpeech YAML end to end, on a LibriSpeech-layout tree made from the tiny corpus: FLAC files,
``*.trans.txt``, several parts. The multi-teacher system on SentencePiece units (tokenizer, three teachers,
the store, students of every strategy, torchrun) and the CIF system (PLM features, the KD variants, the LM);
each exported folder loaded and transcribing to words. Model sizes are overridden to tiny ones."""

import glob
import json
import os
import re

import pytest
import soundfile

from hieradist_lobes.data.manifest import read_manifest
from hieradist_lobes.subwords import FOLDER_MODEL, SentencePieceError
from tests.plm_fixtures import tiny_plm_folder

# The tiny corpus's splits as LibriSpeech parts: its training set cut in two parts, named as the 960 h's are.
PARTS = {"train-clean-100": ("train", 0), "train-clean-360": ("train", 1), "dev-clean": ("valid", None),
         "test-clean": ("test", None)}
TINY_CTC = ["--cnn_blocks=1", "--cnn_channels=[8]", "--rnn_layers=1", "--rnn_neurons=16", "--dnn_blocks=1",
            "--dnn_neurons=16", "--emb_size=8", "--dec_neurons=16", "--dec_attn_dim=16", "--beam_size=2",
            "--sentencepiece_vocab_size=60", "--num_workers=0", "--batch_size=4"]
TINY_CIF = ["--d_model=32", "--encoder_layers=2", "--pool_after=[1, 2]", "--encoder_heads=2", "--encoder_ffn=64",
            "--frontend_channels=4", "--cif_conv_channels=32", "--decoder_layers=1", "--decoder_heads=2",
            "--decoder_ffn=64", "--decoder_output_dim=32", "--beam_size=2", "--n_mels=40", "--lm_hidden_size=32",
            "--lm_embedding_size=16", "--num_workers=0", "--batch_size=4", "--plm_size=32"]
FAST = ["--debug", "--debug_batches=2", "--debug_epochs=1", "--number_of_epochs=1"]
BOTH_TRAIN_PARTS = "--librispeech_parts={train: [train-clean-100, train-clean-360]}"
DURATION_BATCHES = "--dynamic_batching={max_batch_length: 8.0, num_buckets: 4}"


def make_librispeech_tree(corpus: str, root: str) -> str:
    """A ``LibriSpeech/`` tree of the corpus's audio as FLAC, one chapter per speaker and part."""
    for part, (split, half) in PARTS.items():
        rows = read_manifest(os.path.join(corpus, f"{split}.csv"))
        if half is not None:
            rows = rows[half::2]
        speakers = {speaker: 100 + index for index, speaker in enumerate(sorted({row["spk_id"] for row in rows}))}
        chapters = {}
        for row in rows:
            speaker = speakers[row["spk_id"]]
            chapter = 10 * speaker + list(PARTS).index(part)
            folder = os.path.join(root, "LibriSpeech", part, str(speaker), str(chapter))
            os.makedirs(folder, exist_ok=True)
            lines = chapters.setdefault(folder, [])
            utterance = f"{speaker}-{chapter}-{len(lines):04d}"
            audio, rate = soundfile.read(row["wav"])
            soundfile.write(os.path.join(folder, f"{utterance}.flac"), audio, rate, format="FLAC")
            lines.append(f"{utterance} {row['wrd'].upper()}")
        for folder, lines in chapters.items():
            speaker, chapter = folder.split(os.sep)[-2:]
            with open(os.path.join(folder, f"{speaker}-{chapter}.trans.txt"), "w", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def tree(tiny_corpus, tmp_path_factory):
    root = make_librispeech_tree(str(tiny_corpus), str(tmp_path_factory.mktemp("librispeech")))
    test_flac = sorted(glob.glob(os.path.join(root, "LibriSpeech", "test-clean", "*", "*", "*.flac")))[0]
    words = sorted({word for path in glob.glob(os.path.join(root, "LibriSpeech", "*", "*", "*", "*.trans.txt"))
                    for line in open(path, encoding="utf-8") for word in line.split()[1:]})
    transcripts = [line.split(maxsplit=1)[1].strip() for path in
                   glob.glob(os.path.join(root, "LibriSpeech", "test-clean", "*", "*", "*.trans.txt"))
                   for line in open(path, encoding="utf-8")]
    return {"root": root, "test_flac": test_flac, "words": set(words), "test_transcripts": transcripts}


def _is_words(text: str, words) -> bool:
    return isinstance(text, str) and "\u2581" not in text and set(text.split()) <= words


def _transcribes_to_words(model_dir: str, tree) -> None:
    """The folder's SentencePiece model and label vocabulary turn a transcript's pieces back into its words, and
    its (barely trained) model's hypothesis into text with no piece marks."""
    import sentencepiece
    from speechbrain.inference.ASR import EncoderDecoderASR

    asr = EncoderDecoderASR.from_hparams(source=model_dir, savedir=model_dir)
    pieces = sentencepiece.SentencePieceProcessor(model_file=os.path.join(model_dir, FOLDER_MODEL))
    for transcript in tree["test_transcripts"]:
        assert asr.tokenizer.decode_ids(pieces.encode_as_ids(transcript)) == transcript
    text = asr.transcribe_file(tree["test_flac"])
    assert isinstance(text, str) and "\u2581" not in text and text == " ".join(text.split())


@pytest.fixture(scope="module")
def kd(tree, tmp_path_factory, recipes):
    results = str(tmp_path_factory.mktemp("librispeech_kd"))
    data = [f"--data_folder={tree['root']}", f"--output_root={results}", BOTH_TRAIN_PARTS, *TINY_CTC]
    teachers = {name: recipes.train_teacher([f"hparams/librispeech/{name}.yaml", *data, *FAST, DURATION_BATCHES])
                for name in ("asr", "tea1", "tea2")}
    store = recipes.save_teachers(["hparams/librispeech/save_teachers.yaml", *data])
    return {"results": results, "data": data, "teachers": teachers, "store": store}


def test_the_sentencepiece_model_is_trained_once_on_every_training_part_and_shared(kd, tree):
    folder = os.path.join(kd["results"], "manifests", "sentencepiece")
    assert sorted(os.listdir(folder)) == [".training.lock", "60_unigram.json", "60_unigram.model", "60_unigram.vocab"]
    record = json.load(open(os.path.join(folder, "60_unigram.json"), encoding="utf-8"))
    assert record["train_manifest"] == os.path.join(kd["results"], "manifests", "train.csv")
    train = read_manifest(record["train_manifest"])
    assert {row["ID"].split("-")[1][-1] for row in train} == {"0", "1"}  # chapters of both training parts
    with open(os.path.join(folder, "60_unigram.model"), "rb") as handle:
        trained = handle.read()
    for result in kd["teachers"].values():
        info = json.load(open(os.path.join(result["model_dir"], "info.json"), encoding="utf-8"))
        assert info["unit"] == "sentencepiece" and info["labels"] == 60
        with open(os.path.join(result["model_dir"], FOLDER_MODEL), "rb") as handle:
            assert handle.read() == trained
        assert FOLDER_MODEL in info["files"]


def test_teachers_trained_on_sentencepiece_units_transcribe_to_words(kd, tree):
    for result in kd["teachers"].values():
        _transcribes_to_words(result["model_dir"], tree)


def test_the_store_holds_top_k_outputs_on_sentencepiece_units(kd):
    from hieradist_lobes.teacher_store import TeacherStore

    store = TeacherStore(kd["store"])
    assert store.metadata.top_k == 10 and store.metadata.num_teachers == 3
    assert store.metadata.labels[:4] == ["<blank>", "<bos>", "<eos>", "<unk>"] and len(store.metadata.labels) == 60
    assert len(store.ids()) == len(read_manifest(os.path.join(kd["results"], "manifests", "train.csv")))


@pytest.mark.parametrize("strategy", ["average", "best", "weighted"])
def test_students_distil_from_the_store_and_transcribe_to_words(kd, tree, recipes, strategy):
    result = recipes.train_kd(["hparams/librispeech/train_kd.yaml", *kd["data"], *FAST, f"--strategy={strategy}"])
    assert result["test_error_rate"] >= 0
    _transcribes_to_words(result["model_dir"], tree)


def test_the_student_baseline_trains_on_the_same_units(kd, recipes):
    result = recipes.train_teacher(["hparams/librispeech/student.yaml", *kd["data"], *FAST])
    assert json.load(open(os.path.join(result["model_dir"], "info.json"), encoding="utf-8"))["labels"] == 60


def _without(arguments, *keys):
    return [argument for argument in arguments if not argument.startswith(tuple(f"--{key}=" for key in keys))]


def test_a_sentencepiece_model_from_other_transcripts_is_refused_not_reused(kd, recipes, tmp_path):
    other = ["--librispeech_parts={train: [train-clean-100]}", f"--output_root={tmp_path}",
             f"--sentencepiece_folder={kd['results']}/manifests/sentencepiece"]
    with pytest.raises(SentencePieceError, match="was trained on other transcripts or settings"):
        recipes.train_teacher(["hparams/librispeech/asr.yaml", *_without(kd["data"], "librispeech_parts", "output_root"),
                               *FAST, *other])


def test_a_vocabulary_larger_than_the_transcripts_allow_is_named(kd, recipes, tmp_path):
    with pytest.raises(SentencePieceError, match=r"sentencepiece_vocab_size 5000 .*Vocabulary size too high"):
        recipes.train_teacher(["hparams/librispeech/asr.yaml",
                               *_without(kd["data"], "sentencepiece_vocab_size", "output_root"), *FAST,
                               "--sentencepiece_vocab_size=5000", f"--output_root={tmp_path}"])


def test_torchrun_trains_a_teacher_and_distils_a_student(kd, torchrun, tmp_path):
    folder = tmp_path / "ddp"
    common = [*_without(kd["data"], "output_root"), f"--output_root={folder}", f"--sentencepiece_folder={kd['results']}/manifests/sentencepiece",
              "--number_of_epochs=1"]
    # The same training manifest (a fresh copy of it) reuses the trained SentencePiece model.
    completed = torchrun("recipes/multi_teacher_kd/train_teacher.py", ["hparams/librispeech/asr.yaml", *common])
    assert "test error rate" in completed.stdout
    completed = torchrun("recipes/multi_teacher_kd/train_kd.py",
                         ["hparams/librispeech/train_kd.yaml", *common, f"--teacher_store={kd['store']}",
                          "--strategy=weighted"])
    assert "test error rate" in completed.stdout
    assert os.path.isfile(os.path.join(folder, "student_weighted", "model", FOLDER_MODEL))


@pytest.fixture(scope="module")
def cif(tree, tmp_path_factory, recipes):
    results = str(tmp_path_factory.mktemp("librispeech_cif"))
    plm = tiny_plm_folder(str(tmp_path_factory.mktemp("plm")), sorted(word.lower() for word in tree["words"]),
                          hidden_size=32)
    data = [f"--data_folder={tree['root']}", f"--output_root={results}", f"--plm_path={plm}", BOTH_TRAIN_PARTS,
            *TINY_CIF]
    baseline = recipes.train_cif(["hparams/librispeech/cif.yaml", *data, *FAST, DURATION_BATCHES])
    store = recipes.save_plm_features(["hparams/librispeech/cif_plm_features.yaml", *data])
    return {"results": results, "data": data, "baseline": baseline, "store": store}


def test_the_cif_vocabulary_is_counted_from_the_training_transcripts(cif):
    train = read_manifest(os.path.join(cif["results"], "manifests", "train.csv"))
    words = {word for row in train for word in row["wrd"].split()}
    info = json.load(open(os.path.join(cif["baseline"]["model_dir"], "info.json"), encoding="utf-8"))
    assert info["labels"] == len(words) + 4  # one wordpiece per word with this PLM; blank, bos, eos, unk
    hyperparams = open(os.path.join(cif["baseline"]["model_dir"], "hyperparams.yaml"), encoding="utf-8").read()
    assert re.search(rf"\boutput_neurons: {len(words) + 4}\n", hyperparams)
    assert not re.search(r"\boutput_neurons: auto", hyperparams)


@pytest.mark.parametrize("distillation", ["acd", "lrd", "hieradist"])
def test_cif_models_distil_from_the_plm_and_transcribe_to_words(cif, tree, recipes, distillation):
    from hieradist_lobes.inference import CIFASR

    result = recipes.train_cif_kd(["hparams/librispeech/cif_kd.yaml", *cif["data"], *FAST,
                                   f"--distillation={distillation}"])
    asr = CIFASR.from_hparams(source=result["model_dir"], savedir=result["model_dir"])
    text = asr.transcribe_file(tree["test_flac"])
    assert _is_words(text.upper(), tree["words"])


def test_the_cif_lm_trains_on_the_training_transcripts(cif, recipes):
    import math

    result = recipes.train_lm(["hparams/librispeech/cif.yaml", *cif["data"], "--lm_epochs=1"])
    assert os.path.isfile(os.path.join(result["lm_dir"], "lm.ckpt"))
    assert math.isfinite(result["valid_perplexity"]) and math.isfinite(result["test_perplexity"])
