import json
import os

import pytest

from pathlib import Path

import importlib.util

_spec = importlib.util.spec_from_file_location("tools_demo", Path(__file__).resolve().parents[1] / "tools" / "demo.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)
format_table, plot_summary, read_history, merge_previous = (demo.format_table, demo.plot_summary, demo.read_history,
                                                            demo.merge_previous)


def _summary(tmp_path):
    systems = {}
    for name, kind, strategy, rate in [("tea0", "teacher", None, 5.0), ("student_baseline", "student", None, 9.0),
                                       ("student_best", "student", "best", 7.5)]:
        folder = tmp_path / name / "model"
        folder.mkdir(parents=True)
        with open(tmp_path / name / "history.jsonl", "w") as handle:
            for epoch in (1, 2):
                handle.write(json.dumps({"epoch": epoch, "valid_error_rate": rate * (3 - epoch)}) + "\n")
        systems[name] = {"kind": kind, "strategy": strategy, "valid_error_rate": rate + 1, "test_error_rate": rate,
                         "params": 1000, "model_dir": str(folder)}
    return {"systems": systems, "teacher_store": "s", "test_manifest": "t"}


def test_table_and_chart(tmp_path):
    summary = _summary(tmp_path)
    table = format_table(summary)
    assert "student_best" in table and "7.50" in table and "best" in table
    assert read_history(summary["systems"]["tea0"]["model_dir"])[1]["valid_error_rate"] == 5.0
    plot_summary(summary, str(tmp_path), str(tmp_path / "summary.png"))
    with open(tmp_path / "summary.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(tmp_path / "summary.png") > 10000


def test_long_system_names_keep_the_columns_apart(tmp_path):
    summary = _summary(tmp_path)
    summary["systems"]["student_best_ties_average"] = {**summary["systems"]["student_best"]}
    row = next(line for line in format_table(summary).splitlines() if line.startswith("student_best_ties_average"))
    assert row.split()[:3] == ["student_best_ties_average", "student", "best"]


def test_table_shows_cif_systems_with_and_without_lm(tmp_path):
    summary = _summary(tmp_path)
    summary["systems"]["cif_hieradist"] = {"kind": "cif", "distillation": "hieradist", "valid_error_rate": 20.0,
                                           "test_error_rate": 21.5, "test_error_rate_lm": 19.25, "params": 5000,
                                           "model_dir": str(tmp_path / "cif_hieradist" / "model")}
    table = format_table(summary)
    row = next(line for line in table.splitlines() if line.startswith("cif_hieradist"))
    assert "hieradist" in row and "21.50" in row and "19.25" in row
    assert next(line for line in table.splitlines() if line.startswith("tea0")).rstrip().endswith("-")
    plot_summary(summary, str(tmp_path), str(tmp_path / "summary.png"))


def test_a_partial_run_keeps_the_systems_of_an_earlier_run(tmp_path):
    earlier = _summary(tmp_path)
    earlier["seconds"] = {"tea0": 10.0}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(earlier))
    now = {"systems": {"cif": {"kind": "cif", "test_error_rate": 30.0}}, "seconds": {"cif": 5.0}, "lm": {"x": 1}}
    merged = merge_previous(now, str(path))
    assert list(merged["systems"]) == ["tea0", "student_baseline", "student_best", "cif"]
    assert merged["seconds"] == {"tea0": 10.0, "cif": 5.0} and merged["lm"] == {"x": 1}
    assert merge_previous(now, str(tmp_path / "absent.json")) is now
    # A run that redoes systems lists them in its own order (jobs side by side finish in any order).
    redone = {"systems": {"tea0": earlier["systems"]["tea0"], "student_baseline": {"kind": "student"}},
              "seconds": {}}
    path.write_text(json.dumps({**earlier, "systems": {"student_baseline": {}, "cif": {}, "tea0": {}}}))
    assert list(merge_previous(redone, str(path))["systems"]) == ["cif", "tea0", "student_baseline"]


def test_the_parts_alternate_in_the_start_order():
    assert demo.alternate(["tea0", "tea1", "store", "student"], ["plm", "cif"]) == [
        "tea0", "plm", "tea1", "cif", "store", "student"]


def test_a_stopped_run_leaves_what_it_measured_and_the_end_clears_the_mark(tmp_path):
    path = str(tmp_path / "summary.json")
    earlier = {**_summary(tmp_path), "total_minutes": 61.0}
    demo.write_summary(earlier, path)
    partial = {"systems": {"cif": {"kind": "cif", "test_error_rate": 30.0}}, "seconds": {}, "in_progress": True}
    demo.write_summary(partial, path)
    on_disk = json.loads(Path(path).read_text())
    # The earlier run's systems stay; its total time is not this run's.
    assert on_disk["in_progress"] is True and "total_minutes" not in on_disk
    assert set(on_disk["systems"]) == {"tea0", "student_baseline", "student_best", "cif"}
    final = demo.write_summary({"systems": {}, "seconds": {}, "total_minutes": 12.5}, path)
    assert json.loads(Path(path).read_text()) == final
    assert "in_progress" not in final and final["total_minutes"] == 12.5 and "cif" in final["systems"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith("summary.json.tmp")]  # no temporary left


def test_seeds_give_means_and_standard_deviations_in_table_and_chart(tmp_path):
    summary = _summary(tmp_path)
    runs = {}
    for seed, rate in [(1, 8.0), (2, 9.0), (3, 13.0)]:
        runs[str(seed)] = {"valid_error_rate": rate + 1, "test_error_rate": rate, "params": 1000,
                           "model_dir": summary["systems"]["student_best"]["model_dir"]}
    entry = demo.seed_statistics(runs)
    assert entry["seeds"] == [1, 2, 3] and entry["test_error_rate_mean"] == 10.0 == entry["test_error_rate"]
    assert entry["test_error_rate_std"] == 2.65 and entry["valid_error_rate_std"] == 2.65
    assert "test_error_rate_lm_mean" not in entry  # no run was scored with the LM
    summary["systems"]["student_weighted"] = {"kind": "student", "strategy": "weighted", **entry}
    summary["seeds"] = [1, 2, 3]
    row = next(line for line in format_table(summary).splitlines() if line.startswith("student_weighted"))
    assert "10.00 ± 2.65" in row and " 3 " in row
    # The chart reads the sampled gradient norms next to the epochs.
    with open(tmp_path / "student_best" / "history.jsonl", "a") as handle:
        for update in (0, 50, 100):
            handle.write(json.dumps({"update": update, "epoch": 1, "loss_kd_seq": 1.0, "grad_norm_kd_seq": 3.0 + update,
                                     "loss_ctc": 0.5, "grad_norm_ctc": 2.0}) + "\n")
    assert [e["update"] for e in read_history(summary["systems"]["student_best"]["model_dir"], sampled=True)] == [
        0, 50, 100]
    assert all("update" not in e for e in read_history(summary["systems"]["student_best"]["model_dir"]))
    plot_summary(summary, str(tmp_path), str(tmp_path / "summary.png"))
    assert os.path.getsize(tmp_path / "summary.png") > 10000


def test_cif_output_neurons_is_what_the_cif_recipes_check_on_this_corpus(tmp_path):
    """The demo fits the CIF models' output size to the corpus (the tiny corpus has fewer
    PLM tokens than the 508 of hparams/synth/cif.yaml, which the recipes would refuse)."""

    from hieradist_lobes.data.manifest import write_manifest
    from hieradist_lobes.hparams import HparamsError
    from hieradist_lobes.plm import plm_tokenizer
    from hieradist_lobes.tokens import check_vocabulary

    path = str(tmp_path / "train.csv")
    write_manifest(path, [{"ID": f"u{index}", "duration": 1.0, "wav": "/a.wav", "spk_id": "s", "phn": "k",
                           "wrd": text, "char": "x"} for index, text in enumerate(["THE CAT", "A DOG SAT"])])
    neurons = demo.cif_output_neurons(path)
    assert neurons == 5 + 4  # the, cat, a, dog, sat + blank, bos, eos, unk
    tokenizer = plm_tokenizer(path, demo.synth_plm_splitter())
    check_vocabulary(tokenizer, neurons, "demo")
    with pytest.raises(HparamsError, match="set output_neurons: 9"):
        check_vocabulary(tokenizer, 508, "hparams/synth/cif.yaml")


def test_bad_parts_or_seeds_stop_before_anything_runs(tmp_path, capsys):

    for argv, message in ((["--parts", "kd,xyz"], "--parts 'kd,xyz': give one or more of kd, cif"),
                          (["--parts", ","], "--parts ',': give one or more of kd, cif"),
                          (["--seeds", "1234,one"], "--seeds '1234,one': give integers"),
                          (["--seeds=1,--5"], "--seeds '1,--5': give integers"),
                          (["--seeds", ""], "--seeds '': give integers")):
        with pytest.raises(SystemExit) as exited:
            demo.main(["--output_folder", str(tmp_path / "out"), *argv])
        assert exited.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_table_shows_the_ctc_head_and_the_same_units_control(tmp_path):
    summary = _summary(tmp_path)
    summary["systems"]["cif"] = {"kind": "cif", "distillation": "none", "valid_error_rate": 18.0,
                                 "test_error_rate": 15.5, "test_ctc_head_error_rate": 19.75, "params": 5000,
                                 "model_dir": str(tmp_path / "cif" / "model")}
    summary["systems"]["ctc_attention_wordpiece"] = {"kind": "control", "strategy": None, "valid_error_rate": 25.0,
                                                     "test_error_rate": 22.25, "params": 4000,
                                                     "model_dir": str(tmp_path / "control" / "model")}
    lines = format_table(summary).splitlines()
    assert lines[0].split()[-2:] == ["CTC", "head"]
    cif = next(line for line in lines if line.startswith("cif "))
    assert cif.split()[-1] == "19.75" and "15.50" in cif
    control = next(line for line in lines if line.startswith("ctc_attention_wordpiece"))
    assert control.split()[1] == "control" and "22.25" in control and control.rstrip().endswith("-")
    plot_summary(summary, str(tmp_path), str(tmp_path / "summary.png"))


def test_seed_statistics_cover_the_ctc_head_and_the_decoder_alone():
    runs = {"1": {"test_error_rate": 10.0, "test_ctc_head_error_rate": 12.0, "test_error_rate_no_ctc": 20.0,
                  "model_dir": "a", "params": 5},
            "2": {"test_error_rate": 14.0, "test_ctc_head_error_rate": 16.0, "test_error_rate_no_ctc": 24.0,
                  "model_dir": "b", "params": 5}}
    entry = demo.seed_statistics(runs)
    assert entry["test_ctc_head_error_rate"] == 14.0 and entry["test_ctc_head_error_rate_std"] == 2.83
    assert entry["test_error_rate_no_ctc_mean"] == 22.0


def test_bad_lm_weights_stop_before_anything_runs(capsys):

    for value in ("", "0,x", "-0.1"):
        with pytest.raises(SystemExit) as stop:
            demo.main(["--lm_weights", value, "--output_folder", "/nonexistent/never"])
        assert stop.value.code == 2 and "--lm_weights" in capsys.readouterr().err


def plan_without_training(tmp_path, monkeypatch):
    """A four-utterance corpus per split and a demo whose jobs only record themselves: returns the
    data folder, the list the planned jobs go to and the dict the CIF scoring fills."""
    from hieradist_lobes.data.manifest import write_manifest

    data = tmp_path / "data"
    rows = [{"ID": f"{spk}_{index}", "duration": 1.0, "wav": "/a.wav", "spk_id": spk, "phn": "k",
             "wrd": ["THE CAT", "A DOG SAT", "THE DOG", "A CAT"][index], "char": "x"}
            for spk in ("s1", "s2") for index in range(4)]
    for split in ("train", "valid", "test"):
        write_manifest(str(data / f"{split}.csv"), rows)
    monkeypatch.setattr(demo, "prepare_dataset", lambda *args, **kwargs: None)
    planned = []

    def run_jobs(jobs, workers, log_folder, finished):
        for job in jobs:
            planned.append(job)
            result = {"lm_dir": "lm"} if job.name.startswith("lm") else str(tmp_path / "store")
            if job.name.startswith(("cif", "ctc_attention")):
                result = {"test_error_rate": 10.0, "valid_error_rate": 11.0, "params": 5,
                          "model_dir": str(tmp_path / "out" / job.name / "model")}
            if job.name.startswith("score_"):  # hieradist_lobes/tuning.py's record
                result = {"lm_weight": 0.2, "valid_by_lm_weight": {0.0: 11.0, 0.2: 10.5}, "test_error_rate": 9.5}
            finished(job, result, 1.0)

    monkeypatch.setattr(demo, "run_jobs", run_jobs)
    scored = {}
    monkeypatch.setattr(demo, "check_cif_models", lambda systems, wav: scored.update(
        systems=sorted(name for name, system in systems.items() if system["kind"] == "cif")))
    monkeypatch.setattr(demo, "plot_summary", lambda *args: None)
    return data, planned, scored


def test_the_low_resource_regime_runs_alone_on_a_quarter_of_each_speaker(tmp_path, monkeypatch):
    """Part cif_low_resource plans its own subset, vocabulary, PLM store, LM and four CIF systems per
    seed with 4x the epochs, and nothing of the full regime; each finished run reaches the summary."""
    from hieradist_lobes.data.manifest import read_manifest

    data, planned, scored = plan_without_training(tmp_path, monkeypatch)
    summary = demo.run_demo(str(tmp_path / "out"), str(data), parts=["cif_low_resource"], seeds=(1, 2),
                            cif_epochs=3)
    names = [job.name for job in planned]
    systems = ["cif_low_resource", "cif_acd_low_resource", "cif_lrd_low_resource", "cif_hieradist_low_resource"]
    runs = [f"{name}_s{seed}" for name in systems for seed in (1, 2)]
    assert names[0] == "save_plm_features_low_resource" and names[9] == "lm_low_resource"
    assert sorted(names[1:9]) == sorted(runs) and sorted(names[10:]) == sorted(f"score_{run}" for run in runs)
    # Each run's LM weight is chosen with that regime's LM, after the run and the LM, in a job of its own.
    score = next(job for job in planned if job.name == "score_cif_lrd_low_resource_s2")
    assert score.after == ("cif_lrd_low_resource_s2", "lm_low_resource")
    low_lm = str(tmp_path / "out" / "lm_low_resource" / "model")
    assert score.argv[score.argv.index("--lm_folder") + 1] == low_lm
    model_dir = str(tmp_path / "out" / "cif_lrd_low_resource_s2" / "model")
    assert score.argv[score.argv.index("--model_dir") + 1] == model_dir
    assert score.argv[score.argv.index("--ctc_weights") + 1] == "keep"
    subset = str(tmp_path / "out" / "low_resource" / "train.csv")
    assert [row["ID"] for row in read_manifest(subset)] == ["s1_0", "s2_0"]
    lrd = next(job for job in planned if job.name == "cif_lrd_low_resource_s2")
    assert {f"--train_csv={subset}", "--number_of_epochs=12", "--seed=2", "--distillation=lrd",
            "--output_neurons=" + str(demo.cif_output_neurons(subset)),
            f"--teacher_store={tmp_path / 'out' / 'plm_store_low_resource'}"} <= set(lrd.argv)
    assert lrd.after == ("save_plm_features_low_resource",)
    assert scored == {"systems": sorted(systems)}
    lrd = summary["systems"]["cif_lrd_low_resource"]
    assert lrd["regime"] == "low_resource" and lrd["seeds"] == [1, 2]
    # The scoring jobs' records reach each run and the means.
    assert lrd["runs"]["2"]["lm_weight"] == 0.2 and lrd["runs"]["2"]["valid_by_lm_weight"] == {"0": 11.0, "0.2": 10.5}
    assert lrd["test_error_rate_lm"] == 9.5 and lrd["test_error_rate_lm_std"] == 0.0


def test_systems_trains_only_the_named_systems_with_what_they_need(tmp_path, monkeypatch):
    """--systems keeps the PLM store and the LM the CIF systems need and leaves the other systems out,
    in the table too."""
    data, planned, scored = plan_without_training(tmp_path, monkeypatch)
    summary = demo.run_demo(str(tmp_path / "out"), str(data), parts=["cif"], seeds=(1, 2), ablations=True,
                            only=["cif", "cif_acd_noramp"])
    names = [job.name for job in planned]
    trained = ["cif_s1", "cif_s2", "cif_acd_noramp_s1", "cif_acd_noramp_s2"]
    assert sorted(names) == sorted(["save_plm_features", "lm", *trained, *(f"score_{run}" for run in trained)])
    noramp = next(job for job in planned if job.name == "cif_acd_noramp_s1")
    assert demo.UNRAMPED in noramp.argv and noramp.after == ("save_plm_features",)
    assert list(summary["systems"]) == ["cif", "cif_acd_noramp"]
    assert scored["systems"] == ["cif", "cif_acd_noramp"]


def test_systems_naming_a_system_the_parts_do_not_train_stops_before_any_job(tmp_path, monkeypatch):
    data, planned, _ = plan_without_training(tmp_path, monkeypatch)
    with pytest.raises(demo.DemoError, match="no system cif_acd_noramp in the parts cif; they train: cif, "
                                             "ctc_attention_wordpiece, cif_acd, cif_lrd, cif_hieradist"):
        demo.run_demo(str(tmp_path / "out"), str(data), parts=["cif"], only=["cif_acd_noramp"])
    assert planned == []


def test_quick_gives_the_kd_models_their_epochs_and_trains_no_control(tmp_path, monkeypatch):
    """--quick: every KD model gets QUICK_EPOCHS (4, when the attentional decoder has found its
    alignment), the CIF models QUICK_CIF_EPOCHS with the shortened schedule, and no same-units
    control (it has not learnt at its share of the quick CIF time); the full demo keeps it."""
    data, planned, _ = plan_without_training(tmp_path, monkeypatch)
    demo.main(["--quick", "--parts", "cif", "--output_folder", str(tmp_path / "out"), "--data_folder", str(data)])
    names = [job.name for job in planned]
    assert "ctc_attention_wordpiece" not in names and {"cif", "cif_hieradist", "lm"} <= set(names)
    for job in planned:
        if job.name.startswith("cif"):
            assert f"--number_of_epochs={demo.QUICK_CIF_EPOCHS}" in job.argv
            assert set(demo.QUICK_CIF_OVERRIDES) <= set(job.argv)
    planned.clear()
    monkeypatch.setattr(demo, "check_students", lambda systems, wav: None)  # the control's folder is not real
    demo.main(["--parts", "cif", "--output_folder", str(tmp_path / "out"), "--data_folder", str(data)])
    assert "ctc_attention_wordpiece" in [job.name for job in planned]
    # The KD part: what --quick asks of run_demo.
    asked = {}
    monkeypatch.setattr(demo, "run_demo", lambda *args, **kwargs: asked.update(epochs=args[2], **kwargs))
    demo.main(["--quick"])
    assert asked["epochs"] == demo.QUICK_EPOCHS == 4 and asked["control"] is False
    demo.main([])
    assert asked["epochs"] is None and asked["control"] is True


def test_every_training_job_of_the_demo_logs_to_tensorboard(tmp_path, monkeypatch):
    data, planned, _ = plan_without_training(tmp_path, monkeypatch)
    monkeypatch.setattr(demo, "check_students", lambda systems, wav: None)  # the control's folder is not real
    demo.run_demo(str(tmp_path / "out"), str(data), parts=["cif"])
    recipes = [job for job in planned if "recipes" in job.script]
    assert recipes and all("--tensorboard=True" in job.argv for job in recipes)
    assert not any("--tensorboard=True" in job.argv for job in planned if "tuning" in job.script)
