import numpy as np
import pytest
import torch

from hieradist_lobes.data.pipelines import PLMFeatureItems
from hieradist_lobes.teacher_store import PLMRecord, StoreMetadata, TeacherStore, TeacherStoreError, TeacherStoreWriter


def test_plm_features_are_read_by_id_and_their_tokens_checked(tmp_path):
    metadata = StoreMetadata(labels=["<blank>", "<bos>", "<eos>", "<unk>", "a", "b"], teachers=[{"name": "plm"}],
                             frame_rate=0.0, kind="plm", feature_dim=4)
    features = np.arange(12, dtype=np.float32).reshape(3, 4)
    with TeacherStoreWriter(str(tmp_path), "train", metadata) as writer:
        writer.add("utt1", PLMRecord(features=features, tokens=[4, 5], duration=1.0))
    items = PLMFeatureItems(TeacherStore(str(tmp_path)))
    out = items("utt1", torch.tensor([4, 5]))
    assert out["plm_features"].dtype == torch.float32 and torch.equal(out["plm_features"], torch.from_numpy(features))
    with pytest.raises(TeacherStoreError, match="utterance utt1: .*\\[4, 5\\] differ from the student's \\[5, 4\\]"):
        items("utt1", torch.tensor([5, 4]))
    with pytest.raises(TeacherStoreError, match="not in the teacher store"):
        items("utt2", torch.tensor([4]))


def test_read_signal_converts_only_when_asked(tmp_path):
    import numpy as np
    import pytest
    import soundfile

    from hieradist_lobes.data.manifest import ManifestError
    from hieradist_lobes.data.pipelines import read_signal

    path = str(tmp_path / "stereo8k.wav")
    soundfile.write(path, np.random.default_rng(0).normal(0, 0.1, (4000, 2)).astype(np.float32), 8000)
    with pytest.raises(ManifestError, match=f"utterance u1: {path} has 2 channels.*mix_down: True"):
        read_signal("u1", path)
    signal = read_signal("u1", path, sample_rate=16000, resample=True, mix_down=True)
    assert signal.dim() == 1 and abs(signal.shape[0] - 8000) <= 1
    with pytest.raises(ManifestError, match="utterance u2: cannot read"):
        read_signal("u2", str(tmp_path / "absent.wav"))


@pytest.mark.parametrize("change, message", [
    ("rate", r"utterance u1: .*a.wav is 8000 Hz, the model expects 16000 Hz; did the file change after the "
             r"manifest check\?"),
    ("channels", r"utterance u1: .*a.wav has 2 channels; the model expects mono; did the file change"),
    ("length", r"utterance u1: .*a.wav lasts 0.200 s, the manifest says 0.5 s; did the file change"),
    ("nan", r"utterance u1: .*a.wav holds 3 non-finite sample\(s\) \(NaN or inf\), first at 0.250 s"),
])
def test_every_read_checks_what_the_manifest_check_promised(tmp_path, change, message):
    """A file replaced after the check (another rate, channel count, length, or NaN samples) stops at its
    read, named, instead of training as if it were right."""
    import soundfile

    from hieradist_lobes.data.manifest import ManifestError
    from hieradist_lobes.data.pipelines import read_signal

    path = str(tmp_path / "a.wav")
    soundfile.write(path, np.zeros(8000, dtype=np.float32), 16000)
    assert read_signal("u1", path, duration=0.5).shape == (8000,)
    samples = np.zeros(8000, dtype=np.float32)
    rate, subtype = 16000, "PCM_16"
    if change == "rate":
        samples, rate = np.zeros(4000, dtype=np.float32), 8000
    elif change == "channels":
        samples = np.zeros((8000, 2), dtype=np.float32)
    elif change == "length":
        samples = np.zeros(3200, dtype=np.float32)
    else:
        samples[4000:4003], subtype = [np.nan, np.inf, -np.inf], "FLOAT"
    soundfile.write(path, samples, rate, subtype=subtype)
    with pytest.raises(ManifestError, match=message):
        read_signal("u1", path, duration=0.5)


def test_a_dataset_item_is_checked_against_its_manifest_duration(tmp_path):
    import soundfile

    from hieradist_lobes.data.manifest import ManifestError
    from hieradist_lobes.data.pipelines import asr_dataset
    from hieradist_lobes.tokens import build_label_encoder

    soundfile.write(str(tmp_path / "a.wav"), np.zeros(16000, dtype=np.float32), 16000)
    path = tmp_path / "m.csv"
    path.write_text(f"ID,duration,wav,wrd\nu1,0.5,{tmp_path / 'a.wav'},HI\n")
    dataset = asr_dataset(str(path), build_label_encoder("wrd", "from_data", [["HI"]]), "wrd", sorting="ascending",
                          audio={"duration_tolerance": 0.1})
    with pytest.raises(ManifestError, match="lasts 1.000 s, the manifest says 0.5 s"):
        dataset[0]


def test_datasets_read_data_root_paths_and_keep_dollar_signs(tmp_path):
    import numpy as np
    import soundfile

    from hieradist_lobes.data.pipelines import asr_dataset
    from hieradist_lobes.tokens import build_label_encoder

    soundfile.write(str(tmp_path / "a.wav"), np.zeros(8000, dtype=np.float32), 16000)
    path = tmp_path / "m.csv"
    path.write_text("ID,duration,wav,wrd\nu1,0.5,$data_root/a.wav,COST $5\n")
    encoder = build_label_encoder("wrd", "from_data", [["COST", "$5"]])
    dataset = asr_dataset(str(path), encoder, "wrd", sorting="ascending", audio={"data_root": str(tmp_path)})
    item = dataset[0]
    assert item["sig"].shape[0] == 8000 and encoder.decode_ndim(item["tokens"].tolist()) == ["COST", "$5"]


def test_dynamic_batches_hold_at_most_the_given_seconds_of_audio():
    from speechbrain.dataio.dataset import DynamicItemDataset

    from hieradist_lobes.data.pipelines import train_loader_options

    durations = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 0.7, 1.2, 2.2, 2.9]
    dataset = DynamicItemDataset({f"u{i}": {"duration": str(d)} for i, d in enumerate(durations)})
    hparams = {"train_dataloader_opts": {"batch_size": 8, "shuffle": True, "num_workers": 0},
               "dynamic_batching": {"max_batch_length": 6, "num_buckets": 3}}
    options = train_loader_options(hparams, dataset)
    assert "batch_size" not in options and "shuffle" not in options and options["num_workers"] == 0
    batches = list(options["batch_sampler"])
    assert sorted(i for batch in batches for i in batch) == list(range(len(durations)))  # each utterance once
    assert all(sum(durations[i] for i in batch) <= 6 for batch in batches)
    assert len(batches) < len(durations)  # batches, not one utterance each
    with pytest.raises(ValueError, match="training set"):
        train_loader_options(hparams)
    with pytest.raises(ValueError, match="train_sorting: random"):
        train_loader_options({**hparams, "train_sorting": "ascending"}, dataset)
    with pytest.raises(ValueError, match="max_batch_length"):
        train_loader_options({**hparams, "dynamic_batching": {"num_buckets": 3}}, dataset)
