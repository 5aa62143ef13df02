import pytest

from hieradist_lobes.hparams import HparamsError, load_hparams, resolve_chain, resolved_subtree


@pytest.fixture
def files(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "variant: null\nvariants: variants.yaml\nsize: 2\nlr: 0.1\nname: !ref base-<size>\n"
        "layer: !new:torch.nn.Linear\n    in_features: !ref <size>\n    out_features: 3\n"
        "model: !include:model.yaml\n    width: !ref <size>\n"
    )
    (tmp_path / "model.yaml").write_text("width: !PLACEHOLDER\nlayer: !new:torch.nn.Linear [!ref <width>, 1]\n")
    (tmp_path / "variants.yaml").write_text("big: {size: 8}\nfast: {lr: 0.5}\n")
    (tmp_path / "kd.yaml").write_text("extends: base.yaml\nlr: 0.01\nalpha: 0.5\n")
    (tmp_path / "deeper.yaml").write_text("extends: kd.yaml\nalpha: 0.7\n")
    return tmp_path


def test_base_alone(files):
    hparams = load_hparams(str(files / "base.yaml")).hparams
    assert hparams["size"] == 2 and hparams["name"] == "base-2" and hparams["layer"].in_features == 2
    assert hparams["model"]["layer"].in_features == 2


def test_precedence_base_overlay_variant_command_line(files):
    # The variant's lr beats the overlay's; the command line beats everything.
    assert load_hparams(str(files / "kd.yaml")).hparams["lr"] == 0.01
    loaded = load_hparams(str(files / "kd.yaml"), "variant: fast")
    assert loaded.hparams["lr"] == 0.5 and loaded.hparams["alpha"] == 0.5
    loaded = load_hparams(str(files / "deeper.yaml"), {"variant": "big", "lr": 0.2})
    hparams = loaded.hparams
    assert (hparams["size"], hparams["lr"], hparams["alpha"]) == (8, 0.2, 0.7)
    assert hparams["model"]["layer"].in_features == 8
    assert loaded.files[0].endswith("deeper.yaml") and loaded.base_file.endswith("base.yaml")


def test_resolved_model_subtree_reloads(files):
    loaded = load_hparams(str(files / "kd.yaml"), "variant: big")
    text = resolved_subtree(loaded, "model")
    assert "width: 8" in text and "!new:torch.nn.Linear" in text


def test_unknown_variant_and_key(files):
    with pytest.raises(HparamsError, match="'huge' is not in .*variants.yaml; known: big, fast"):
        load_hparams(str(files / "kd.yaml"), "variant: huge")
    with pytest.raises(HparamsError, match="unknown hyperparameter.*lrr"):
        load_hparams(str(files / "kd.yaml"), "lrr: 0.3")
    (files / "variants.yaml").write_text("typo: {sise: 3}\n")
    with pytest.raises(HparamsError, match="'typo' of .*variants.yaml sets undeclared hyperparameter.*sise"):
        load_hparams(str(files / "kd.yaml"), "variant: typo")


def test_missing_file_and_loop(files):
    with pytest.raises(HparamsError, match="does not exist"):
        resolve_chain(str(files / "absent.yaml"))
    (files / "a.yaml").write_text("extends: b.yaml\n")
    (files / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(HparamsError, match="loops"):
        resolve_chain(str(files / "a.yaml"))


def test_project_yaml_files_load():
    """Every shipped synth YAML loads, and the variants differ as documented."""
    teachers = {name: load_hparams("hparams/synth/asr.yaml", f"variant: {name}").hparams
                for name in ("tea0", "tea1", "tea2", "student")}
    sizes = {name: sum(p.numel() for p in h["model"]["asr_model"].parameters()) for name, h in teachers.items()}
    assert len(set(sizes.values())) == 4
    assert sizes["student"] < min(sizes[t] for t in ("tea0", "tea1", "tea2"))
    assert teachers["tea2"]["augmentation"] is None and teachers["tea0"]["augmentation"] is not None
    kd = load_hparams("hparams/synth/train_kd.yaml").hparams
    assert kd["brain_class"].__name__ == "DistillationBrain" and kd["output_folder"].endswith("student_weighted")
    store = load_hparams("hparams/synth/save_teachers.yaml").hparams
    assert len(store["teacher_dirs"]) == 3


def test_timit_yaml_files_load():
    """The ten TIMIT teachers differ as the original recipe's, from one base."""
    sizes = {}
    for index in range(10):
        hparams = load_hparams("hparams/timit/asr.yaml", f"variant: tea{index}\ndata_folder: /corpora/TIMIT").hparams
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
    assert 40e6 < params < 55e6  # the paper: 47.2 M
    kd = load_hparams("hparams/aishell1/cif_kd.yaml", paths).hparams
    assert kd["brain_class"].__name__ == "HieraDistBrain" and kd["output_folder"].endswith("cif_hieradist")
    assert (kd["acd_weight"], kd["acd_negatives"], kd["acd_temperature"], kd["lrd_weight"]) == (1.0, 700, 0.02, 0.01)
    assert kd["acd_proj"].w.out_features == 768 == kd["lrd_proj"].w.out_features
    assert load_hparams("hparams/aishell1/cif_plm_features.yaml", paths).hparams["store_kind"] == "plm"


def test_synth_cif_variants_choose_the_distillation_terms():
    for variant in ("acd", "lrd", "hieradist"):
        hparams = load_hparams("hparams/synth/cif_kd.yaml", f"variant: {variant}").hparams
        assert hparams["distillation"] == variant and hparams["output_folder"].endswith(f"cif_{variant}")
    assert load_hparams("hparams/synth/cif.yaml").hparams["brain_class"].__name__ == "CIFBrain"


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
])
def test_values_out_of_range_or_of_the_wrong_type_name_the_key(override, message):
    with pytest.raises(HparamsError) as caught:
        load_hparams("hparams/synth/train_kd.yaml", override)
    assert "hparams/synth/train_kd.yaml" in str(caught.value) and message in str(caught.value)


def test_every_problem_is_reported_at_once_and_references_are_resolved_first():
    with pytest.raises(HparamsError, match=r"ctc_weight = 2.0: .*; kd_alpha = -1"):
        load_hparams("hparams/synth/train_kd.yaml", {"kd_alpha": -1, "ctc_weight": 2.0})
    # acd_weight is checked after the overlay; a variant's values too.
    with pytest.raises(HparamsError, match="acd_temperature = -0.02"):
        load_hparams("hparams/synth/cif_kd.yaml", {"acd_temperature": -0.02})
