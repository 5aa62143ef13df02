"""Teacher inference helpers (the recipe runs are in test_recipes.py)."""

import pytest

from hieradist_lobes.hparams import HparamsError
from hieradist_lobes.teachers import MAX_ERROR_RATE, _error_rates, teacher_folders


def _model_folder(path):
    path.mkdir(parents=True)
    (path / "hyperparams.yaml").write_text("x: 1\n")
    return str(path)


def test_teacher_folders_from_the_list_or_the_file(tmp_path):
    first, second = _model_folder(tmp_path / "t0"), _model_folder(tmp_path / "t1")
    assert teacher_folders({"teacher_dirs": [first, second]}) == [first, second]
    listing = tmp_path / "teachers.txt"
    listing.write_text(f"# the ensemble\n{second}\n\n{first}\n")
    assert teacher_folders({"teacher_list_file": str(listing), "teacher_dirs": [first]}) == [second, first]


def test_teacher_folders_errors_name_the_problem(tmp_path):
    with pytest.raises(HparamsError, match="no teachers"):
        teacher_folders({"teacher_dirs": []})
    with pytest.raises(HparamsError, match="teacher_list_file .* does not exist"):
        teacher_folders({"teacher_list_file": str(tmp_path / "absent.txt")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(HparamsError, match="not a trained model folder .*empty"):
        teacher_folders({"teacher_dirs": [str(tmp_path / "empty")]})


def test_error_rates_are_capped():
    rates = _error_rates([[1, 2], [1, 2]], [[1, 2], [3, 3, 3, 3, 3, 3]])
    assert rates[0] == 0.0 and rates[1] == MAX_ERROR_RATE
