"""CIFASR's helpers (loading and transcribing trained folders: test_cif_recipes.py)."""

from hieradist_lobes.inference import CIFASR, merge_pieces, segment_seconds_for


def test_segments_are_about_twice_the_training_utterances_within_limits():
    assert segment_seconds_for(2.36) == 4.72
    assert segment_seconds_for(0.3) == 2.0 and segment_seconds_for(40.0) == 30.0
    assert CIFASR.max_segment_seconds == 30.0


def test_wordpieces_merge_into_words_at_their_first_time():
    pieces = [("un", 0.1), ("##believ", 0.2), ("##able", 0.3), ("news", 0.6), ("##", 0.7)]
    assert merge_pieces(pieces) == [("unbelievable", 0.1), ("news", 0.6)]
    assert merge_pieces([("##x", 0.0), ("y", 0.1)]) == [("##x", 0.0), ("y", 0.1)]
    assert merge_pieces([]) == []
