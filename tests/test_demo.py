import json
import os

from hieradist_lobes.demo import format_table, plot_summary, read_history


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
