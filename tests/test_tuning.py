from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from hieradist_lobes.tuning import choose_decoding_weights, choose_on_grid, main, token_error_rate

TEXTS = ["THE CAT", "A DOG SAT"]
LABELS = {0: "the", 1: "cat", 2: "a", 3: "dog", 4: "sat"}
RIGHT = [[0, 1], [2, 3, 4]]


@pytest.fixture()
def rows(tmp_path):
    rows = []
    for index, text in enumerate(TEXTS):
        path = str(tmp_path / f"u{index}.wav")
        soundfile.write(path, np.zeros(1600, dtype=np.float32), 16000)
        rows.append({"ID": f"u{index}", "wav": path, "wrd": text})
    return rows


def split(text):
    return text.lower().split()


def test_token_error_rate_counts_edits_over_reference_tokens(rows):
    """SpeechBrain's ErrorRateStats over the PLM's tokens."""
    hyps = [[0, 1], [2, 3, 3, 3]]  # right; then "sat" replaced and one "dog" inserted
    asr = SimpleNamespace(tokenizer=SimpleNamespace(ind2lab=LABELS),
                          transcribe_batch=lambda wavs, lens: (None, hyps[: len(wavs)]))
    assert token_error_rate(asr, rows, split, batch_size=16) == round(100 * 2 / 5, 2)


class FakeASR:
    """Right only with CTC weight 0.5 and LM weight 0.2; the second utterance wrong otherwise."""

    def __init__(self, with_lm=True):
        self.hparams = SimpleNamespace(ctc_weight_decode=0.0, lm_weight=0.0)
        self.tokenizer = SimpleNamespace(ind2lab=LABELS)
        self.lm = object() if with_lm else None
        self.decoded = []

    def transcribe_batch(self, wavs, lens):
        weights = (self.hparams.ctc_weight_decode, self.hparams.lm_weight)
        self.decoded.append(weights)
        errors = (weights[0] != 0.5) + (weights[1] != 0.2)
        second = RIGHT[1][: 3 - errors]
        return None, [RIGHT[0], second][: len(wavs)]


def test_weights_are_chosen_on_valid_ctc_first_then_lm(rows):
    asr = FakeASR()
    record = choose_decoding_weights(asr, rows, split, ctc_weights=[0.0, 0.5, 0.7], lm_weights=[0.0, 0.2],
                                     test_rows=rows)
    assert record["ctc_weight_decode"] == 0.5 and record["lm_weight"] == 0.2
    assert record["valid_by_ctc_weight"] == {0.0: 40.0, 0.5: 20.0, 0.7: 40.0}  # LM off while the CTC weight is chosen
    assert record["valid_by_lm_weight"] == {0.0: 20.0, 0.2: 0.0}
    assert record["valid_error_rate"] == 0.0 and record["test_error_rate"] == 0.0
    assert record["test_error_rate_plain"] == 40.0
    assert (asr.hparams.ctc_weight_decode, asr.hparams.lm_weight) == (0.5, 0.2)  # left at the choice


def test_without_an_lm_only_the_ctc_weight_is_chosen(rows):
    asr = FakeASR(with_lm=False)
    record = choose_decoding_weights(asr, rows, split, ctc_weights=[0.0, 0.5], lm_weights=[0.0, 0.2])
    assert record["lm_weight"] == 0.0 and "valid_by_lm_weight" not in record and "test_error_rate" not in record
    assert all(lm == 0.0 for _, lm in asr.decoded)


def test_keeping_the_models_ctc_weight_chooses_only_the_lm_weight(rows):
    """ctc_weights None (the command's --ctc_weights keep): no CTC sweep, the folder's weight stays."""
    asr = FakeASR()
    asr.hparams.ctc_weight_decode = 0.5
    record = choose_decoding_weights(asr, rows, split, ctc_weights=None, lm_weights=[0.0, 0.2], test_rows=rows)
    assert "valid_by_ctc_weight" not in record and record["ctc_weight_decode"] == 0.5
    assert record["valid_by_lm_weight"] == {0.0: 20.0, 0.2: 0.0} and record["lm_weight"] == 0.2
    assert record["test_error_rate"] == 0.0
    assert all(ctc == 0.5 for ctc, _ in asr.decoded[:3])  # valid at LM 0 and 0.2, then test: all at the kept 0.5
    without_lm = FakeASR(with_lm=False)
    without_lm.hparams.ctc_weight_decode = 0.5
    record = choose_decoding_weights(without_lm, rows, split, ctc_weights=None, lm_weights=[0.0, 0.2])
    assert record["valid_error_rate"] == 20.0 and len(without_lm.decoded) == 1  # valid scored once, as it is


def test_ties_go_to_the_smallest_weight():
    assert choose_on_grid({0.4: 10.0, 0.0: 12.0, 0.2: 10.0}) == 0.2
    assert choose_on_grid({0.0: 5.0, 0.3: 5.0}) == 0.0


@pytest.mark.parametrize("option", [["--ctc_weights", "0,1.5"], ["--lm_weights", "a,b"], ["--ctc_weights", ""],
                                    ["--ctc_weights", "kept"]])
def test_the_command_refuses_bad_grids_before_loading_anything(option, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--model_dir", "/nonexistent", "--valid_csv", "v.csv", "--plm_path", "/p", *option])
    assert stop.value.code == 2
    assert option[0] in capsys.readouterr().err
