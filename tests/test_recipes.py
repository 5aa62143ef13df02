"""End to end on the tiny corpus: teachers, teacher store, students (SpeechBrain --debug)."""

import glob
import os

import numpy as np
import pytest

from hieradist_lobes.data.manifest import read_manifest
from hieradist_lobes.data.phones import PHONES_39
from hieradist_lobes.hparams import HparamsError
from hieradist_lobes.teacher_store import StoreMetadata, TeacherStore, TeacherStoreError, TeacherStoreWriter


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory, recipes):
    results = tmp_path_factory.mktemp("results")
    data = [f"--data_folder={tiny_corpus}", "--corpus_size=tiny", f"--output_root={results}", "--num_workers=0"]
    fast = ["--debug", "--debug_batches=2", "--debug_epochs=1", "--number_of_epochs=1"]
    teachers = {name: recipes.train_teacher([f"hparams/synth/{yaml}.yaml", *data, *fast])
                for name, yaml in (("tea0", "asr"), ("tea2", "tea2"))}
    dirs = f"--teacher_dirs=[{teachers['tea0']['model_dir']}, {teachers['tea2']['model_dir']}]"
    # gzip: every KD test below reads (and resumes) a compressed store.
    store = recipes.save_teachers(["hparams/synth/save_teachers.yaml", *data, dirs, "--store_part_size=10",
                                   "--store_compression=gzip"])
    return {"recipes": recipes, "results": results, "data": data, "fast": fast, "teachers": teachers, "store": store, "dirs": dirs,
            "corpus": tiny_corpus}


def _transcribe(model_dir, wav):
    from speechbrain.inference.ASR import EncoderDecoderASR

    asr = EncoderDecoderASR.from_hparams(source=model_dir, savedir=model_dir)
    return asr.transcribe_file(wav)


def test_teacher_folders_are_self_contained_and_load(run):
    wav = read_manifest(os.path.join(run["corpus"], "test.csv"))[0]["wav"]
    for result in run["teachers"].values():
        folder = result["model_dir"]
        assert sorted(os.listdir(folder)) == ["README.md", "config.json", "example.wav", "hyperparams.yaml",
                                              "info.json", "model.ckpt", "normalize.ckpt", "tokenizer.ckpt"]
        text = _transcribe(folder, wav)
        assert isinstance(text, str) and set(text.split()) <= set(PHONES_39)
        assert result["params"] > 0 and result["test_error_rate"] >= 0


def test_store_has_every_training_utterance_by_id(run):
    store = TeacherStore(run["store"])
    train_ids = {row["ID"] for row in read_manifest(os.path.join(run["corpus"], "train.csv"))}
    assert set(store.ids("train")) == train_ids
    assert store.metadata.num_teachers == 2 and len(store.metadata.labels) == 42
    assert [t["name"] for t in store.metadata.teachers] == ["tea0", "tea2"]
    assert all(len(t["checkpoint_sha256"]) == 64 for t in store.metadata.teachers)
    record = store.get(sorted(train_ids)[0])
    assert record.ctc_logprobs[0].shape[1] == 42
    assert record.att_logprobs[0].shape[0] == len(record.tokens) + 1
    assert all(0 <= rate <= 100 for rate in record.ctc_error_rate + record.att_error_rate)
    # CTC frames per second of audio, measured from the teachers.
    assert 20 < store.metadata.frame_rate < 40
    import h5py

    with h5py.File(store._files[0], "r") as part:  # the YAML's store_compression reached the writer
        assert part["fields/ctc"].compression == "gzip" and part["fields/att"].compression == "gzip"


def test_save_teachers_resumes_and_then_does_nothing(run):
    parts = sorted(glob.glob(os.path.join(run["store"], "train", "*.h5")))
    assert len(parts) == 3  # 36 utterances in parts of whole batches of 8: 16, 16, 4
    before = set(TeacherStore(run["store"]).ids())
    os.remove(parts[1])  # as if killed before this part was complete
    assert len(TeacherStore(run["store"]).ids()) == 20
    run["recipes"].save_teachers(["hparams/synth/save_teachers.yaml", *run["data"], run["dirs"], "--store_part_size=10"])
    assert set(TeacherStore(run["store"]).ids()) == before
    stamps = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(run["store"], "train", "*.h5"))}
    run["recipes"].save_teachers(["hparams/synth/save_teachers.yaml", *run["data"], run["dirs"], "--store_part_size=10"])
    assert {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(run["store"], "train", "*.h5"))} == stamps


def test_a_store_is_extended_with_another_split_by_the_same_teachers(run, tmp_path):
    """The frame rate is the teachers', not the first utterance's: a store of train takes valid too."""
    import shutil

    store = str(tmp_path / "store")
    shutil.copytree(run["store"], store)
    run["recipes"].save_teachers(["hparams/synth/save_teachers.yaml", *run["data"], run["dirs"],
                                  f"--store_path={store}", "--store_splits=[valid]"])
    extended = TeacherStore(store)
    assert extended.splits() == ["train", "valid"]
    assert set(extended.ids("valid")) == {row["ID"] for row in read_manifest(os.path.join(run["corpus"], "valid.csv"))}
    assert extended.metadata.frame_rate == TeacherStore(run["store"]).metadata.frame_rate


def _store_contents(path):
    store = TeacherStore(path)
    return {utt: store.get(utt) for utt in store.ids()}


def _assert_same_records(first, second):
    assert sorted(first) == sorted(second)
    for utt, record in first.items():
        other = second[utt]
        assert record.tokens == other.tokens and record.ctc_error_rate == other.ctc_error_rate
        assert record.att_error_rate == other.att_error_rate
        for a, b in zip(record.ctc_logprobs + record.att_logprobs, other.ctc_logprobs + other.att_logprobs):
            assert np.array_equal(a, b), utt


@pytest.mark.parametrize("killed_after", [1, 5, 11])
def test_a_store_killed_anywhere_resumes_to_the_uninterrupted_store(run, tmp_path, monkeypatch, killed_after):
    # Part size 5 is not a multiple of the batch size 4: parts close only between batches.
    options = [*run["data"], run["dirs"], "--store_part_size=5", "--store_batch_size=4"]
    reference = str(tmp_path / "reference")
    run["recipes"].save_teachers(["hparams/synth/save_teachers.yaml", *options, f"--store_path={reference}"])
    original_add = TeacherStoreWriter.add
    calls = []

    def add_then_die(self, *args, **kwargs):
        if len(calls) == killed_after:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return original_add(self, *args, **kwargs)

    resumed = str(tmp_path / "resumed")
    monkeypatch.setattr(TeacherStoreWriter, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        run["recipes"].save_teachers(["hparams/synth/save_teachers.yaml", *options, f"--store_path={resumed}"])
    monkeypatch.setattr(TeacherStoreWriter, "add", original_add)
    run["recipes"].save_teachers(["hparams/synth/save_teachers.yaml", *options, f"--store_path={resumed}"])
    _assert_same_records(_store_contents(reference), _store_contents(resumed))


def test_a_diverged_teacher_is_never_stored(run, tmp_path):
    import shutil

    import torch

    folder = str(tmp_path / "nan_teacher")
    shutil.copytree(run["teachers"]["tea0"]["model_dir"], folder)
    state = torch.load(os.path.join(folder, "model.ckpt"))
    next(value for value in state.values() if value.is_floating_point()).fill_(float("nan"))
    torch.save(state, os.path.join(folder, "model.ckpt"))
    os.remove(os.path.join(folder, "info.json"))  # no recorded hashes: the weights themselves are checked
    with pytest.raises(TeacherStoreError, match=f"teacher {folder} has non-finite weights"):
        run["recipes"].save_teachers(["hparams/synth/save_teachers.yaml", *run["data"], f"--teacher_dirs=[{folder}]",
                       f"--store_path={tmp_path / 'store'}"])


@pytest.mark.parametrize("patience, stage", [(0, "training diverged at epoch 1, step 2"),
                                             (3, "valid loss not finite at epoch 1")])
def test_divergence_stops_the_run_and_exports_nothing(run, tmp_path, patience, stage):
    from hieradist_lobes.brains import DivergenceError

    data = [arg for arg in run["data"] if not arg.startswith("--output_root")] + [f"--output_root={tmp_path}"]
    with pytest.raises(DivergenceError, match=stage + r".*(ctc|seq) nan.*; utterances .*Lower the learning rate"):
        run["recipes"].train_teacher(["hparams/synth/asr.yaml", *data, *run["fast"], "--lr=1e30",
                         f"--nonfinite_patience={patience}"])
    assert not os.path.exists(tmp_path / "tea0" / "model")
    assert not glob.glob(str(tmp_path / "tea0" / "save" / "CKPT*"))


def test_own_csv_corpus_outside_the_data_folder_trains(run, tmp_path):
    """dataset: csv with only ID, duration, wav and the label column."""
    from hieradist_lobes.data.manifest import write_manifest

    manifests = {}
    for split in ("train", "valid", "test"):
        rows = [{key: row[key] for key in ("ID", "duration", "wav", "phn")}
                for row in read_manifest(os.path.join(run["corpus"], f"{split}.csv"))]
        manifests[split] = str(tmp_path / "my_corpus" / f"{split}_list.csv")
        write_manifest(manifests[split], rows, ["ID", "duration", "wav", "phn"])
    own = ["--dataset=csv", *[f"--{split}_csv={path}" for split, path in manifests.items()],
           f"--output_root={tmp_path / 'results'}", "--num_workers=0"]
    result = run["recipes"].train_teacher(["hparams/synth/asr.yaml", *own, *run["fast"]])
    assert os.path.isfile(os.path.join(result["model_dir"], "model.ckpt"))
    with pytest.raises(HparamsError, match="dataset: csv needs valid_csv"):
        run["recipes"].train_teacher(["hparams/synth/asr.yaml", *[a for a in own if "valid_csv" not in a],
                         "--valid_csv=null", *run["fast"]])


def test_own_csv_corpus_runs_the_whole_distillation_pipeline(run, tmp_path):
    """Teacher store and student from a user's CSVs with $data_root paths and only the needed columns."""
    from hieradist_lobes.data.manifest import write_manifest

    own = ["--dataset=csv", f"--data_folder={run['corpus']}", f"--output_root={tmp_path}", "--num_workers=0"]
    for split in ("train", "valid", "test"):
        rows = [{"ID": row["ID"], "duration": row["duration"], "phn": row["phn"],
                 "wav": row["wav"].replace(str(run["corpus"]), "$data_root")}
                for row in read_manifest(os.path.join(run["corpus"], f"{split}.csv"))]
        assert rows[0]["wav"].startswith("$data_root/")
        path = str(tmp_path / "lists" / f"{split}.csv")
        write_manifest(path, rows, ["ID", "duration", "wav", "phn"])
        own.append(f"--{split}_csv={path}")
    store = run["recipes"].save_teachers(["hparams/synth/save_teachers.yaml", *own, run["dirs"]])
    assert len(TeacherStore(store)) == 36
    result = run["recipes"].train_kd(["hparams/synth/train_kd.yaml", *own, f"--teacher_store={store}", *run["fast"]])
    assert os.path.isfile(os.path.join(result["model_dir"], "model.ckpt"))


def test_bad_rows_stop_before_training_or_are_dropped_and_counted(run, tmp_path):
    from hieradist_lobes.data.manifest import write_manifest
    from hieradist_lobes.data.validation import ManifestCheckError

    manifests = {split: os.path.join(run["corpus"], f"{split}.csv") for split in ("train", "valid", "test")}
    rows = read_manifest(manifests["train"])
    rows[2]["phn"] = ""                 # empty transcript
    rows[4]["phn"] = rows[4]["phn"] + " zz"   # label outside the vocabulary
    rows[5]["duration"] = "9.5"         # the file is shorter
    manifests["train"] = str(tmp_path / "train.csv")
    write_manifest(manifests["train"], rows)
    own = ["--dataset=csv", *[f"--{split}_csv={path}" for split, path in manifests.items()],
           f"--output_root={tmp_path / 'results'}", "--num_workers=0"]
    with pytest.raises(ManifestCheckError) as caught:
        run["recipes"].train_teacher(["hparams/synth/asr.yaml", *own, *run["fast"]])
    message = str(caught.value)
    assert "3 bad row(s)" in message
    for line, utt in ((4, rows[2]["ID"]), (6, rows[4]["ID"]), (7, rows[5]["ID"])):
        assert f"line {line}, utterance {utt!r}" in message
    assert not glob.glob(str(tmp_path / "results" / "tea0" / "save" / "CKPT*"))  # stopped before training
    run["recipes"].train_teacher(["hparams/synth/asr.yaml", *own, *run["fast"], "--bad_rows=drop"])
    checks = tmp_path / "results" / "manifest_checks"
    kept = [name for name in os.listdir(checks) if name.startswith("train-") and name.endswith(".csv")]
    assert len(kept) == 1 and len(read_manifest(str(checks / kept[0]))) == 33  # 36 - 3, counted


@pytest.mark.parametrize("damage, message", [
    ("remove", "has no normalize.ckpt"),
    ("truncate", "model.ckpt is corrupt or was replaced"),
])
def test_a_damaged_model_folder_fails_at_load_naming_the_folder_and_file(run, tmp_path, damage, message):
    import shutil

    from speechbrain.inference.ASR import EncoderDecoderASR

    from hieradist_lobes.export import ModelFolderError

    folder = str(tmp_path / "copy")
    shutil.copytree(run["teachers"]["tea0"]["model_dir"], folder)
    if damage == "remove":
        os.remove(os.path.join(folder, "normalize.ckpt"))
    else:
        path = os.path.join(folder, "model.ckpt")
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match=f"model folder {folder}.*{message}"):
        EncoderDecoderASR.from_hparams(source=folder, savedir=str(tmp_path / "cache"))


@pytest.mark.parametrize("strategy", ["average", "best", "weighted"])
def test_students_distil_and_load(run, strategy):
    result = run["recipes"].train_kd(["hparams/synth/train_kd.yaml", f"--strategy={strategy}", f"--teacher_store={run['store']}",
                              *run["data"], *run["fast"]])
    assert result["model_dir"].endswith(f"student_{strategy}/model")
    wav = read_manifest(os.path.join(run["corpus"], "test.csv"))[1]["wav"]
    assert set(_transcribe(result["model_dir"], wav).split()) <= set(PHONES_39)


def test_frame_kl_with_speed_perturbation_and_encoder_init(run):
    result = run["recipes"].train_kd(["hparams/synth/train_kd.yaml", "--ctc_kd=kl", "--kd_temperature=2",
                              "--experiment_name=kl", f"--teacher_store={run['store']}",
                              f"--init_encoder_from={run['teachers']['tea0']['model_dir']}",
                              "--rnn_layers=2", "--rnn_neurons=128", "--dnn_neurons=128",  # tea0's encoder
                              *run["data"], *run["fast"]])
    assert os.path.isdir(result["model_dir"])


def test_encoder_init_needs_the_same_architecture(run):
    with pytest.raises(ValueError, match="does not fit the student's encoder"):
        run["recipes"].train_kd(["hparams/synth/train_kd.yaml", f"--teacher_store={run['store']}",
                         f"--init_encoder_from={run['teachers']['tea0']['model_dir']}", "--experiment_name=bad",
                         *run["data"], *run["fast"]])


def _copy_store(source, destination, keep, labels=None):
    store = TeacherStore(source)
    metadata = store.metadata
    if labels is not None:
        metadata = StoreMetadata(labels=labels, teachers=metadata.teachers, frame_rate=metadata.frame_rate,
                                 dtype=metadata.dtype, top_k=metadata.top_k, options=metadata.options)
    with TeacherStoreWriter(destination, "train", metadata) as writer:
        for utt in sorted(store.ids())[:keep]:
            writer.add(utt, store.get(utt))


def test_vocabulary_mismatch_is_an_error(run, tmp_path):
    labels = TeacherStore(run["store"]).metadata.labels
    swapped = labels[:3] + [labels[4], labels[3]] + labels[5:]
    _copy_store(run["store"], str(tmp_path / "store"), keep=36, labels=swapped)
    with pytest.raises(TeacherStoreError, match="different label vocabulary.*first difference at index 3"):
        run["recipes"].train_kd(["hparams/synth/train_kd.yaml", f"--teacher_store={tmp_path / 'store'}",
                         *run["data"], *run["fast"]])


def test_missing_utterances_are_an_error_unless_skipped(run, tmp_path):
    _copy_store(run["store"], str(tmp_path / "store"), keep=30)
    with pytest.raises(TeacherStoreError, match="6 utterance.*not in the teacher store"):
        run["recipes"].train_kd(["hparams/synth/train_kd.yaml", f"--teacher_store={tmp_path / 'store'}",
                         *run["data"], *run["fast"]])
    result = run["recipes"].train_kd(["hparams/synth/train_kd.yaml", f"--teacher_store={tmp_path / 'store'}",
                              "--skip_missing_teacher_outputs=True", "--experiment_name=skip",
                              *run["data"], *run["fast"]])
    assert os.path.isdir(result["model_dir"])


def test_distillation_needs_a_store(run):
    with pytest.raises(HparamsError, match="names no teacher_store"):
        run["recipes"].train_kd(["hparams/synth/student.yaml", *run["data"], *run["fast"]])


def test_training_refuses_a_distillation_yaml(run):
    with pytest.raises(HparamsError, match="names a teacher_store .* run the system's train_kd.py"):
        run["recipes"].train_teacher(["hparams/synth/train_kd.yaml", *run["data"], *run["fast"]])


def test_torchrun_save_teachers_writes_one_part_per_rank(run, tmp_path, torchrun):
    store = tmp_path / "store"
    torchrun("recipes/multi_teacher_kd/save_teachers.py", ["hparams/synth/save_teachers.yaml", *run["data"], run["dirs"],
                                         f"--store_path={store}"])
    parts = sorted(os.listdir(store / "train"))
    assert [p.split("-")[1] for p in parts] == ["r0", "r1"]
    assert set(TeacherStore(str(store)).ids()) == set(TeacherStore(run["store"]).ids())


def test_torchrun_distillation_with_shuffled_data(run, torchrun):
    completed = torchrun("recipes/multi_teacher_kd/train_kd.py", ["hparams/synth/train_kd.yaml", f"--teacher_store={run['store']}",
                                                 "--experiment_name=ddp", "--train_sorting=random",
                                                 *run["data"], *run["fast"]])
    assert "model folder" in completed.stdout
    assert os.path.isfile(os.path.join(run["results"], "ddp", "model", "model.ckpt"))


def test_a_teacher_can_be_the_mean_of_its_last_checkpoints(run, tmp_path):
    import json

    import torch

    data = [arg for arg in run["data"] if not arg.startswith("--output_root")] + [f"--output_root={tmp_path}"]
    result = run["recipes"].train_teacher(["hparams/synth/asr.yaml", *data, "--debug", "--debug_batches=2",
                                           "--debug_epochs=3", "--number_of_epochs=3", "--average_checkpoints=2"])
    folder = os.path.dirname(result["model_dir"])
    with open(os.path.join(folder, "averaged", "AVERAGED.txt")) as handle:
        averaged = handle.read().split()
    states = [torch.load(os.path.join(path, "model.ckpt")) for path in averaged]
    exported = torch.load(os.path.join(result["model_dir"], "model.ckpt"))
    assert len(states) == 2
    for name, value in exported.items():
        if value.is_floating_point():
            assert torch.allclose(value, (states[0][name] + states[1][name]) / 2, atol=1e-6), name
    with open(os.path.join(result["model_dir"], "info.json")) as handle:
        assert json.load(handle)["averaged_checkpoints"] == 2
    assert _transcribe(result["model_dir"], read_manifest(os.path.join(run["corpus"], "test.csv"))[0]["wav"])


def test_averaging_more_checkpoints_than_exist_says_how_many_were_averaged(run, tmp_path):
    import json

    data = [arg for arg in run["data"] if not arg.startswith("--output_root")] + [f"--output_root={tmp_path}"]
    result = run["recipes"].train_teacher(["hparams/synth/asr.yaml", *data, "--debug", "--debug_batches=2",
                                           "--debug_epochs=2", "--number_of_epochs=2", "--average_checkpoints=5"])
    folder = os.path.dirname(result["model_dir"])
    with open(os.path.join(folder, "log.txt")) as handle:  # SpeechBrain's experiment log
        assert handle.read().count("average_checkpoints is 5 but only 2 checkpoints exist") == 1  # warned once
    with open(os.path.join(result["model_dir"], "info.json")) as handle:
        assert json.load(handle)["averaged_checkpoints"] == 2


def _printed_by(code, *args):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_common_commands_print_no_warning_that_means_nothing(run, tmp_path):
    """Making the corpus, training a student and loading it as a user would (a fresh process that imports
    only SpeechBrain) printed runpy's sys.modules warnings, PyTorch's one-layer dropout warning and
    SpeechBrain's expect_len warning every time."""
    import subprocess
    import sys
    import warnings

    corpus = subprocess.run([sys.executable, "-m", "hieradist_lobes.data.synth", "--output_folder",
                             str(tmp_path / "corpus"), "--size", "tiny", "--quiet"], capture_output=True, text=True,
                            timeout=300)
    assert corpus.returncode == 0 and "Warning" not in corpus.stderr, corpus.stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        student = run["recipes"].train_teacher(["hparams/synth/student.yaml", *run["data"], *run["fast"],
                                                "--experiment_name=student_quiet"])
    assert not [str(w.message) for w in caught if "dropout" in str(w.message)]
    wav = read_manifest(os.path.join(run["corpus"], "test.csv"))[0]["wav"]
    printed = _printed_by("import sys; from speechbrain.inference.ASR import EncoderDecoderASR; "
                          "asr = EncoderDecoderASR.from_hparams(source=sys.argv[1], savedir=sys.argv[1]); "
                          "print(asr.transcribe_file(sys.argv[2]))", student["model_dir"], wav)
    assert "Warning" not in printed and "expect_len" not in printed, printed
    # What a recipe does first: its YAML builds SpeechBrain's train logger, which said torchvision was missing.
    printed = _printed_by("from hieradist_lobes.hparams import load_hparams; load_hparams('hparams/synth/asr.yaml')")
    assert "torchvision" not in printed and "Warning" not in printed, printed


def test_a_run_logs_to_tensorboard_besides_train_log(run, tmp_path):
    from hieradist_lobes.experiment_logs import read_scalars

    data = [argument for argument in run["data"] if not argument.startswith("--output_root=")]
    result = run["recipes"].train_teacher(["hparams/synth/student.yaml", *data, *run["fast"],
                                           f"--output_root={tmp_path}", "--tensorboard=True", "--grad_norm_every=1"])
    scalars = read_scalars(str(tmp_path / "student" / "tensorboard"))
    assert {"loss/train", "loss/valid", "error_rate/valid", "lr", "error_rate/final_test"} <= set(scalars)
    assert [step for step, _ in scalars["error_rate/valid"]] == [1]
    assert scalars["error_rate/final_test"] == [(1, pytest.approx(result["test_error_rate"], abs=1e-4))]
    assert scalars["error_rate/final_valid"] == [(1, pytest.approx(result["valid_error_rate"], abs=1e-4))]
    assert any(tag.startswith("update/grad_norm_") for tag in scalars)
    assert (tmp_path / "student" / "train_log.txt").read_text().count("valid loss") == 1


def _run_card_snippet(folder):
    """The model card's three lines, with MODEL_DIR the folder, in a fresh process; what they print."""
    import re
    import subprocess
    import sys

    card = open(os.path.join(folder, "README.md"), encoding="utf-8").read()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace("MODEL_DIR", str(folder))
    completed = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout.strip()


def test_a_moved_teacher_folder_is_hub_ready_and_its_card_snippet_transcribes_its_example(run, tmp_path):
    import json
    import shutil

    from hieradist_lobes.model_card import MULTI_TEACHER_CITATION

    folder = tmp_path / "moved" / "tea0"
    shutil.copytree(run["teachers"]["tea0"]["model_dir"], folder)
    config = json.load(open(folder / "config.json", encoding="utf-8"))
    assert config["class"] == "speechbrain.inference.ASR.EncoderDecoderASR" and config["example"] == "example.wav"
    assert config["sample_rate"] == 16000 and config["labels"] == 42
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "license: apache-2.0" in card and MULTI_TEACHER_CITATION in card
    info = json.load(open(folder / "info.json", encoding="utf-8"))
    assert f"{info['test_error_rate']:.2f} %" in card and f"{info['training_data']['utterances']} utterances" in card
    assert info["training_data"]["utterances"] == len(read_manifest(os.path.join(run["corpus"], "train.csv")))
    assert any(f'"{row["phn"]}"' in card for row in read_manifest(os.path.join(run["corpus"], "test.csv")))
    printed = _run_card_snippet(folder)
    assert printed == _transcribe(str(folder), str(folder / "example.wav"))
    assert set(printed.split()) <= set(PHONES_39)


def test_a_teacher_folder_loaded_with_the_cif_class_stops_naming_its_class(run):
    from hieradist_lobes.export import ModelFolderError
    from hieradist_lobes.inference import CIFASR

    folder = run["teachers"]["tea0"]["model_dir"]
    with pytest.raises(ModelFolderError, match=r"loaded with hieradist_lobes\.inference\.CIFASR.*load it with "
                                               r"EncoderDecoderASR\.from_hparams"):
        CIFASR.from_hparams(source=folder, savedir=folder)
