"""Long recordings cut at pauses: never inside an utterance of a concatenation."""

import os

import numpy as np
import pytest
import torch
from speechbrain.dataio.dataio import read_audio

from hieradist_lobes.data.manifest import read_manifest
from hieradist_lobes.segmentation import frame_energies, silence_cuts


def concatenated_test_set(corpus):
    rows = read_manifest(os.path.join(corpus, "test.csv"))
    signals = [read_audio(row["wav"]) for row in rows]
    joins = np.cumsum([signal.shape[0] for signal in signals])[:-1]
    return torch.cat(signals), joins, rows


def test_spans_cover_the_signal_and_respect_the_lengths():
    signal = torch.randn(16000 * 47)
    spans = silence_cuts(signal, 16000, max_segment_seconds=10.0)
    assert spans[0][0] == 0 and spans[-1][1] == signal.shape[0]
    assert all(end == next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
    assert all(end - start <= 10 * 16000 for start, end in spans)
    assert all(end - start >= 5 * 16000 for start, end in spans[:-1])
    assert silence_cuts(signal[:16000], 16000, max_segment_seconds=10.0) == [(0, 16000)]
    with pytest.raises(ValueError, match="max_segment_seconds"):
        silence_cuts(signal, 16000, max_segment_seconds=0)


def test_cuts_fall_between_the_utterances_of_a_concatenation(tiny_corpus):
    signal, joins, rows = concatenated_test_set(str(tiny_corpus))
    spans = silence_cuts(signal, 16000, max_segment_seconds=6.0)
    assert len(spans) >= 4
    for _, cut in spans[:-1]:
        # Within the silence around a join (the corpus pads each utterance with silence).
        assert np.min(np.abs(joins - cut)) < 0.25 * 16000, (cut / 16000, joins / 16000)


def test_frame_energies_are_per_hop():
    energies = frame_energies(torch.cat([torch.zeros(1600), torch.ones(1600)]), 16000)
    assert energies.shape[0] == (3200 - 400) // 160 + 1
    assert energies[0] < -90 and abs(float(energies[-1])) < 1e-3
