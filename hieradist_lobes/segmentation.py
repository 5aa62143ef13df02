"""Long recordings cut into segments at their quietest moments.

Encoders with self-attention cost time and memory quadratic in the input
length, and models trained on utterances of a few seconds transcribe those
best; a recording of minutes is therefore transcribed in segments.  A cut
inside a word would lose or split that word, so each cut is placed at the
lowest short-time energy (a pause) within the allowed range of segment
lengths, a simple energy-based voice activity decision with no model and no
parameters to tune beyond the lengths.

Example
-------
>>> import torch
>>> speech = torch.randn(16000)                  # 1 s of "speech"
>>> pause = torch.zeros(8000)                    # 0.5 s of silence
>>> signal = torch.cat([speech, pause, speech, pause, speech])
>>> spans = silence_cuts(signal, 16000, max_segment_seconds=2.0)
>>> [(round(a / 16000, 2), round(b / 16000, 2)) for a, b in spans]
[(0.0, 1.25), (1.25, 2.75), (2.75, 4.0)]
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

__all__ = ["frame_energies", "silence_cuts"]

WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.01


def frame_energies(signal: torch.Tensor, sample_rate: int, window_seconds: float = WINDOW_SECONDS,
                   hop_seconds: float = HOP_SECONDS) -> torch.Tensor:
    """Short-time log energy (dB) of a mono signal, one value per hop.

    Frame ``i`` covers samples ``[i·hop, i·hop + window)``.
    """
    window = max(1, int(round(window_seconds * sample_rate)))
    hop = max(1, int(round(hop_seconds * sample_rate)))
    signal = signal.float().reshape(-1)
    if signal.numel() < window:
        signal = torch.nn.functional.pad(signal, (0, window - signal.numel()))
    frames = signal.unfold(0, window, hop)
    return 10.0 * torch.log10(frames.pow(2).mean(dim=1) + 1e-10)


def silence_cuts(signal: torch.Tensor, sample_rate: int, max_segment_seconds: float = 30.0,
                 min_segment_seconds: Optional[float] = None, pause_seconds: float = 0.2
                 ) -> List[Tuple[int, int]]:
    """Split ``signal`` into consecutive spans of at most ``max_segment_seconds``.

    Each cut is in the middle of the quietest pause: the energy is averaged
    over stretches of ``pause_seconds`` (so that a real pause wins over a
    single quiet frame inside a word), and the cut goes to the middle of the
    run of stretches within 1 dB of the quietest, between ``min_segment_seconds`` (default: half the
    maximum) and ``max_segment_seconds`` after the previous cut.  The spans
    cover the whole signal without overlap.

    Arguments
    ---------
    signal : torch.Tensor
        Mono samples, shape ``(samples,)``.
    sample_rate : int
    max_segment_seconds : float
        The longest span.
    min_segment_seconds : float, optional
        The shortest span before the last one.
    pause_seconds : float
        Length of the stretch whose mean energy decides a cut.

    Returns
    -------
    list of (int, int)
        ``(start, end)`` sample indices.
    """
    if max_segment_seconds <= 0:
        raise ValueError(f"max_segment_seconds must be > 0, got {max_segment_seconds}")
    total = int(signal.reshape(-1).shape[0])
    hop = max(1, int(round(HOP_SECONDS * sample_rate)))
    longest = max(hop, int(max_segment_seconds * sample_rate))
    shortest = int((max_segment_seconds / 2 if min_segment_seconds is None else min_segment_seconds) * sample_rate)
    shortest = min(max(hop, shortest), longest)
    if total <= longest:
        return [(0, total)]
    energy = frame_energies(signal, sample_rate)
    width = max(1, int(round(pause_seconds / HOP_SECONDS)))
    # Mean energy of the stretch of `width` frames centred on each frame.
    smoothed = torch.nn.functional.avg_pool1d(energy[None, None], width, stride=1, padding=width // 2,
                                              count_include_pad=False)[0, 0][: energy.numel()]
    spans: List[Tuple[int, int]] = []
    start = 0
    while total - start > longest:
        first = (start + shortest) // hop
        last = min((start + longest) // hop, smoothed.numel() - 1)
        if last <= first:
            cut = start + longest
        else:
            window = smoothed[first:last + 1]
            lowest = int(torch.argmin(window))
            # The middle of the quiet run around the minimum: the middle of the pause.
            quiet = (window <= window[lowest] + 1.0).tolist()
            left, right = lowest, lowest
            while left > 0 and quiet[left - 1]:
                left -= 1
            while right < len(quiet) - 1 and quiet[right + 1]:
                right += 1
            quietest = first + (left + right) // 2
            # Frame i's window is centred half a window after i·hop.
            cut = min(quietest * hop + int(WINDOW_SECONDS / 2 * sample_rate), start + longest)
        cut = max(cut, start + 1)
        spans.append((start, cut))
        start = cut
    spans.append((start, total))
    return spans
