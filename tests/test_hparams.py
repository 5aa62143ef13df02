import pytest
import torch

from hieradist_lobes.hparams import HparamsError, load_hparams, resolve_chain, resolved_subtree


@pytest.fixture
def files(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "size: 2\nlr: 0.1\nalpha: null\nname: !ref base-<size>\n"
        "layer: !new:torch.nn.Linear\n    in_features: !ref <size>\n    out_features: 3\n"
        "model: !include:model.yaml\n    width: !ref <size>\n"
    )
    (tmp_path / "model.yaml").write_text("width: !PLACEHOLDER\nlayer: !new:torch.nn.Linear [!ref <width>, 1]\n")
    (tmp_path / "kd.yaml").write_text("extends: base.yaml\nlr: 0.01\nalpha: 0.5\n")
    (tmp_path / "big.yaml").write_text("extends: kd.yaml\nsize: 8\nalpha: 0.7\n")
    return tmp_path


def test_base_alone(files):
    hparams = load_hparams(str(files / "base.yaml")).hparams
    assert hparams["size"] == 2 and hparams["name"] == "base-2" and hparams["layer"].in_features == 2
    assert hparams["model"]["layer"].in_features == 2


def test_precedence_base_overlays_command_line(files):
    # The outer overlay beats the inner one; the command line beats everything.
    assert load_hparams(str(files / "kd.yaml")).hparams["lr"] == 0.01
    loaded = load_hparams(str(files / "big.yaml"), {"lr": 0.2})
    hparams = loaded.hparams
    assert (hparams["size"], hparams["lr"], hparams["alpha"], hparams["name"]) == (8, 0.2, 0.7, "base-8")
    assert hparams["model"]["layer"].in_features == 8
    assert loaded.files[0].endswith("big.yaml") and loaded.base_file.endswith("base.yaml")


def test_resolved_model_subtree_reloads(files):
    loaded = load_hparams(str(files / "big.yaml"))
    text = resolved_subtree(loaded, "model")
    assert "width: 8" in text and "!new:torch.nn.Linear" in text


def test_a_key_the_base_does_not_declare_is_an_error(files):
    with pytest.raises(HparamsError, match="the command line sets lrr, not declared in .*base.yaml"):
        load_hparams(str(files / "kd.yaml"), "lrr: 0.3")
    (files / "typo.yaml").write_text("extends: kd.yaml\nsise: 3\nlayrs: 2\n")
    with pytest.raises(HparamsError, match="typo.yaml sets sise, layrs, not declared in .*base.yaml"):
        load_hparams(str(files / "typo.yaml"))


def test_hyperpyyaml_checks_overrides_too(files):
    """overrides_must_match is on: HyperPyYAML itself refuses an undeclared key."""
    from hyperpyyaml import load_hyperpyyaml

    with open(files / "base.yaml") as handle, pytest.raises(KeyError, match="lrr"):
        load_hyperpyyaml(handle, "lrr: 0.3", overrides_must_match=True)


def test_missing_file_and_loop(files):
    with pytest.raises(HparamsError, match="does not exist"):
        resolve_chain(str(files / "absent.yaml"))
    (files / "a.yaml").write_text("extends: b.yaml\n")
    (files / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(HparamsError, match="loops"):
        resolve_chain(str(files / "a.yaml"))
    # The same file by another spelling of its path is the same file.
    (files / "sub").mkdir()
    (files / "sub" / "c.yaml").write_text("extends: ../sub/c.yaml\n")
    with pytest.raises(HparamsError, match="loops"):
        resolve_chain(str(files / "sub" / "c.yaml"))


def test_project_yaml_files_load():
    """Every shipped synth YAML loads, and the teachers and student differ as documented."""
    files = {"tea0": "asr", "tea1": "tea1", "tea2": "tea2", "student": "student"}
    teachers = {name: load_hparams(f"hparams/synth/{yaml}.yaml").hparams for name, yaml in files.items()}
    sizes = {name: sum(p.numel() for p in h["model"]["asr_model"].parameters()) for name, h in teachers.items()}
    assert len(set(sizes.values())) == 4
    assert sizes["student"] < min(sizes[t] for t in ("tea0", "tea1", "tea2"))
    assert teachers["tea2"]["augmentation"] is None and teachers["tea0"]["augmentation"] is not None
    assert {name: h["experiment_name"] for name, h in teachers.items()} == {name: name for name in files}
    kd = load_hparams("hparams/synth/train_kd.yaml").hparams
    assert kd["output_folder"].endswith("student_weighted") and kd["teacher_store"].endswith("teacher_store")
    assert sum(p.numel() for p in kd["model"]["asr_model"].parameters()) == sizes["student"]
    store = load_hparams("hparams/synth/save_teachers.yaml").hparams
    assert len(store["teacher_dirs"]) == 3


def test_no_yaml_key_chooses_a_python_class():
    """The recipe script chooses its Brain and interface; the YAML does not."""
    import glob

    for path in glob.glob("hparams/**/*.yaml", recursive=True):
        text = open(path, encoding="utf-8").read()
        for key in ("brain_class", "model_interface", "store_kind", "variants:"):
            assert key not in text, f"{path} has {key}"


def test_timit_yaml_files_load():
    """The ten TIMIT teachers differ as the original recipe's, from one base."""
    sizes = {}
    for index in range(10):
        name = "asr" if index == 0 else f"tea{index}"
        hparams = load_hparams(f"hparams/timit/{name}.yaml", "data_folder: /corpora/TIMIT").hparams
        assert hparams["output_folder"] == f"results/timit/tea{index}"
        sizes[index] = (hparams["rnn_layers"], hparams["rnn_neurons"], hparams["dnn_neurons"], hparams["cnn_blocks"],
                        hparams["dec_rnn_type"], hparams["batch_size"], hparams["dropout"],
                        hparams["augmentation"] is None)
    assert len(set(sizes.values())) == 10
    assert sizes[0] == (4, 512, 512, 2, "gru", 8, 0.15, False)
    assert sizes[6] == (4, 320, 320, 1, "lstm", 8, 0.3, True)
    kd = load_hparams("hparams/timit/train_kd.yaml", "data_folder: /corpora/TIMIT").hparams
    assert (kd["strategy"], kd["kd_alpha"], kd["kd_temperature"], kd["lr"], kd["ctc_weight"]) == ("best", 1.0, 1.0,
                                                                                                  0.0005, 0.1)
    assert kd["dropout"] == 0.25 and kd["output_folder"] == "results/timit/student_best"
    store = load_hparams("hparams/timit/save_teachers.yaml", "data_folder: /corpora/TIMIT").hparams
    assert len(store["teacher_dirs"]) == 10


def test_aishell1_cif_yaml_is_the_papers_configuration():
    """15 Conformer layers of width 256, pooling after 5 and 10, 4234 outputs, tri-stage LR, HieraDist weights."""
    paths = "data_folder: /corpora/aishell\nplm_path: /models/bert-base-chinese"
    hparams = load_hparams("hparams/aishell1/cif.yaml", paths).hparams
    encoder = hparams["model"]["enc"]
    assert (len(encoder.layers), encoder.subsampling, sorted(encoder.pool_after)) == (15, 8, [5, 10])
    assert hparams["model"]["dec"].output_proj.out_features == 4234 == hparams["output_neurons"]
    assert (hparams["label_smoothing"], hparams["quantity_weight"], hparams["ctc_weight"]) == (0.1, 1.0, 0.5)
    scheduler = hparams["lr_scheduler"]
    assert (scheduler.peak_lr, scheduler.warmup_steps, scheduler.hold_steps, scheduler.decay_steps) == (
        0.0003, 30000, 90000, 120000)
    params = sum(p.numel() for p in hparams["model"]["asr_model"].parameters())
    assert round(params / 1e6, 1) == 47.2  # the paper: 47.2 M
    kd = load_hparams("hparams/aishell1/cif_kd.yaml", paths).hparams
    assert kd["distillation"] == "hieradist" and kd["output_folder"].endswith("cif_hieradist")
    assert (kd["acd_weight"], kd["acd_negatives"], kd["acd_temperature"], kd["lrd_weight"]) == (1.0, 700, 0.02, 0.01)
    assert kd["acd_proj"].w.out_features == 768 == kd["lrd_proj"].w.out_features
    features = load_hparams("hparams/aishell1/cif_plm_features.yaml", paths).hparams
    assert features["store_path"].endswith("plm_store") and features["plm_layer"] == -1


@pytest.mark.parametrize("yaml, paths", [
    ("hparams/synth/cif_streaming.yaml", ""),
    ("hparams/aishell1/cif_streaming.yaml", "data_folder: /corpora/aishell\nplm_path: /models/bert-base-chinese")])
def test_streaming_overlays_train_with_dynamic_chunks_and_stream_computable_features(yaml, paths):
    """The base model with chunks drawn per training batch, the streaming chunking for valid and test,
    features without the per-utterance floor and normalised with global statistics; the full-context
    YAML keeps the paper's features."""
    import speechbrain as sb
    from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig

    hparams = load_hparams(yaml, paths or None).hparams
    model = hparams["model"]
    assert model["compute_features"].top_db is None and model["normalize"].norm_type == "global"
    sampler = hparams["dynamic_chunk_training"]
    streaming = DynChunkTrainConfig(hparams["streaming_chunk_size"], hparams["streaming_left_chunks"])
    assert sampler(sb.Stage.VALID) == streaming == sampler(sb.Stage.TEST)
    assert hparams["output_folder"].endswith("cif_streaming")
    full = load_hparams(yaml.replace("cif_streaming", "cif"), paths or None).hparams
    assert full["model"]["compute_features"].top_db == 80.0 and full["model"]["normalize"].norm_type == "sentence"
    assert full["dynamic_chunk_training"] is None and full["streaming_chunk_size"] is None


def test_aishell1_cif_yaml_is_the_papers_run_as_the_original_code_ran_it():
    """What the fairseq run scripts set (spec: "Checked against the original code")."""
    from hieradist_lobes.schedules import HoldingTriStageLRSchedule

    paths = "data_folder: /corpora/aishell\nplm_path: /models/bert-base-chinese"
    hparams = load_hparams("hparams/aishell1/cif_kd.yaml", paths).hparams
    model = hparams["model"]["asr_model"]
    # Dropout 0.2 in the CIF weight predictor and the decoder (--conv-cif-dropout, --decoder-dropout).
    assert hparams["cif_dropout"] == 0.2 == model.cif.dropout.p
    assert hparams["decoder_dropout"] == 0.2 == model.dec.dropout.p == model.dec.layers[0].dropout.p
    # The decoder's output bottleneck [state; c] 512 -> 256 -> 4234, no biases; no-bias input projection.
    dec = model.dec
    assert (dec.bottleneck.in_features, dec.bottleneck.out_features, dec.output_proj.in_features) == (512, 256, 256)
    assert dec.bottleneck.bias is None and dec.output_proj.bias is None and dec.input_proj.bias is None
    assert dec.embedding_scale == 16.0
    # Decoding: tail threshold 0.4 (run_infer.sh); the mean of the last 10 checkpoints.
    assert hparams["tail_threshold"] == 0.4 == model.cif.tail_threshold
    assert hparams["average_checkpoints"] == 10
    # Batches of about 30k frames (300 s at 100 frames/s) per GPU, stopped at 240k updates.
    assert hparams["dynamic_batching"]["max_batch_length"] == 300 and hparams["train_sorting"] == "random"
    assert hparams["optimizer_step_limit"] == 240000
    # fairseq's tri_stage: from 0.01 of the peak, down to 0.01 of it, and held there.
    scheduler = hparams["lr_scheduler"]
    assert isinstance(scheduler, HoldingTriStageLRSchedule)
    assert (scheduler.init_lr_scale, scheduler.final_lr_scale) == (0.01, 0.01)
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    for update in (240000, 250000, 400000):
        scheduler(optimizer, update)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0003 * 0.01)
    # HieraDist: LRD on the final state, 700 negatives by the original's rule, no ramp of the weights.
    assert (hparams["lrd_state"], hparams["acd_negatives"], hparams["kd_ramp_updates"]) == ("final", 700, 0)
    assert hparams["lrd_proj"].w.in_features == 256


def test_multi_teacher_kd_defaults_are_the_originals():
    kd = load_hparams("hparams/timit/train_kd.yaml", "data_folder: /corpora/TIMIT").hparams
    assert (kd["kd_normalisation"], kd["average_checkpoints"], kd["kd_ramp_updates"]) == ("tokens", 1, 0)
    assert kd["dynamic_batching"] == {}  # none: batch_size utterances per batch


def test_synth_cif_distillation_is_one_override():
    for distillation in ("acd", "lrd", "hieradist"):
        hparams = load_hparams("hparams/synth/cif_kd.yaml", f"distillation: {distillation}").hparams
        assert hparams["distillation"] == distillation and hparams["output_folder"].endswith(f"cif_{distillation}")
    assert load_hparams("hparams/synth/cif.yaml").hparams["teacher_store"] is None


def test_cif_training_values_are_checked_too():
    from hieradist_lobes.hparams import check_hparams

    check_hparams({"lrd_state": "final", "optimizer_step_limit": None, "final_lr_scale": 0.01}, "cif.yaml")
    with pytest.raises(HparamsError) as error:
        check_hparams({"lrd_state": "middle", "optimizer_step_limit": 0, "final_lr_scale": 0.0}, "cif.yaml")
    for part in ("lrd_state = 'middle': must be one of final, decoder", "optimizer_step_limit = 0",
                 "final_lr_scale = 0.0"):
        assert part in str(error.value)


def test_store_compression_is_a_filter_h5py_has_or_null():
    from hieradist_lobes.hparams import check_hparams

    for value in (None, "gzip", "lzf"):
        check_hparams({"store_compression": value}, "save_teachers.yaml")
    with pytest.raises(HparamsError, match="store_compression = 'zstd': must be one of gzip, lzf \\(or null\\)"):
        check_hparams({"store_compression": "zstd"}, "save_teachers.yaml")
    assert load_hparams("hparams/synth/save_teachers.yaml").hparams["store_compression"] is None
    assert load_hparams("hparams/synth/cif_plm_features.yaml").hparams["store_compression"] is None


@pytest.mark.parametrize("override, message", [
    ({"kd_alpha": 1.5}, "kd_alpha = 1.5: must be a number in [0, 1]"),
    ({"lr": -0.001}, "lr = -0.001: must be a number > 0"),
    ({"number_of_epochs": 0}, "number_of_epochs = 0: must be an integer >= 1"),
    ({"batch_size": "eight"}, "batch_size = 'eight': must be an integer >= 1"),
    ({"batch_size": 2.5}, "batch_size = 2.5: must be an integer >= 1"),
    ({"kd_temperature": 0}, "kd_temperature = 0: must be a number > 0"),
    ({"strategy": "median"}, "strategy = 'median': must be one of average, best, weighted"),
    ({"skip_missing_teacher_outputs": "yes"}, "skip_missing_teacher_outputs = 'yes': must be True or False"),
    ({"label_smoothing": 1.0}, "label_smoothing = 1.0: must be a number in [0, 1)"),
    ({"kd_normalisation": "batch"}, "kd_normalisation = 'batch': must be one of tokens, utterances"),
    ({"best_ties": "last"}, "best_ties = 'last': must be one of first, average"),
    ({"average_checkpoints": 0}, "average_checkpoints = 0: must be an integer >= 1"),
])
def test_values_out_of_range_or_of_the_wrong_type_name_the_key(override, message):
    with pytest.raises(HparamsError) as caught:
        load_hparams("hparams/synth/train_kd.yaml", override)
    assert "hparams/synth/train_kd.yaml" in str(caught.value) and message in str(caught.value)


def test_every_problem_is_reported_at_once_and_references_are_resolved_first():
    with pytest.raises(HparamsError, match=r"ctc_weight = 2.0: .*; kd_alpha = -1"):
        load_hparams("hparams/synth/train_kd.yaml", {"kd_alpha": -1, "ctc_weight": 2.0})
    # acd_temperature is checked after the overlay.
    with pytest.raises(HparamsError, match="acd_temperature = -0.02"):
        load_hparams("hparams/synth/cif_kd.yaml", {"acd_temperature": -0.02})


def test_synth_cif_batches_are_reshuffled_every_epoch():
    # With the same batch order every epoch, CIF's quantity loss was met without learning to count.
    hparams = load_hparams("hparams/synth/cif.yaml").hparams
    assert hparams["train_sorting"] == "random"
    assert hparams["dynamic_batching"]["shuffle"] is True and hparams["dynamic_batching"]["batch_ordering"] == "random"


def test_a_weight_grid_is_a_list_of_weights_in_range():
    for grid in ([0.0, 0.5, 1.0], None):
        load_hparams("hparams/synth/cif.yaml", {"ctc_weight_decode_grid": grid})
    for grid, shown in (([0.0, 1.5], "[0.0, 1.5]"), ([], "[]"), (0.5, "0.5"), (["a"], "['a']")):
        with pytest.raises(HparamsError, match=f"ctc_weight_decode_grid = {__import__('re').escape(shown)}: "
                                               r"must be a list of numbers in \[0, 1\] \(or null\)"):
            load_hparams("hparams/synth/cif.yaml", {"ctc_weight_decode_grid": grid})


def test_a_value_chosen_after_training_reaches_the_exported_definition(files):
    from hieradist_lobes.hparams import plain_value, with_values

    loaded = load_hparams(str(files / "big.yaml"), {"lr": 0.2})
    assert "width: 5" in resolved_subtree(with_values(loaded, {"size": 5}), "model")
    assert "width: 8" in resolved_subtree(loaded, "model")  # the original is left alone
    assert with_values(loaded, {"size": 5}).hparams is loaded.hparams
    assert plain_value(str(files / "big.yaml"), "alpha") == 0.7
    assert plain_value(str(files / "kd.yaml"), "size") == 2
    with pytest.raises(HparamsError, match="no file of its chain sets 'width'"):
        plain_value(str(files / "kd.yaml"), "width")


# The training options the README lists as settable, with a value each, on every recipe YAML of the
# built-in corpus (kd_ramp_updates only where there is distillation).
DOCUMENTED_OPTIONS = {"average_checkpoints": "3", "optimizer_step_limit": "100", "grad_norm_every": "10",
                      "dynamic_batching": "{max_batch_length: 20, num_buckets: 4}", "kd_ramp_updates": "50"}


@pytest.mark.parametrize("yaml", ["hparams/synth/asr.yaml", "hparams/synth/student.yaml",
                                  "hparams/synth/train_kd.yaml", "hparams/synth/asr_wordpiece.yaml",
                                  "hparams/synth/cif.yaml", "hparams/synth/cif_kd.yaml",
                                  "hparams/timit/train_kd.yaml", "hparams/aishell1/cif_kd.yaml"])
def test_every_documented_option_is_settable_from_the_command_line(yaml, tmp_path):
    """As a recipe takes them: SpeechBrain's parse_arguments, the loader, and SpeechBrain saving the
    resolved hyperparams.yaml with the same overrides (which refused a mapping for a key declared null)."""
    import speechbrain as sb

    from hieradist_lobes.hparams import parse_arguments

    base = resolve_chain(yaml)[2][-1]
    # optimizer_step_limit is a SpeechBrain run option: every recipe takes it, whatever its YAML declares.
    options = {key: value for key, value in DOCUMENTED_OPTIONS.items()
               if key in open(base).read() or key == "optimizer_step_limit"}
    assert {"average_checkpoints", "dynamic_batching"} <= set(options)
    argv = [yaml, *(f"--{key}={value}" for key, value in options.items()), "--data_folder=/corpora/x",
            "--plm_path=/models/bert"][: 2 + len(options) + ("aishell1" in yaml)]
    hparams_file, run_opts, overrides = parse_arguments(argv)
    loaded = load_hparams(hparams_file, overrides)
    assert loaded.hparams["dynamic_batching"]["max_batch_length"] == 20
    assert loaded.hparams["dynamic_batching"]["num_buckets"] == 4
    assert loaded.hparams["average_checkpoints"] == 3
    for key in ("grad_norm_every", "kd_ramp_updates"):
        if key in options:
            assert loaded.hparams[key] == int(options[key])
    # A SpeechBrain run option: the Brain takes it from run_opts before the YAML's value (an int, not "100").
    assert run_opts["optimizer_step_limit"] == 100 and "optimizer_step_limit" in run_opts.overridden_args
    sb.create_experiment_directory(str(tmp_path / "run"), hyperparams_to_save=loaded.base_file,
                                   overrides=loaded.overrides)
    assert "max_batch_length: 20" in (tmp_path / "run" / "hyperparams.yaml").read_text()


@pytest.mark.parametrize("override, message", [
    ("dynamic_batching: {max_batch_lenght: 20}",
     r"sets dynamic_batching.max_batch_lenght, which dynamic_batching does not take; it takes max_batch_length, "),
    ("train_dataloader_opts: {batch_sise: 4}",
     r"sets train_dataloader_opts.batch_sise, which train_dataloader_opts does not take; it takes batch_size, "),
    ("modules: {encoder: 1}", r"sets modules.encoder, which modules does not take; it takes model$"),
    ("lr: {value: 0.1}", r"sets lr to a mapping \({'value': 0.1}\), but lr takes a number"),
])
def test_a_wrong_nested_override_is_named_with_the_keys_allowed_there(override, message):
    with pytest.raises(HparamsError, match=message):
        load_hparams("hparams/synth/asr.yaml", override)


def test_a_mapping_for_a_key_declared_null_says_how_to_declare_it(files):
    (files / "own.yaml").write_text("dynamic_batching: null\nlr: 0.1\n")
    with pytest.raises(HparamsError, match=r"sets dynamic_batching to a mapping, but .*own.yaml declares it as "
                                           r"None: declare it as \{\} there"):
        load_hparams(str(files / "own.yaml"), "dynamic_batching: {max_batch_length: 20}")


@pytest.mark.parametrize("yaml, key", [("hparams/synth/asr.yaml", "output_root"),
                                       ("hparams/synth/asr.yaml", "data_folder"),
                                       ("hparams/synth/cif.yaml", "data_folder"),
                                       ("hparams/synth/train_kd.yaml", "teacher_store"),
                                       ("hparams/synth/cif.yaml", "lm_train_text")])
def test_an_empty_path_is_named_like_a_missing_one(yaml, key):
    """--key= (an unset shell variable) gave a raw TypeError, or a folder called None."""
    import speechbrain as sb

    for argv in ([yaml, f"--{key}="], [yaml, f'--{key}=""']):
        _, _, overrides = sb.parse_arguments(argv)
        with pytest.raises(HparamsError, match=f"sets {key} to nothing \\(an unset shell variable\\?\\): {key} is "
                                               "a path; give one"):
            load_hparams(yaml, overrides)


def test_an_empty_path_for_a_key_declared_null_means_unset():
    assert load_hparams("hparams/synth/asr.yaml", "valid_csv: ").hparams["valid_csv"] is None


def test_a_run_option_that_is_no_integer_is_named():
    from hieradist_lobes.hparams import parse_arguments

    for value in ("ten", "0", "2.5"):
        with pytest.raises(HparamsError, match=f"optimizer_step_limit = '{value}': must be an integer >= 1"):
            parse_arguments(["hparams/synth/asr.yaml", f"--optimizer_step_limit={value}"])


def test_an_overlay_node_of_another_class_replaces_the_base_node_whole(tmp_path):
    (tmp_path / "base.yaml").write_text("lr: 0.1\nopt_class: !name:torch.optim.Adam\n    lr: !ref <lr>\n    fused: True\n")
    (tmp_path / "other.yaml").write_text("extends: base.yaml\nlr: 1.0\n"
                                         "opt_class: !name:torch.optim.Adadelta\n    lr: !ref <lr>\n    rho: 0.95\n")
    optimiser = load_hparams(str(tmp_path / "other.yaml")).hparams["opt_class"]([torch.nn.Parameter(torch.ones(1))])
    assert isinstance(optimiser, torch.optim.Adadelta)
    assert optimiser.defaults["rho"] == 0.95 and optimiser.defaults["lr"] == 1.0


def test_output_neurons_auto_is_counted_or_refused_by_a_command_that_cannot_count(tmp_path):
    (tmp_path / "base.yaml").write_text("words: [a, b]\noutput_neurons: auto\n"
                                        "layer: !new:torch.nn.Linear [2, !ref <output_neurons>]\n")
    counted = load_hparams(str(tmp_path / "base.yaml"), vocabulary_size=lambda values: len(values["words"]) + 3)
    assert counted.hparams["layer"].out_features == 5 and "output_neurons: 5" in counted.overrides
    assert load_hparams(str(tmp_path / "base.yaml"), "output_neurons: 7").hparams["layer"].out_features == 7
    with pytest.raises(HparamsError, match="output_neurons: auto is counted by the training recipes"):
        load_hparams(str(tmp_path / "base.yaml"))
    # A wrong value is named before the vocabulary is counted (counting prepares the data).
    (tmp_path / "base.yaml").write_text("lr: -1\noutput_neurons: auto\n")
    counted_data = []
    with pytest.raises(HparamsError, match="lr = -1"):
        load_hparams(str(tmp_path / "base.yaml"), vocabulary_size=lambda values: counted_data.append(1) or 5)
    assert counted_data == []


def test_librispeech_yaml_files_load_with_their_documented_sizes():
    data = "data_folder: /corpora/LibriSpeech\noutput_neurons: 1000\nplm_path: /models/bert-base-uncased"
    tea0, tea1, tea2, student = (load_hparams(f"hparams/librispeech/{name}.yaml", data).hparams
                                 for name in ("asr", "tea1", "tea2", "student"))
    assert (tea0["label_set"], tea0["unit"], tea0["sentencepiece_vocab_size"]) == ("sentencepiece", "wrd", 1000)
    assert tea0["sentencepiece_folder"] == "results/librispeech/manifests/sentencepiece"
    assert (tea0["rnn_layers"], tea0["rnn_neurons"], tea0["dec_neurons"], tea0["time_pooling_size"]) == (4, 1024, 1024, 4)
    assert tea0["opt_class"].func is torch.optim.Adadelta and tea0["dynamic_batching"]["max_batch_length"] == 200
    sizes = {name: sum(p.numel() for p in h["model"]["asr_model"].parameters())
             for name, h in (("tea0", tea0), ("tea1", tea1), ("tea2", tea2), ("student", student))}
    assert len(set(sizes.values())) == 4 and sizes["student"] == min(sizes.values())
    kd = load_hparams("hparams/librispeech/train_kd.yaml", data).hparams
    assert kd["teacher_store"] == "results/librispeech/teacher_store"
    store = load_hparams("hparams/librispeech/save_teachers.yaml", data).hparams
    assert store["store_top_k"] == 10 and len(store["teacher_dirs"]) == 3
    cif = load_hparams("hparams/librispeech/cif_kd.yaml", data).hparams
    assert (cif["dataset"], cif["unit"], cif["plm_size"], cif["distillation"]) == ("librispeech", "wrd", 768, "hieradist")
    assert cif["librispeech_parts"] == {"train": ["train-clean-100"], "valid": ["dev-clean"], "test": ["test-clean"]}


def test_an_option_given_twice_is_named_or_taken_once():
    from hieradist_lobes.hparams import parse_arguments

    with pytest.raises(HparamsError, match=r"sets --output_root twice \('a' and 'b'\)"):
        parse_arguments(["hparams/synth/asr.yaml", "--output_root=a", "--lr=0.1", "--output_root=b"])
    _, _, overrides = parse_arguments(["hparams/synth/asr.yaml", "--lr=0.1", "--lr=0.1"])
    assert overrides.strip() == "lr: 0.1"
