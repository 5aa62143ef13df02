"""End to end on the tiny corpus: the CIF baseline, PLM features, ACD/LRD/HieraDist, the LM, CIFASR."""

import glob
import json
import os

import numpy as np
import pytest
import torch
from speechbrain.dataio.dataio import read_audio
from speechbrain.utils.data_utils import batch_pad_right

from hieradist_lobes.data.manifest import read_manifest
from hieradist_lobes.plm_features import PLMFeatureExtractor
from hieradist_lobes.teacher_store import TeacherStore
from tests.plm_fixtures import tiny_plm_folder

SMALL_MODEL = ["--d_model=32", "--encoder_layers=2", "--pool_after=[1, 2]", "--encoder_heads=2", "--encoder_ffn=64",
               "--frontend_channels=4", "--cif_conv_channels=32", "--decoder_layers=1", "--decoder_heads=2",
               "--decoder_ffn=64", "--decoder_output_dim=32", "--beam_size=2", "--n_mels=40", "--batch_size=4", "--lm_hidden_size=32",
               "--lm_embedding_size=16"]
FAST = ["--debug", "--debug_batches=2", "--debug_epochs=1", "--number_of_epochs=1", "--lm_epochs=1"]


def words_of(corpus, splits=("train", "valid", "test")):
    return sorted({word.lower() for split in splits
                   for row in read_manifest(os.path.join(corpus, f"{split}.csv")) for word in row["wrd"].split()})


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory, recipes):
    results = tmp_path_factory.mktemp("cif_results")
    # A tiny random BERT whose WordPiece vocabulary has every word of the corpus.
    plm = tiny_plm_folder(str(tmp_path_factory.mktemp("plm")), words_of(tiny_corpus), hidden_size=32)
    labels = len(words_of(tiny_corpus, ("train",))) + 4  # + blank, bos, eos, unk
    data = [f"--data_folder={tiny_corpus}", "--corpus_size=tiny", f"--output_root={results}", "--num_workers=0",
            f"--plm_path={plm}", f"--output_neurons={labels}", "--plm_size=32"]
    baseline = recipes.train_cif(["hparams/synth/cif.yaml", *data, *SMALL_MODEL, *FAST,
                                  "--ctc_weight_decode_grid=[0.0, 0.5]"])
    # lzf: the distilled systems below read a compressed store.
    store = recipes.save_plm_features(["hparams/synth/cif_plm_features.yaml", *data, *SMALL_MODEL,
                                       "--store_compression=lzf"])
    return {"recipes": recipes, "data": data, "baseline": baseline, "store": store, "plm": plm, "corpus": str(tiny_corpus),
            "results": results}


def load(model_dir, **overrides):
    from hieradist_lobes.inference import CIFASR

    return CIFASR.from_hparams(source=model_dir, savedir=model_dir, overrides=overrides or None)


def test_baseline_folder_loads_with_cifasr_and_transcribes(run):
    folder = run["baseline"]["model_dir"]
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "example.wav", "hyperparams.yaml",
                                          "info.json", "model.ckpt", "normalize.ckpt", "tokenizer.ckpt"]
    row = read_manifest(os.path.join(run["corpus"], "test.csv"))[0]
    asr = load(folder)
    text = asr.transcribe_file(row["wav"])
    assert isinstance(text, str)
    assert set(text.split()) <= set(asr.tokenizer.labels())
    stamps = asr.token_timestamps(row["wav"])
    times = [time for _, start, end in stamps for time in (start, end)]
    assert times == sorted(times) and all(0 <= t <= float(row["duration"]) for t in times)
    assert " ".join(label for label, _, _ in stamps) == text
    texts, hyps = asr.transcribe_batch(*batch_pad_right([read_audio(row["wav"])]))
    assert texts == [text] and len(hyps[0]) == len(stamps)
    # Batched: each recording's words, as its transcription, with times in order within its own audio.
    rows = read_manifest(os.path.join(run["corpus"], "test.csv"))[:3]
    batch = batch_pad_right([read_audio(r["wav"]) for r in rows])
    texts, _ = asr.transcribe_batch(*batch)
    for one, text, words in zip(rows, texts, asr.transcribe_batch_with_timestamps(*batch)):
        assert " ".join(word for word, _, _ in words) == text
        bounds = [time for _, start, end in words for time in (start, end)]
        assert bounds == sorted(bounds) and all(0 <= t <= float(one["duration"]) for t in bounds)


def test_the_ctc_weight_chosen_on_valid_is_scored_and_exported(run):
    result = run["baseline"]
    assert set(result["valid_by_ctc_weight"]) == {"0", "0.5"}
    chosen = result["ctc_weight_decode"]
    assert result["valid_by_ctc_weight"][f"{chosen:g}"] == min(result["valid_by_ctc_weight"].values())
    assert result["valid_error_rate"] == pytest.approx(result["valid_by_ctc_weight"][f"{chosen:g}"], abs=0.005)
    assert result["test_error_rate_no_ctc"] >= 0 and (chosen or result["test_error_rate_no_ctc"] == result["test_error_rate"])
    # The diagnosis: the CTC head alone, the error kinds, how often the fires count the tokens.
    for split in ("valid", "test"):
        assert 0 <= result[f"{split}_ctc_head_error_rate"]
        assert 0 <= result[f"{split}_fires_exact_pct"] <= result[f"{split}_fires_within_one_pct"] <= 100
        assert all(result[f"{split}_{kind}"] >= 0 for kind in ("substitutions", "deletions", "insertions"))
    # The folder decodes with the chosen weight unless told otherwise.
    assert load(result["model_dir"]).hparams.ctc_weight_decode == chosen
    assert load(result["model_dir"], ctc_weight_decode=0.3).hparams.ctc_weight_decode == 0.3
    with open(os.path.join(result["model_dir"], "info.json")) as handle:
        assert json.load(handle)["ctc_weight_decode"] == chosen


def test_joint_decoding_transcribes_with_the_ctc_head(run):
    row = read_manifest(os.path.join(run["corpus"], "test.csv"))[0]
    for weight in (0.0, 0.5, 1.0):
        text = load(run["baseline"]["model_dir"], ctc_weight_decode=weight).transcribe_file(row["wav"])
        assert isinstance(text, str)


def test_the_same_units_control_trains_on_the_cif_models_wordpieces(run):
    """The CTC/attention model (the teachers' YAML) on the PLM's tokens of the training transcripts."""
    from speechbrain.inference.ASR import EncoderDecoderASR

    result = run["recipes"].train_teacher(["hparams/synth/asr_wordpiece.yaml", *run["data"][:-1],
                                           "--debug", "--debug_batches=2", "--debug_epochs=1"])
    assert result["model_dir"].endswith(os.path.join("ctc_attention_wordpiece", "model"))
    with open(os.path.join(result["model_dir"], "info.json")) as handle:
        info = json.load(handle)
    assert info["unit"] == "wordpiece" and info["labels"] == len(load(run["baseline"]["model_dir"]).tokenizer)
    folder = result["model_dir"]
    asr = EncoderDecoderASR.from_hparams(source=folder, savedir=folder)
    text = asr.transcribe_file(read_manifest(os.path.join(run["corpus"], "test.csv"))[0]["wav"])
    assert isinstance(text, str) and "##" not in text


def test_plm_store_holds_each_training_transcript_feature_by_id(run):
    store = TeacherStore(run["store"])
    assert store.metadata.kind == "plm"
    rows = read_manifest(os.path.join(run["corpus"], "train.csv"))
    assert set(store.ids("train")) == {row["ID"] for row in rows}
    extractor = PLMFeatureExtractor(run["plm"])
    record = store.get(rows[0]["ID"])
    expected = extractor.features([rows[0]["wrd"]])[0]
    assert record.features.shape == (len(rows[0]["wrd"].split()) + 1, 32) == expected.shape
    assert abs(record.features.astype("float32") - expected).max() < 2e-2  # float16 storage
    import h5py

    with h5py.File(store._files[0], "r") as part:  # the YAML's store_compression reached the writer
        assert part["fields/plm"].compression == "lzf"


@pytest.mark.parametrize("distillation", ["acd", "lrd", "hieradist"])
def test_each_distillation_trains_and_loads(run, distillation):
    result = run["recipes"].train_cif_kd(["hparams/synth/cif_kd.yaml", f"--distillation={distillation}",
                                          f"--teacher_store={run['store']}", *run["data"], *SMALL_MODEL, *FAST])
    assert result["model_dir"].endswith(f"cif_{distillation}/model")
    wav = read_manifest(os.path.join(run["corpus"], "test.csv"))[1]["wav"]
    assert isinstance(load(result["model_dir"]).transcribe_file(wav), str)


@pytest.mark.parametrize("distillation,modules", [("acd", {"acd_proj"}), ("lrd", {"lrd_proj"}),
                                                  ("hieradist", {"acd_proj", "lrd_proj"})])
def test_every_trained_parameter_gets_a_gradient(run, distillation, modules):
    """What DDP needs (no unused parameters): one training step of each distillation."""
    import speechbrain as sb
    from speechbrain.dataio.batch import PaddedBatch

    from hieradist_lobes.brains import HieraDistBrain
    from hieradist_lobes.data.pipelines import PLM_KEYS, PLMFeatureItems, asr_dataset
    from hieradist_lobes.hparams import load_hparams
    from hieradist_lobes.plm import PLMSplitter, PLMTokenizer, plm_tokenizer

    overrides = {arg[2:].split("=")[0]: arg.split("=", 1)[1] for arg in run["data"] + SMALL_MODEL}
    overrides.update(distillation=distillation, teacher_store=run["store"])
    hparams = load_hparams("hparams/synth/cif_kd.yaml", "\n".join(f"{k}: {v}" for k, v in overrides.items())).hparams
    manifest = os.path.join(run["corpus"], "train.csv")
    split_labels = PLMSplitter(PLMTokenizer(hparams["plm_path"]), "wrd")
    tokenizer = plm_tokenizer(manifest, split_labels)
    hparams["tokenizer"] = tokenizer
    store = TeacherStore(run["store"])
    dataset = asr_dataset(manifest, tokenizer, "wrd", split_labels=split_labels, teacher_store=store,
                          teacher_items=PLMFeatureItems(store), teacher_keys=PLM_KEYS)
    batch = PaddedBatch([dataset[i] for i in range(4)])
    brain = HieraDistBrain(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                           run_opts={"device": "cpu"})
    assert {"acd_proj", "lrd_proj"} & set(brain.modules.keys()) == modules
    outputs = brain.compute_forward(batch, sb.Stage.TRAIN)
    brain.on_stage_start(sb.Stage.TRAIN)
    brain.compute_objectives(outputs, batch, sb.Stage.TRAIN).backward()
    missing = [name for name, p in brain.modules.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert set(brain.loss_parts) >= {"ce", "quantity", "ctc"} | {m.split("_")[0] for m in modules}


def test_lm_trains_in_the_asr_vocabulary_and_fuses(run):
    result = run["recipes"].train_lm(["hparams/synth/cif.yaml", *run["data"], *SMALL_MODEL, *FAST])
    assert result["lm_dir"].endswith(os.path.join("lm", "model"))
    assert result["valid_perplexity"] > 1
    wav = read_manifest(os.path.join(run["corpus"], "test.csv"))[0]["wav"]
    asr = load(run["baseline"]["model_dir"], lm_folder=result["lm_dir"], lm_weight=0.5)
    assert asr.lm is not None and isinstance(asr.transcribe_file(wav), str)


def test_distillation_without_a_store_is_refused(run):
    from hieradist_lobes.hparams import HparamsError

    with pytest.raises(HparamsError, match="teacher_store"):
        run["recipes"].train_cif_kd(["hparams/synth/cif.yaml", *run["data"], *SMALL_MODEL, *FAST])


def test_torchrun_distillation_without_unused_parameters(run, torchrun):
    """DDP (find_unused_parameters off) fails if a parameter gets no gradient: ACD alone has no LRD projection."""
    completed = torchrun("recipes/cif_hieradist/train_kd.py", ["hparams/synth/cif_kd.yaml", "--distillation=acd",
                                                 f"--teacher_store={run['store']}", "--experiment_name=cif_ddp",
                                                 "--train_sorting=random", *run["data"], *SMALL_MODEL, *FAST])
    assert "model folder" in completed.stdout
    assert os.path.isfile(os.path.join(run["results"], "cif_ddp", "model", "model.ckpt"))


def test_long_audio_is_transcribed_whole_one_token_per_fire(run, tmp_path):
    """23 utterances joined used to decode to 5 words: <eos> ended the beam at the first fire it won."""
    import soundfile
    import torch

    from tests.test_segmentation import concatenated_test_set

    signal, joins, rows = concatenated_test_set(run["corpus"])
    from hieradist_lobes.data.manifest import median_duration
    from hieradist_lobes.inference import segment_seconds_for

    asr = load(run["baseline"]["model_dir"])
    # Long files are cut to about twice the training utterances (recorded at export).
    assert asr.max_segment_seconds == segment_seconds_for(median_duration(os.path.join(run["corpus"], "train.csv")))
    with torch.no_grad():
        fires = asr.mods.model.cif(asr.encode_batch(signal[None], torch.tensor([1.0])), torch.tensor([1.0]))
    count = int(fires.fired_lengths[0])
    tokens, times = asr.decode_signal(signal, max_segment_seconds=1e6)  # one segment
    assert count > 20 and len(tokens) in (count - 1, count)  # <eos> only at the last fire
    # In segments cut at pauses: times run on across the joins.
    path = str(tmp_path / "long.wav")
    soundfile.write(path, signal.numpy(), 16000)
    stamps = asr.token_timestamps(path, max_segment_seconds=6.0)
    seconds = [time for _, start, end in stamps for time in (start, end)]
    assert seconds == sorted(seconds) and seconds[-1] > signal.shape[0] / 16000 - 6.0
    assert all(start <= end for _, start, end in stamps)
    assert asr.transcribe_file(path, max_segment_seconds=6.0) == " ".join(label for label, _, _ in stamps)
    asr.max_segment_seconds = 6.0
    assert asr.transcribe_file(path) == " ".join(label for label, _, _ in stamps)


def test_own_csv_corpus_trains_the_cif_baseline(run, tmp_path):
    from hieradist_lobes.data.manifest import write_manifest

    own = ["--dataset=csv"]
    for split in ("train", "valid", "test"):
        rows = [{key: row[key] for key in ("ID", "duration", "wav", "wrd")}
                for row in read_manifest(os.path.join(run["corpus"], f"{split}.csv"))]
        path = str(tmp_path / "corpus" / f"{split}.csv")
        write_manifest(path, rows, ["ID", "duration", "wav", "wrd"])
        own.append(f"--{split}_csv={path}")
    data = [arg for arg in run["data"] if not arg.startswith(("--output_root", "--data_folder", "--corpus_size"))]
    result = run["recipes"].train_cif(["hparams/synth/cif.yaml", *own, *data, f"--output_root={tmp_path / 'results'}",
                              *SMALL_MODEL, *FAST])
    assert os.path.isfile(os.path.join(result["model_dir"], "model.ckpt"))


def test_a_cif_folder_without_its_tokenizer_fails_at_load(run, tmp_path):
    import shutil

    from hieradist_lobes.export import ModelFolderError

    folder = str(tmp_path / "copy")
    shutil.copytree(run["baseline"]["model_dir"], folder)
    os.remove(os.path.join(folder, "tokenizer.ckpt"))
    with pytest.raises(ModelFolderError, match=f"model folder {folder} has no tokenizer.ckpt"):
        load(folder)


def test_a_projection_size_other_than_the_stored_features_is_named(run):
    from hieradist_lobes.hparams import HparamsError

    with pytest.raises(HparamsError, match="plm_size is 48 but the features in .* have 32 dimensions; set plm_size: 32"):
        run["recipes"].train_cif_kd(["hparams/synth/cif_kd.yaml", "--distillation=lrd", f"--teacher_store={run['store']}",
                         *[a for a in run["data"] if not a.startswith("--plm_size")], "--plm_size=48",
                         *SMALL_MODEL, *FAST])


def test_inference_overrides_are_range_checked(run):
    from hieradist_lobes.hparams import HparamsError

    with pytest.raises(HparamsError, match="CIFASR hyperparameters: beam_size = 0: must be an integer >= 1"):
        load(run["baseline"]["model_dir"], beam_size=0)


def _elsewhere(data, folder):
    """The run's data arguments with the outputs in ``folder``."""
    return [arg for arg in data if not arg.startswith("--output_root")] + [f"--output_root={folder}"]


def _history(model_dir):
    with open(os.path.join(os.path.dirname(model_dir), "history.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def test_the_last_checkpoints_are_averaged_for_test_and_export(run, tmp_path):
    """average_checkpoints: 2 over 3 epochs: what is exported (and scored) is the
    mean of the last two checkpoints' weights; batches by duration."""
    result = run["recipes"].train_cif(["hparams/synth/cif.yaml", *_elsewhere(run["data"], tmp_path), *SMALL_MODEL, "--debug",
                                       "--debug_batches=2", "--debug_epochs=3", "--number_of_epochs=3",
                                       "--average_checkpoints=2", "--train_sorting=random",
                                       "--dynamic_batching={max_batch_length: 6, num_buckets: 2}", "--lm_epochs=1"])
    folder = os.path.dirname(result["model_dir"])
    with open(os.path.join(folder, "averaged", "AVERAGED.txt")) as handle:
        averaged = handle.read().split()
    assert len(averaged) == 2 and all(os.path.isdir(path) for path in averaged)
    # (--debug keeps the checkpoints in a temporary folder)
    checkpoints = sorted(glob.glob(os.path.join(os.path.dirname(averaged[0]), "CKPT+*")))
    assert len(checkpoints) in (2, 3)  # the last two, and the best if it is older
    assert sorted(averaged) == checkpoints[-2:]  # the two most recent
    states = [torch.load(os.path.join(path, "model.ckpt")) for path in averaged]
    exported = torch.load(os.path.join(result["model_dir"], "model.ckpt"))
    for name, value in exported.items():
        if value.is_floating_point():
            assert torch.allclose(value, (states[0][name] + states[1][name]) / 2, atol=1e-6), name
    with open(os.path.join(result["model_dir"], "info.json")) as handle:
        assert json.load(handle)["averaged_checkpoints"] == 2


def test_each_term_and_its_encoder_gradient_norm_are_logged(run, tmp_path):
    result = run["recipes"].train_cif_kd(["hparams/synth/cif_kd.yaml", "--distillation=hieradist",
                                          f"--teacher_store={run['store']}", *_elsewhere(run["data"], tmp_path),
                                          *SMALL_MODEL, *FAST, "--grad_norm_every=1",
                                          "--kd_ramp_updates=0"])  # the synth YAML's ramp: weights 0 at update 0
    sampled = [entry for entry in _history(result["model_dir"]) if "update" in entry]
    assert [entry["update"] for entry in sampled] == [0, 1]
    for entry in sampled:
        for term in ("ce", "quantity", "ctc", "acd", "lrd"):
            assert entry[f"grad_norm_{term}"] > 0 and np.isfinite(entry[f"loss_{term}"])
    epochs = [entry for entry in _history(result["model_dir"]) if "update" not in entry]
    assert len(epochs) == 1 and "valid_error_rate" in epochs[0]


def test_distillation_weights_ramp_and_lrd_reads_the_chosen_state():
    from types import SimpleNamespace

    from hieradist_lobes.brains import HieraDistBrain

    projections = {"acd_proj": torch.nn.Linear(2, 3), "lrd_proj": torch.nn.Linear(2, 3)}
    hparams = {"distillation": "hieradist", "quantity_weight": 1.0, "ctc_weight": 0.5, "acd_weight": 1.0,
               "lrd_weight": 0.01, "kd_ramp_updates": 100, **projections}
    brain = HieraDistBrain(modules={"lin": torch.nn.Linear(2, 2)}, hparams=hparams, run_opts={"device": "cpu"})
    for update, factor in [(0, 0.0), (25, 0.25), (100, 1.0), (5000, 1.0)]:
        brain.optimizer_step = update
        weights = brain.loss_weights()
        assert weights["acd"] == pytest.approx(factor) and weights["lrd"] == pytest.approx(0.01 * factor)
        assert weights["ce"] == 1.0 and weights["ctc"] == 0.5
    with pytest.raises(ValueError, match="lrd_state"):
        HieraDistBrain(modules={}, hparams={**hparams, "lrd_state": "middle"}, run_opts={"device": "cpu"})
    # final (default): the decoder's bottleneck output; decoder: the state before c_i.
    outputs = SimpleNamespace(states=torch.zeros(1, 2, 2), final_states=torch.ones(1, 2, 2))
    assert brain.lrd_states(outputs) is outputs.final_states
    brain = HieraDistBrain(modules={}, hparams={**hparams, "lrd_state": "decoder"}, run_opts={"device": "cpu"})
    assert brain.lrd_states(outputs) is outputs.states


def test_a_cif_folder_loads_without_the_expect_len_warning(run):
    """SpeechBrain warned 'LabelTokenizer.expect_len was never called' on every CIF model load; the
    folder now says how many labels the model has, which the loaded labels are checked against."""
    import subprocess
    import sys

    from hieradist_lobes.export import ModelFolderError
    from hieradist_lobes.tokens import LabelTokenizer

    folder = run["baseline"]["model_dir"]
    wav = read_manifest(os.path.join(run["corpus"], "test.csv"))[0]["wav"]
    done = subprocess.run([sys.executable, "-c", "import sys; from hieradist_lobes.inference import CIFASR; "
                           "asr = CIFASR.from_hparams(source=sys.argv[1], savedir=sys.argv[1]); "
                           "print(asr.transcribe_file(sys.argv[2]))", folder, wav],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "expect_len" not in done.stdout + done.stderr and "Warning" not in done.stderr, done.stderr
    labels = os.path.join(folder, "tokenizer.ckpt")
    with pytest.raises(ModelFolderError, match=r"tokenizer.ckpt holds \d+ labels, but the model has 3 outputs"):
        LabelTokenizer("wordpiece", expected_len=3).load(labels)


def test_a_missing_audio_file_is_named_at_inference(run, tmp_path):
    """SpeechBrain's loader said 'System error.' for a file that does not exist."""
    asr = load(run["baseline"]["model_dir"])
    with pytest.raises(FileNotFoundError, match=f"audio file {tmp_path}/nope.wav does not exist"):
        asr.transcribe_file(str(tmp_path / "nope.wav"))
    with pytest.raises(IsADirectoryError, match=f"{tmp_path} is a folder, not an audio file"):
        asr.transcribe_file_with_timestamps(str(tmp_path))


def test_a_moved_cif_folder_is_hub_ready_and_its_card_snippet_transcribes_its_example(run, tmp_path):
    import shutil

    from hieradist_lobes.model_card import HIERADIST_CITATION
    from tests.test_recipes import _run_card_snippet

    folder = tmp_path / "elsewhere" / "cif"
    shutil.copytree(run["baseline"]["model_dir"], folder)
    config = json.load(open(folder / "config.json", encoding="utf-8"))
    assert config["class"] == "hieradist_lobes.inference.CIFASR" and config["system"] == "CIF"
    assert HIERADIST_CITATION in (folder / "README.md").read_text(encoding="utf-8")
    assert _run_card_snippet(folder) == load(str(folder)).transcribe_file(str(folder / "example.wav"))


def test_a_cif_folder_loaded_with_encoder_decoder_asr_stops_naming_cifasr(run):
    from speechbrain.inference.ASR import EncoderDecoderASR

    from hieradist_lobes.export import ModelFolderError

    folder = run["baseline"]["model_dir"]
    with pytest.raises(ModelFolderError, match=r"loaded with speechbrain\.inference\.ASR\.EncoderDecoderASR, but "
                                               r"it is a model for hieradist_lobes\.inference\.CIFASR"):
        EncoderDecoderASR.from_hparams(source=folder, savedir=folder)


def test_segments_of_a_long_recording_keep_their_times(run):
    """A recording cut at its pauses: each segment's tokens and spans are the segment's own, moved by where
    the segment starts in the recording."""
    from hieradist_lobes.segmentation import silence_cuts

    asr = load(run["baseline"]["model_dir"])
    rows = read_manifest(os.path.join(run["corpus"], "test.csv"))[:3]
    signal = torch.cat([torch.cat([read_audio(row["wav"]), torch.zeros(8000)]) for row in rows])
    limit = max(float(row["duration"]) for row in rows) + 0.6
    cuts = silence_cuts(signal, 16000, max_segment_seconds=limit)
    assert len(cuts) >= 2
    tokens, spans = asr.decode_signal(signal, max_segment_seconds=limit)
    # The segments decoded in one padded batch, as decode_signal decodes them (a padded batch can fire
    # differently from a recording alone), then moved by their starts.
    hyps, hyp_spans = asr.decode_batch(*batch_pad_right([signal[begin:finish] for begin, finish in cuts]))
    expected_tokens, expected_spans = [], []
    for (begin, _), hyp, segment_spans in zip(cuts, hyps, hyp_spans):
        expected_tokens += hyp
        expected_spans += [(start + begin / 16000, end + begin / 16000) for start, end in segment_spans]
    assert tokens == expected_tokens
    for (start, end), (want_start, want_end) in zip(spans, expected_spans):
        assert start == pytest.approx(want_start, abs=0.002) and end == pytest.approx(want_end, abs=0.002)
    assert spans[-1][1] > signal.shape[0] / 16000 - limit
    # One segment per batch: every batch's segments are the recording's own (a batch's times once replaced them).
    one_by_one = asr.decode_signal(signal, max_segment_seconds=limit, segments_per_batch=1)
    assert one_by_one[0] == [token for hyp in (asr.decode_batch(signal[None, begin:finish], torch.ones(1))[0][0]
                                               for begin, finish in cuts) for token in hyp]
