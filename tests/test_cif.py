import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hieradist_lobes.cif import CIF, cif_fire, fire_times, integrate_and_fire, quantity_loss

THRESHOLDS = [1.0, 0.5, 0.99, 1.7]


def reference_cif(alphas, hidden, threshold=1.0, tail_threshold=None, eps=1e-4):
    """The definition, literally: a loop over utterances and frames (float64 autograd ops)."""
    batch, frames, dim = hidden.shape
    rows, lengths, fire_frames, tails = [], [], [], []
    for b in range(batch):
        w = torch.zeros((), dtype=torch.float64)
        v = torch.zeros(dim, dtype=torch.float64)
        fires, at = [], []
        for t in range(frames):
            a, h = alphas[b, t], hidden[b, t]
            while w + a >= threshold - eps:
                fires.append(v + (threshold - w) * h)
                at.append(t)
                a = a - (threshold - w)
                w = torch.zeros((), dtype=torch.float64)
                v = torch.zeros(dim, dtype=torch.float64)
            w = w + a
            v = v + a * h
        tails.append(w)
        if tail_threshold is not None and w >= tail_threshold and w > 0:
            fires.append(v / w * threshold)
            active = [t for t in range(frames) if alphas[b, t] > 0]
            at.append(active[-1] if active else 0)
        rows.append(fires)
        lengths.append(len(fires))
        fire_frames.append(at)
    width = max(lengths, default=0)
    zero = torch.zeros(dim, dtype=torch.float64)
    if width:
        fired = torch.stack([torch.stack(r + [zero] * (width - len(r))) for r in rows])
    else:
        fired = torch.zeros(batch, 0, dim, dtype=torch.float64)
    frames_out = torch.tensor([f + [-1] * (width - len(f)) for f in fire_frames], dtype=torch.long).view(batch, width)
    return fired, torch.tensor(lengths), frames_out, torch.stack(tails) if tails else torch.zeros(0)


def clear_of_ties(alphas, threshold, tail_threshold, eps, margin=1e-9):
    """True unless a fire or the tail decision sits on a rounding-level tie.

    Exactly at a tie, the sequential and the cumulative arithmetic may round
    either way; both are right, so such draws are skipped.
    """
    cum = torch.cumsum(alphas.double(), dim=1)
    ratio = (cum + eps) / threshold
    if ((ratio - ratio.round()).abs() < margin).any():
        return False
    if tail_threshold is not None and alphas.shape[1]:
        left = cum[:, -1] - torch.floor(ratio[:, -1]) * threshold
        if ((left - tail_threshold).abs() < margin).any():
            return False
    return True


@st.composite
def cif_inputs(draw, max_alpha=None, exact_multiple=False, padding=False):
    batch = draw(st.integers(1, 4))
    frames = draw(st.integers(0 if not exact_multiple else 1, 10))
    dim = draw(st.integers(1, 3))
    threshold = draw(st.sampled_from(THRESHOLDS))
    top = draw(st.sampled_from([0.4, 1.0, 2.5])) if max_alpha is None else max_alpha
    values = draw(st.lists(st.floats(0.0, top * threshold, allow_subnormal=False), min_size=batch * frames,
                           max_size=batch * frames))
    alphas = torch.tensor(values, dtype=torch.float64).view(batch, frames)
    if padding and frames:
        keep = torch.tensor([draw(st.integers(0, frames)) for _ in range(batch)])
        alphas = alphas * (torch.arange(frames).unsqueeze(0) < keep.unsqueeze(1))
    if exact_multiple:
        tokens = torch.tensor([draw(st.integers(1, 6)) for _ in range(batch)], dtype=torch.float64)
        total = alphas.sum(dim=1)
        # Something to scale: an all-zero row, or one so small that scaling it overflows to inf
        # (CI drew a row of ~1e-308).
        alphas[total < 1e-6] = 1.0
        alphas = alphas * (tokens * threshold / alphas.sum(dim=1)).unsqueeze(1)
    tail = draw(st.sampled_from([None, 0.5, 0.3]))
    tail = None if tail is None else tail * threshold
    seed = draw(st.integers(0, 2**16))
    hidden = torch.randn(batch, frames, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return alphas, hidden, threshold, tail


def assert_same_as_reference(alphas, hidden, threshold, tail, eps=1e-4, check_grads=True, device="cpu"):
    """``cif_fire`` on ``device`` against the CPU definition: fires, counts, frames, tails, gradients."""
    assume(clear_of_ties(alphas, threshold, tail, eps))
    a1, h1 = alphas.to(device, copy=True).requires_grad_(True), hidden.to(device, copy=True).requires_grad_(True)
    a2, h2 = alphas.clone().requires_grad_(True), hidden.clone().requires_grad_(True)
    got = cif_fire(a1, h1, threshold, tail, eps)
    got = got._replace(**{name: getattr(got, name).cpu() for name in ("fired", "lengths", "frames", "tail_weight")})
    fired, lengths, frames, tails = reference_cif(a2, h2, threshold, tail, eps)
    assert got.lengths.tolist() == lengths.tolist()
    assert got.fired.shape == fired.shape
    assert got.frames.tolist() == frames.tolist()
    torch.testing.assert_close(got.fired, fired, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.tail_weight, tails.to(got.tail_weight.dtype), rtol=1e-9, atol=1e-9)
    if check_grads and fired.numel():
        weights = torch.randn(fired.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
        (got.fired * weights).sum().backward()
        (fired * weights).sum().backward()
        for mine, theirs in ((a1, a2), (h1, h2)):
            # No path from an input to the fires (e.g. every fire is θ·h) leaves grad None: zero.
            grad = torch.zeros_like(mine) if mine.grad is None else mine.grad.cpu()
            expected = torch.zeros_like(theirs) if theirs.grad is None else theirs.grad
            torch.testing.assert_close(grad, expected, rtol=1e-8, atol=1e-8)
    return got


@pytest.mark.device
@settings(max_examples=150, deadline=None)
@given(cif_inputs())
def test_matches_the_sequential_definition(device, inputs):
    assert_same_as_reference(*inputs, device=device)


@settings(max_examples=80, deadline=None)
@given(cif_inputs(exact_multiple=True))
def test_weights_summing_to_whole_tokens_fire_that_many_times(inputs):
    alphas, hidden, threshold, tail = inputs
    got = assert_same_as_reference(alphas, hidden, threshold, None)
    # The eps absorbs the rounding of the scaling: the last fire always happens.
    assert got.lengths.tolist() == torch.round(alphas.sum(dim=1) / threshold).long().tolist()


@settings(max_examples=80, deadline=None)
@given(cif_inputs(max_alpha=4.0))
def test_large_weights_fire_several_times_per_frame(inputs):
    assert_same_as_reference(*inputs)


@settings(max_examples=80, deadline=None)
@given(cif_inputs(padding=True))
def test_padding_frames_change_nothing(inputs):
    alphas, hidden, threshold, tail = inputs
    got = assert_same_as_reference(alphas, hidden, threshold, tail)
    # Whatever the padded hidden vectors are, zero weight makes them irrelevant (tail frames too).
    noisy = torch.where(alphas.unsqueeze(-1) > 0, hidden, torch.full_like(hidden, 1e3))
    again = cif_fire(alphas, noisy, threshold, tail)
    assert again.lengths.tolist() == got.lengths.tolist()
    torch.testing.assert_close(again.fired, got.fired)


@settings(max_examples=40, deadline=None)
@given(cif_inputs(), st.sampled_from([0.0, 1e-3, 0.05]))
def test_other_eps(inputs, eps):
    alphas, hidden, threshold, tail = inputs
    assert_same_as_reference(alphas, hidden, threshold, tail, eps=eps)


@pytest.mark.device
@settings(max_examples=40, deadline=None)
@given(cif_inputs())
def test_float32_agrees_with_the_float64_definition(device, inputs):
    alphas, hidden, threshold, tail = inputs
    assume(clear_of_ties(alphas.float().double(), threshold, tail, 1e-4, margin=1e-5))
    a32 = alphas.to(device, torch.float32, copy=True).requires_grad_(True)
    h32 = hidden.to(device, torch.float32, copy=True).requires_grad_(True)
    got = cif_fire(a32, h32, threshold, tail)
    fired, lengths, frames, _ = reference_cif(alphas.float().double(), hidden.float().double(), threshold, tail)
    assert got.fired.dtype == torch.float32 and got.tail_weight.dtype == torch.float32
    assert got.fired.device == a32.device
    assert got.lengths.tolist() == lengths.tolist()
    assert got.frames.tolist() == frames.tolist()
    torch.testing.assert_close(got.fired.cpu().double(), fired, rtol=1e-4, atol=1e-4)
    got.fired.sum().backward()
    assert all(x.grad is None or torch.isfinite(x.grad).all() for x in (a32, h32))


def test_integrate_and_fire_is_cif_fire():
    torch.manual_seed(0)
    alphas, hidden = torch.rand(3, 12), torch.randn(3, 12, 4)
    fired, lengths = integrate_and_fire(alphas, hidden, 1.0, 0.5)
    full = cif_fire(alphas, hidden, 1.0, 0.5)
    assert torch.equal(fired, full.fired) and torch.equal(lengths, full.lengths)


def test_hand_computed_fires():
    alphas = torch.tensor([[0.3, 0.9, 0.5, 2.2]], dtype=torch.float64)
    hidden = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=torch.float64).view(1, 4, 1)
    out = cif_fire(alphas, hidden, threshold=1.0, tail_threshold=0.5)
    # 0.3·1 + 0.7·10 | 0.2·10 + 0.5·100 + 0.3·1000 | 1·1000 | 0.9·1000 (0.9 ≥ 0.5: tail, rescaled by 1/0.9)
    expected = [7.3, 352.0, 1000.0, 1000.0]
    assert out.lengths.tolist() == [4]
    assert out.frames.tolist() == [[1, 3, 3, 3]]
    assert out.fired[0, :, 0].tolist() == pytest.approx(expected)
    assert out.tail_weight.item() == pytest.approx(0.9)


def test_all_zero_weights_fire_nothing():
    alphas = torch.zeros(3, 7, requires_grad=True)
    hidden = torch.randn(3, 7, 5, requires_grad=True)
    out = cif_fire(alphas, hidden, tail_threshold=0.5)
    assert out.fired.shape == (3, 0, 5) and out.frames.shape == (3, 0)
    assert out.lengths.tolist() == [0, 0, 0]
    out.fired.sum().backward()  # an empty graph still differentiates
    empty = cif_fire(torch.zeros(2, 0), torch.zeros(2, 0, 4))
    assert empty.fired.shape == (2, 0, 4) and empty.lengths.tolist() == [0, 0]


def test_bad_inputs_are_rejected_with_the_shapes():
    with pytest.raises(ValueError, match=r"alphas \(2, 5\) and hidden \(2, 6, 3\)"):
        integrate_and_fire(torch.rand(2, 5), torch.rand(2, 6, 3))
    with pytest.raises(ValueError, match=r"alphas \(2, 5, 1\) and hidden \(2, 5, 3\)"):
        integrate_and_fire(torch.rand(2, 5, 1), torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match="non-negative; found negative"):
        integrate_and_fire(-torch.rand(2, 5), torch.rand(2, 5, 3))
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite and non-negative; found NaN or infinite"):
            integrate_and_fire(torch.tensor([[1.0, bad]]), torch.rand(1, 2, 3))
    with pytest.raises(ValueError, match="threshold"):
        integrate_and_fire(torch.rand(2, 5), torch.rand(2, 5, 3), threshold=0.0)
    with pytest.raises(ValueError, match="eps"):
        integrate_and_fire(torch.rand(2, 5), torch.rand(2, 5, 3), threshold=0.5, eps=0.5)


# ---- the CIF module ----


def test_module_shapes_and_masked_padding():
    torch.manual_seed(0)
    cif = CIF(input_size=6, conv_channels=10).eval()
    hidden = torch.randn(3, 15, 6)
    out = cif(hidden, torch.tensor([1.0, 0.6, 0.2]))
    width = out.fired.shape[1]
    assert out.fired.shape == (3, width, 6) and out.fire_frames.shape == (3, width)
    assert out.alphas.shape == (3, 15) and out.alpha_sum.shape == (3,) and out.tail_weight.shape == (3,)
    assert out.fired_lengths.max().item() == width
    assert out.alphas[1, 9:].abs().sum() == 0 and out.alphas[2, 3:].abs().sum() == 0
    assert (out.alphas[0] > 0).all()
    torch.testing.assert_close(out.alpha_sum, out.alphas.sum(dim=1))
    # An utterance's weights do not depend on what pads it in the batch.
    alone = cif(hidden[1:2, :9], torch.tensor([1.0]))
    torch.testing.assert_close(alone.alphas[0], out.alphas[1, :9])
    torch.testing.assert_close(alone.fired[0], out.fired[1, : alone.fired.shape[1]])


def test_module_training_lines_fires_up_with_targets():
    torch.manual_seed(1)
    cif = CIF(input_size=4)
    hidden = torch.randn(3, 20, 4, requires_grad=True)
    lengths = torch.tensor([1.0, 0.75, 0.5])
    targets = torch.tensor([5, 7, 1])
    out = cif(hidden, lengths, targets)
    assert out.fired.shape == (3, 7, 4)
    assert out.fired_lengths.tolist() == [5, 7, 1] and out.length_mismatches == 0
    assert out.fire_frames[0, 5:].tolist() == [-1, -1] and (out.fire_frames[0, :5] >= 0).all()
    assert out.fired[2, 1:].abs().sum() == 0
    # The fires are those of the weights scaled to sum to the targets.
    scaled = out.alphas * (targets / (out.alpha_sum + cif.scale_eps)).unsqueeze(1)  # threshold 1
    torch.testing.assert_close(scaled.sum(dim=1), targets.float())
    masked = hidden * (torch.arange(20) < torch.tensor([20, 15, 10]).unsqueeze(1)).unsqueeze(-1)
    again = cif_fire(scaled, masked)
    torch.testing.assert_close(again.fired, out.fired)
    (out.fired.sum() + quantity_loss(out.alpha_sum, targets).sum()).backward()
    assert hidden.grad is not None and cif.conv.weight.grad is not None


def test_module_tail_only_at_inference():
    cif = CIF(input_size=2, tail_threshold=0.5).eval()
    with torch.no_grad():  # force α = sigmoid(large) ≈ 1 on every frame
        cif.conv.weight.zero_()
        cif.conv.bias.zero_()
        cif.linear.bias.fill_(20.0)
        cif.linear.weight.zero_()
    hidden = torch.randn(1, 8, 2)
    # round(0.55·8) = 4 valid frames at ≈1 each: 4 fires, nothing left for a tail.
    assert cif(hidden, torch.tensor([0.55])).fired_lengths.tolist() == [4]
    # 5 frames at threshold 2: 2 fires and ≈1 left (≥ 0.5): a tail fire, but not in training,
    # where the weights are scaled to 2 tokens' worth (4).
    cif.threshold = 2.0
    assert cif(hidden, torch.tensor([5 / 8])).fired_lengths.tolist() == [3]
    assert cif(hidden, torch.tensor([5 / 8]), torch.tensor([2])).fired_lengths.tolist() == [2]


def test_zero_weight_batch_through_the_module():
    cif = CIF(input_size=3, noise_threshold=1.0).eval()  # relu(sigmoid − 1) = 0 everywhere
    hidden = torch.randn(2, 6, 3)
    out = cif(hidden)
    assert out.fired.shape == (2, 0, 3) and out.fired_lengths.tolist() == [0, 0]
    trained = cif(hidden, target_lengths=torch.tensor([2, 3]))
    assert trained.fired.shape == (2, 3, 3) and trained.fired.abs().sum() == 0
    assert trained.length_mismatches == 2 and trained.fired_lengths.tolist() == [2, 3]


def test_relu_smooth_and_noise_options():
    torch.manual_seed(2)
    hidden = torch.randn(2, 9, 5)
    plain = CIF(input_size=5, relu=True, smooth_factor=1.5, noise_threshold=0.3).eval()
    features = torch.relu(plain.conv(hidden.transpose(1, 2)).transpose(1, 2))
    expected = torch.relu(torch.sigmoid(plain.linear(features).squeeze(-1)) * 1.5 - 0.3)
    torch.testing.assert_close(plain(hidden).alphas, expected)
    no_relu = CIF(input_size=5).eval()
    no_relu.load_state_dict(plain.state_dict())
    raw = torch.sigmoid(no_relu.linear(no_relu.conv(hidden.transpose(1, 2)).transpose(1, 2)).squeeze(-1))
    torch.testing.assert_close(no_relu(hidden).alphas, raw)


def test_module_float32_and_float64():
    for dtype in (torch.float32, torch.float64):
        cif = CIF(input_size=4).to(dtype)
        out = cif(torch.randn(2, 10, 4, dtype=dtype), torch.tensor([1.0, 0.8]), torch.tensor([3, 2]))
        assert out.fired.dtype == dtype and out.alphas.dtype == dtype


def test_module_rejects_bad_shapes():
    cif = CIF(input_size=4)
    with pytest.raises(ValueError, match=r"hidden must be \[batch, frames, 4\], got \(2, 10\)"):
        cif(torch.randn(2, 10))
    with pytest.raises(ValueError, match=r"got \(2, 10, 3\)"):
        cif(torch.randn(2, 10, 3))
    with pytest.raises(ValueError, match=r"lengths must be \[batch\] = \(2,\).*got \(3,\)"):
        cif(torch.randn(2, 10, 4), torch.ones(3))
    with pytest.raises(ValueError, match=r"target_lengths must be \[batch\] = \(2,\).*got \(2, 1\)"):
        cif(torch.randn(2, 10, 4), torch.ones(2), torch.ones(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="odd"):
        CIF(input_size=4, kernel_size=4)


def test_quantity_loss_by_hand():
    alpha_sum = torch.tensor([3.2, 1.0, 0.4], requires_grad=True)
    loss = quantity_loss(alpha_sum, torch.tensor([3, 2, 0]))
    assert loss.tolist() == pytest.approx([0.2, 1.0, 0.4])
    loss.sum().backward()
    assert alpha_sum.grad.tolist() == [1.0, -1.0, 1.0]
    assert quantity_loss(torch.tensor([3.0]), torch.tensor([2]), threshold=2.0).tolist() == [0.5]
    with pytest.raises(ValueError, match="differ in shape"):
        quantity_loss(alpha_sum, torch.tensor([1, 2]))


def test_fire_times_are_frame_starts():
    alphas = torch.tensor([[0.5, 0.6, 0.0, 0.9, 1.0], [1.2, 0.0, 0.0, 0.0, 0.0]])
    out = cif_fire(alphas, torch.zeros(2, 5, 1))
    assert out.frames.tolist() == [[1, 3, 4], [0, -1, -1]]
    times = fire_times(out.frames, out.lengths, 0.04)
    assert [[round(t, 6) for t in row] for row in times] == [[0.04, 0.12, 0.16], [0.0]]
    assert all(math.isfinite(t) for row in times for t in row)


def test_long_float32_utterance_does_not_drift():
    # Float64 cumulative weights: after thousands of frames the fires still match the
    # definition computed in float64 throughout.
    generator = torch.Generator().manual_seed(3)
    alphas = torch.rand(1, 3000, generator=generator) * 0.5
    hidden = torch.randn(1, 3000, 2, generator=generator)
    got = cif_fire(alphas, hidden, tail_threshold=0.5)
    fired, lengths, frames, _ = reference_cif(alphas.double(), hidden.double(), tail_threshold=0.5)
    assert got.lengths.tolist() == lengths.tolist() and got.frames.tolist() == frames.tolist()
    torch.testing.assert_close(got.fired.double(), fired, rtol=1e-5, atol=1e-5)


def test_non_contiguous_hidden():
    alphas = torch.rand(2, 11, generator=torch.Generator().manual_seed(4))
    hidden = torch.randn(2, 5, 11).transpose(1, 2)  # [2, 11, 5], not contiguous
    fired, lengths = integrate_and_fire(alphas, hidden)
    expected, expected_lengths = integrate_and_fire(alphas, hidden.contiguous())
    assert torch.equal(lengths, expected_lengths) and torch.allclose(fired, expected)


def test_eps_makes_the_last_fire_happen():
    alphas = torch.full((1, 10), 0.1, dtype=torch.float64)  # sums to 0.9999999999999999
    hidden = torch.ones(1, 10, 1, dtype=torch.float64)
    assert cif_fire(alphas, hidden).lengths.tolist() == [1]
    assert cif_fire(alphas, hidden, eps=0.0).lengths.tolist() == [0]
    assert reference_cif(alphas, hidden, eps=0.0)[1].tolist() == [0]


def _token_spans_by_loop(alphas, tokens, shift, threshold, onset, first_onset):
    """The plain reference: walk the frames, accumulate, interpolate each level within its frame."""
    levels = [threshold * level for k in range(tokens) for level in (k + (onset if k else first_onset), k + 1)]
    values = [float(a) for a in alphas]
    active = [i for i, a in enumerate(values) if a > 0]
    times = []
    for level in levels:
        total, placed = 0.0, None
        for frame, weight in enumerate(values):
            if total + weight >= level - 1e-9 and weight > 0:
                placed = (frame + (level - total) / weight) * shift
                break
            total += weight
        times.append(placed if placed is not None else (active[-1] + 1 if active else 0) * shift)
    return [(times[2 * k], max(times[2 * k], times[2 * k + 1])) for k in range(tokens)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.5), min_size=1, max_size=30), st.integers(0, 6), st.sampled_from([0.0, 0.1, 0.3]),
       st.sampled_from([0.0, 0.6]))
def test_token_spans_equal_a_frame_by_frame_reference(values, tokens, onset, first_onset):
    from hieradist_lobes.cif import token_spans

    alphas = torch.tensor(values, dtype=torch.float32)
    spans = token_spans(alphas, tokens, 0.08, onset=onset, first_onset=first_onset)
    expected = _token_spans_by_loop(alphas.tolist(), tokens, 0.08, 1.0, onset, first_onset)
    assert len(spans) == tokens
    for (start, end), (ref_start, ref_end) in zip(spans, expected):
        assert start == pytest.approx(ref_start, abs=1e-5) and end == pytest.approx(ref_end, abs=1e-5)
        assert start <= end
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)


def test_a_token_ends_where_it_fires_and_a_tail_token_at_the_last_weighted_frame():
    from hieradist_lobes.cif import token_spans

    alphas = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.9, 0.6, 0.0])
    fires = cif_fire(alphas[None], torch.ones(1, 7, 2), tail_threshold=0.4)
    assert fires.lengths.tolist() == [3] and fires.frames[0].tolist() == [2, 5, 5]  # the third: the tail
    spans = token_spans(alphas, 3, 0.1)
    assert spans[0] == (pytest.approx(0.1), pytest.approx(0.3))  # weight from frame 1, fires at the end of frame 2
    assert spans[1] == (pytest.approx(0.3), pytest.approx((5 + 0.1 / 0.6) * 0.1))  # fires a sixth into frame 5
    assert spans[2] == (pytest.approx((5 + 0.1 / 0.6) * 0.1), pytest.approx(0.6))  # the tail: to frame 5's end


def test_a_token_starts_where_the_weight_begins_not_in_frames_without_weight():
    from hieradist_lobes.cif import token_spans

    assert token_spans(torch.tensor([0.0, 0.0, 0.5, 0.5]), 1, 0.08) == [(pytest.approx(0.16), pytest.approx(0.32))]
    assert token_spans(torch.tensor([0.0]), 1, 0.08) == [(0.0, 0.0)]  # no weight at all: nothing to place


def fire_in_chunks(alphas, hidden, cuts, threshold, tail, eps=1e-4):
    """Streaming integrate-and-fire over the chunks between ``cuts``; the fires joined as cif_fire returns them."""
    from hieradist_lobes.cif import cif_fire_chunk, cif_flush

    state, pieces = None, []
    bounds = [0] + list(cuts) + [alphas.shape[1]]
    for begin, end in zip(bounds[:-1], bounds[1:]):
        fires, state = cif_fire_chunk(alphas[:, begin:end], hidden[:, begin:end], state, threshold, eps)
        pieces.append(fires)
    pieces.append(cif_flush(state, tail, threshold, eps))
    batch = hidden.shape[0]
    rows = [[] for _ in range(batch)]
    frames = [[] for _ in range(batch)]
    for piece in pieces:
        for b in range(batch):
            count = int(piece.lengths[b])
            rows[b].extend(piece.fired[b, :count])
            frames[b].extend(piece.frames[b, :count].tolist())
    return rows, frames, pieces[-1].tail_weight


@st.composite
def chunkings(draw, max_alpha=None):
    alphas, hidden, threshold, tail = draw(cif_inputs(max_alpha=max_alpha))
    frames = alphas.shape[1]
    kind = draw(st.sampled_from(["random", "one_frame", "short_last"]))
    if kind == "one_frame":
        cuts = list(range(1, frames))
    elif kind == "short_last" and frames >= 3:
        size = draw(st.integers(2, frames - 1))  # equal chunks, the last one shorter
        cuts = list(range(size, frames, size))
        assume(frames % size)
    else:
        cuts = sorted(draw(st.sets(st.integers(0, frames), max_size=frames)))
    return alphas, hidden, threshold, tail, cuts


@settings(max_examples=300, deadline=None)
@given(chunkings())
def test_chunk_by_chunk_cif_equals_one_shot(case):
    """Streaming CIF with its state carried across chunks gives one-shot cif_fire's fires: counts,
    frames and (to float rounding) vectors, for any chunking (empty chunks, one-frame chunks, a
    short last chunk), the tail fire at the end of the stream included."""
    alphas, hidden, threshold, tail, cuts = case
    whole = cif_fire(alphas, hidden, threshold, tail)
    rows, frames, tail_weight = fire_in_chunks(alphas, hidden, cuts, threshold, tail)
    assert [len(r) for r in rows] == whole.lengths.tolist()
    for b, (row, at) in enumerate(zip(rows, frames)):
        count = len(row)
        assert at == whole.frames[b, :count].tolist()
        if count:
            assert torch.allclose(torch.stack(row), whole.fired[b, :count], atol=1e-9, rtol=1e-9)
    assert torch.allclose(tail_weight, whole.tail_weight, atol=1e-12)


def test_chunk_by_chunk_cif_in_float32_matches_to_rounding():
    """Model-sized float32 inputs cut at every 7 frames: same counts and frames, vectors within 1e-5."""
    generator = torch.Generator().manual_seed(3)
    alphas = torch.rand(3, 200, generator=generator) * 0.6
    hidden = torch.randn(3, 200, 16, generator=generator)
    whole = cif_fire(alphas, hidden, 1.0, 0.5)
    rows, frames, _ = fire_in_chunks(alphas, hidden, list(range(7, 200, 7)), 1.0, 0.5)
    assert [len(r) for r in rows] == whole.lengths.tolist()
    for b, row in enumerate(rows):
        assert frames[b] == whole.frames[b, :len(row)].tolist()
        assert torch.allclose(torch.stack(row), whole.fired[b, :len(row)], atol=1e-5)


def test_streaming_cif_rejects_a_chunk_of_another_stream():
    from hieradist_lobes.cif import cif_fire_chunk

    _, state = cif_fire_chunk(torch.rand(2, 4), torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="state is of a stream"):
        cif_fire_chunk(torch.rand(1, 4), torch.randn(1, 4, 3), state)
