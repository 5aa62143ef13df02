import filecmp
import os
import random

import numpy as np
import pytest
import soundfile

from hieradist_lobes.data.manifest import SPLITS, read_manifest
from hieradist_lobes.data.validation import validate_manifest
from hieradist_lobes.data.phones import PHONES_39
from hieradist_lobes.data.synth import SIZES, SPLIT_VARIANTS, make_speakers, plan_corpus, prepare_synth


@pytest.fixture(scope="module")
def manifests(tiny_corpus):
    return {split: read_manifest(os.path.join(tiny_corpus, f"{split}.csv")) for split in SPLITS}


def test_tiny_manifests_pass_validation(tiny_corpus):
    """16 kHz mono audio whose duration matches the manifest, non-empty phn and wrd."""
    for split in SPLITS:
        rows = validate_manifest(os.path.join(tiny_corpus, f"{split}.csv"), sample_rate=16000,
                                 duration_tolerance=1e-3, require=("phn", "wrd", "char", "spk_id"))
        assert rows


def test_sizes(manifests):
    spec = SIZES["tiny"]
    assert sum(len(rows) for rows in manifests.values()) == spec.total() == 60
    assert len(manifests["train"]) == spec.train_speakers * spec.utterances_per_speaker
    assert SIZES["small"].total() == 2000 and SIZES["medium"].total() == 10000


def test_speakers_and_voices_are_disjoint(manifests):
    speakers = {split: {row["spk_id"] for row in rows} for split, rows in manifests.items()}
    assert not speakers["train"] & speakers["test"]
    assert not speakers["train"] & speakers["valid"]
    assert not speakers["valid"] & speakers["test"]
    variants = {split: set(names) for split, names in SPLIT_VARIANTS.items()}
    assert not variants["train"] & variants["test"] and not variants["train"] & variants["valid"]
    for split, rows in manifests.items():
        for row in rows:
            assert row["spk_id"].split("-")[0] in variants[split]


def test_no_test_sentence_in_train(manifests):
    train = {row["wrd"] for row in manifests["train"]}
    assert not train & {row["wrd"] for row in manifests["test"]}
    assert not train & {row["wrd"] for row in manifests["valid"]}


def test_labels(manifests):
    for rows in manifests.values():
        for row in rows:
            assert set(row["phn"].split()) <= set(PHONES_39)
            assert row["char"].replace(" ", "").replace("_", "") == row["wrd"].replace(" ", "")
            assert row["wrd"] == row["wrd"].upper()
            # Roughly 2.5 to 5 phones per word for English.
            ratio = len(row["phn"].split()) / len(row["wrd"].split())
            assert 1.5 < ratio < 6, row


def test_audio_is_speech_not_silence(manifests):
    row = manifests["test"][0]
    audio, rate = soundfile.read(row["wav"])
    assert rate == 16000 and audio.ndim == 1
    frames = audio[: len(audio) // 400 * 400].reshape(-1, 400)
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    # Loud speech frames and quiet (noise-only) frames, 20 dB or more apart.
    assert energy.max() - np.percentile(energy, 5) > 20


def test_deterministic_for_a_seed(tiny_corpus, tmp_path):
    other = tmp_path / "again"
    prepare_synth(str(other), size="tiny", seed=1234, num_workers=1, progress=False)
    for split in SPLITS:
        first = read_manifest(os.path.join(tiny_corpus, f"{split}.csv"))
        second = read_manifest(os.path.join(other, f"{split}.csv"))
        for a, b in zip(first, second):
            assert {k: v for k, v in a.items() if k != "wav"} == {k: v for k, v in b.items() if k != "wav"}
            assert filecmp.cmp(a["wav"], b["wav"], shallow=False)


def test_other_seed_other_corpus():
    first = plan_corpus("/x", "tiny", seed=1)
    second = plan_corpus("/x", "tiny", seed=2)
    assert [job.text for job in first["train"]] != [job.text for job in second["train"]]


def test_skipped_when_up_to_date_and_remade_when_options_change(tmp_path):
    folder = str(tmp_path / "corpus")
    prepare_synth(folder, size="tiny", seed=5, num_workers=1, progress=False)
    manifest = os.path.join(folder, "train.csv")
    stamp = os.stat(manifest).st_mtime_ns
    prepare_synth(folder, size="tiny", seed=5, num_workers=1, progress=False)
    assert os.stat(manifest).st_mtime_ns == stamp
    first_text = read_manifest(manifest)[0]["wrd"]
    prepare_synth(folder, size="tiny", seed=6, num_workers=1, progress=False)
    assert read_manifest(manifest)[0]["wrd"] != first_text
    # A deleted audio file makes the corpus out of date too.
    os.remove(read_manifest(manifest)[0]["wav"])
    prepare_synth(folder, size="tiny", seed=6, num_workers=1, progress=False)
    assert os.path.isfile(read_manifest(manifest)[0]["wav"])


def test_speakers_repeat_with_new_prosody_when_combinations_run_out():
    speakers = make_speakers("valid", 40, random.Random(0))
    assert len({s.spk_id for s in speakers}) == 40
    assert all(s.variant in SPLIT_VARIANTS["valid"] for s in speakers)


def test_unknown_size_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="huge"):
        prepare_synth(str(tmp_path), size="huge")


def test_lm_text_is_the_grammar_without_any_corpus_sentence(tiny_corpus):
    from hieradist_lobes.data.sentences import SentenceGenerator

    path = os.path.join(tiny_corpus, "lm_text.txt")
    lines = open(path, encoding="utf-8").read().splitlines()
    corpus = {row["wrd"] for split in SPLITS for row in read_manifest(os.path.join(tiny_corpus, f"{split}.csv"))}
    assert len(lines) == len(set(lines)) == 100_000
    assert not set(lines) & corpus
    vocabulary = SentenceGenerator().vocabulary()
    assert all(set(line.split()) <= vocabulary for line in lines[:1000])


def test_lm_text_is_written_once_and_again_when_its_options_change(tiny_corpus, tmp_path):
    import shutil

    from hieradist_lobes.data.synth import write_lm_text

    folder = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, folder, ignore=shutil.ignore_patterns("wav"))
    path = write_lm_text(str(folder), sentences=50)
    first = open(path).read()
    assert len(first.splitlines()) == 50
    before = os.stat(path).st_mtime_ns
    assert write_lm_text(str(folder), sentences=50) == path and os.stat(path).st_mtime_ns == before
    assert open(write_lm_text(str(folder), sentences=60)).read().splitlines()[:50] == first.splitlines()
    assert not [name for name in os.listdir(folder) if ".tmp-" in name]


def test_every_utterance_has_its_words_timed_in_order(tiny_corpus, manifests):
    from hieradist_lobes.data.synth import read_word_times

    times = read_word_times(str(tiny_corpus))
    rows = [row for split in SPLITS for row in manifests[split]]
    assert set(times) == {row["ID"] for row in rows}
    for row in rows:
        words = times[row["ID"]]
        assert [word for word, _, _ in words] == row["wrd"].split()
        assert all(start is not None and end is not None for _, start, end in words), row["ID"]
        bounds = [value for _, start, end in words for value in (start, end)]
        assert bounds == sorted(bounds) and all(start < end for _, start, end in words)
        assert 0.05 <= bounds[0] and bounds[-1] <= float(row["duration"]) - 0.05


def _frame_energy_db(audio, rate, start, end, frame=0.02):
    first, last = int(start * rate), int(end * rate)
    hop = int(frame * rate)
    frames = [audio[i:i + hop] for i in range(first, max(first + hop, last) - hop + 1, hop)]
    return np.array([10 * np.log10(np.mean(f ** 2) + 1e-12) for f in frames])


def test_word_times_agree_with_the_audio_energy(tiny_corpus, manifests):
    """Silence (noise only) before the first word's start; speech inside every word."""
    from hieradist_lobes.data.synth import read_word_times

    times = read_word_times(str(tiny_corpus))
    for row in manifests["test"][:6]:
        audio, rate = soundfile.read(row["wav"])
        words = times[row["ID"]]
        leading = _frame_energy_db(audio, rate, 0.0, words[0][1] - 0.01)
        loudest = _frame_energy_db(audio, rate, 0.0, len(audio) / rate).max()
        assert leading.max() < loudest - 25, row["ID"]
        for word, start, end in words:
            inside = _frame_energy_db(audio, rate, start, end)
            assert inside.max() > leading.max() + 15, (row["ID"], word)


def test_a_corpus_made_without_word_times_gets_them_at_the_next_preparation(tiny_corpus, tmp_path):
    import json
    import shutil

    from hieradist_lobes.data.synth import WORD_TIMES_FILE

    folder = tmp_path / "older"
    shutil.copytree(tiny_corpus, folder)
    os.remove(folder / WORD_TIMES_FILE)
    manifest = folder / "train.csv"
    stamp = os.stat(manifest).st_mtime_ns
    prepare_synth(str(folder), size="tiny", seed=1234, num_workers=2, progress=False)
    assert os.stat(manifest).st_mtime_ns == stamp  # the corpus is not made again
    assert json.load(open(folder / WORD_TIMES_FILE)) == json.load(open(tiny_corpus / WORD_TIMES_FILE))
