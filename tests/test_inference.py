"""CIFASR's helpers (loading and transcribing trained folders: test_cif_recipes.py)."""

from hieradist_lobes.inference import CIFASR, merge_pieces, segment_seconds_for


def test_segments_are_about_twice_the_training_utterances_within_limits():
    assert segment_seconds_for(2.36) == 4.72
    assert segment_seconds_for(0.3) == 2.0 and segment_seconds_for(40.0) == 30.0
    assert CIFASR.max_segment_seconds == 30.0


def test_wordpieces_merge_into_words_from_their_first_start_to_their_last_end():
    pieces = [("un", 0.1, 0.2), ("##believ", 0.2, 0.3), ("##able", 0.3, 0.5), ("news", 0.6, 0.7), ("##", 0.7, 0.8)]
    assert merge_pieces(pieces) == [("unbelievable", 0.1, 0.5), ("news", 0.6, 0.8)]
    assert merge_pieces([("##x", 0.0, 0.1), ("y", 0.1, 0.2)]) == [("##x", 0.0, 0.1), ("y", 0.1, 0.2)]
    assert merge_pieces([]) == []
