import torch
from speechbrain.processing.features import InputNormalization

from hieradist_lobes.running_stats import RunningStatistics


def test_restore_puts_back_batchnorm_and_input_normalization_statistics():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"norm": InputNormalization(), "bn": torch.nn.BatchNorm1d(3)})
    for _ in range(3):  # statistics that have moved already
        model["norm"](torch.randn(2, 5, 3), torch.ones(2))
        model["bn"](torch.randn(4, 3))
    before = {"norm": {key: (value.clone() if torch.is_tensor(value) else value)
                       for key, value in model["norm"]._statistics_dict().items()},
              "bn": {name: buffer.clone() for name, buffer in model["bn"].named_buffers()}}
    running_mean = model["bn"].running_mean  # a reference held elsewhere (e.g. by an optimiser or a hook)
    saved = RunningStatistics.of(model)
    model["norm"](torch.full((2, 5, 3), float("nan")), torch.ones(2))
    model["bn"](torch.full((4, 3), float("nan")))
    assert torch.isnan(model["bn"].running_mean).all() and model["norm"].count != before["norm"]["count"]
    saved.restore()
    after = model["norm"]._statistics_dict()
    assert after["count"] == before["norm"]["count"]
    assert torch.equal(after["glob_mean"], before["norm"]["glob_mean"])
    assert torch.equal(after["glob_std"], before["norm"]["glob_std"])
    for name, buffer in model["bn"].named_buffers():
        assert torch.equal(buffer, before["bn"][name])
    assert model["bn"].running_mean is running_mean


def test_restore_twice_gives_the_same_statistics():
    norm = InputNormalization()
    norm(torch.randn(2, 4, 3), torch.ones(2))
    saved = RunningStatistics.of(norm)
    for _ in range(2):
        norm(torch.randn(2, 4, 3) * 100, torch.ones(2))
        saved.restore()
        assert norm.count == 8  # the frames of the first batch only
    first = norm.glob_mean.clone()
    norm(torch.randn(2, 4, 3), torch.ones(2))
    saved.restore()
    assert torch.equal(norm.glob_mean, first)
