import pytest
import torch

from hieradist_lobes.threads import available_cores, machine_description, set_threads, threads_per_process


@pytest.fixture()
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_each_process_of_a_node_gets_an_equal_share_of_the_cores(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads_per_process(cores=16) == 4
    assert threads_per_process(cores=2) == 1  # never 0
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert threads_per_process(cores=6) == 6
    assert 1 <= available_cores()


def test_recipes_set_the_share_or_the_users_choice(monkeypatch, restore_threads):
    monkeypatch.delenv("HIERADIST_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(available_cores()))
    assert set_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("HIERADIST_THREADS", "2")
    assert set_threads() == 2 and torch.get_num_threads() == 2
    for bad in ("two", "0"):
        monkeypatch.setenv("HIERADIST_THREADS", bad)
        with pytest.raises(ValueError, match="HIERADIST_THREADS"):
            set_threads()


def test_the_machine_description_names_cores_cpu_and_torch():
    line = machine_description()
    assert line.startswith(f"{available_cores()} CPU cores (")
    assert f"{torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}" in line
