import os
import textwrap

import pytest

from hieradist_lobes.jobs import Job, JobError, ordered, run_jobs


def _script(folder, name, body):
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_jobs_must_name_what_they_wait_for_before_them():
    with pytest.raises(ValueError, match="two jobs are named 'a'"):
        ordered([Job("a", "x.py", []), Job("a", "y.py", [])])
    with pytest.raises(ValueError, match="'b' runs after c"):
        ordered([Job("b", "x.py", [], after=("c",)), Job("c", "y.py", [])])


@pytest.mark.parametrize("workers", [1, 2])
def test_jobs_run_after_what_they_need_and_report_their_results(tmp_path, workers):
    # "second" and "slow" may run side by side; "second" needs the file "first" writes.
    write = _script(tmp_path, "write", """
        import os, sys
        def main(argv):
            with open(argv[0], "w") as handle:
                handle.write(argv[1])
            print("wrote", argv[0])
            return {"threads": os.environ.get("HIERADIST_THREADS")}
        """)
    read = _script(tmp_path, "read", """
        import time
        def main(argv):
            time.sleep(float(argv[1]))
            with open(argv[0]) as handle:
                return handle.read()
        """)
    jobs = [Job("first", write, [str(tmp_path / "out.txt"), "hello"]),
            Job("second", read, [str(tmp_path / "out.txt"), "0"], after=("first",)),
            Job("slow", read, [str(tmp_path / "out.txt"), "0.5"], after=("first",))]
    results, lines = {}, []
    run_jobs(jobs, workers, str(tmp_path / "logs"), lambda job, result, seconds: results.update({job.name: result}),
             say=lines.append)
    assert results["second"] == results["slow"] == "hello"
    if workers == 1:
        assert results["first"] == {"threads": os.environ.get("HIERADIST_THREADS")} and not lines
    else:
        from hieradist_lobes.threads import available_cores

        # Each worker process gets its share of the cores; the job's output goes to its log.
        assert results["first"] == {"threads": str(max(1, available_cores() // 2))}
        assert "wrote" in (tmp_path / "logs" / "first.log").read_text()
        assert [line.split()[1:3] for line in lines][:2] == [["start", "first"], ["done", "first"]]
        assert sum(line.split()[1] == "done" for line in lines) == 3


def test_a_failed_job_stops_what_needs_it_and_names_its_log(tmp_path):
    fail = _script(tmp_path, "fail", """
        def main(argv):
            raise FileNotFoundError("no corpus in /nowhere")
        """)
    fine = _script(tmp_path, "fine", """
        import time
        def main(argv):
            time.sleep(0.5)
            return "ok"
        """)
    jobs = [Job("broken", fail, []), Job("alongside", fine, []), Job("needs_broken", fine, [], after=("broken",))]
    results = {}
    with pytest.raises(JobError, match=r"broken failed \(FileNotFoundError: no corpus in /nowhere\).*broken\.log"):
        run_jobs(jobs, 2, str(tmp_path / "logs"), lambda job, result, seconds: results.update({job.name: result}),
                 say=lambda line: None)
    # The job running alongside finished and was reported; the one that needed the failed job never ran.
    assert results == {"alongside": "ok"}
    assert "Traceback" in (tmp_path / "logs" / "broken.log").read_text()
    assert not (tmp_path / "logs" / "needs_broken.log").exists()


def test_workers_stop_when_the_parent_is_killed(tmp_path):
    """A killed demo leaves no training running unseen beside the run that resumes it."""
    import signal
    import subprocess
    import sys
    import time

    sleeper = _script(tmp_path, "sleeper", """
        import os, time
        def main(argv):
            with open(argv[0], "w") as handle:
                handle.write(str(os.getpid()))
            time.sleep(120)
        """)
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "from hieradist_lobes.jobs import Job, run_jobs\n"
        f"run_jobs([Job('a', {sleeper!r}, [{str(pid_file)!r}]), Job('b', {sleeper!r}, [{str(pid_file)!r}+'2'])], "
        f"2, {str(tmp_path / 'logs')!r}, lambda *args: None)\n")])
    try:
        deadline = time.time() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.time() < deadline and parent.poll() is None, "the job never started"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived its parent by 10 s")
    finally:
        parent.kill()
