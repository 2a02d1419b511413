"""The local jobs' process shell on this machine, with real processes: a supervised command leaves its
output and exit status in its directory, is stopped with its whole group, and a pid that is no longer the
recorded process is never signalled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.launcher import processes
from jobs.launcher.local import Exit, LocalRecord, LocalRun, Process
from tests.waiting import wait_for


def ended(directory: Path) -> Exit | None:
    return processes.read_exit(directory)


def test_a_command_runs_in_its_directory_with_its_files_and_leaves_its_output_and_exit_status(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ml" / "job"
    run = LocalRun(("sh", "-c", "cat input.txt; echo oops >&2; exit 3"), {"input.txt": "hello\n"})

    process = processes.start(run, directory, owner="uid-1")

    status = wait_for(lambda: ended(directory), 30, "the exit status")
    assert status.code == 3 and status.signal == ""
    lines = list(processes.read_log(directory / "engine.log"))
    assert lines[0].startswith("# tidescale: ") and lines[0].endswith(
        "start: sh -c 'cat input.txt; echo oops >&2; exit 3'"
    )
    assert lines[1:3] == ["hello", "oops"]
    assert lines[3].endswith("exited with status 3")
    assert processes.recorded(directory) == ("uid-1", process)
    wait_for(lambda: not processes.running(process), 10, "the supervisor to exit after its command")
    assert list(processes.read_log(directory / "engine.log", tail=1)) == lines[-1:]


def test_a_stopped_job_is_gone_with_its_whole_group_and_says_it_was_terminated(tmp_path: Path) -> None:
    directory = tmp_path / "job"
    pidfile = directory / "child.pid"
    process = processes.start(
        LocalRun(("sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait")), directory, "u"
    )
    child = int(wait_for(lambda: pidfile.is_file() and pidfile.read_text().strip(), 30, "the child's pid"))
    assert processes.running(process) and processes.group_alive(process.pid)

    assert processes.stop(process, grace=10) == "SIGTERM"

    assert not processes.running(process) and not processes.group_alive(process.pid)
    assert processes.token_of(child) is None  # the grandchild went with the group
    status = wait_for(lambda: ended(directory), 10, "the exit status")
    assert (status.code, status.signal) == (143, "SIGTERM")
    assert processes.stop(process) is None  # nothing runs any more


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    directory = tmp_path / "job"
    ready = directory / "ready"
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(ready)!r}, 'w'); time.sleep(300)"
    )
    process = processes.start(LocalRun((sys.executable, "-c", script)), directory, "u")
    wait_for(ready.is_file, 30, "the command ignoring SIGTERM")

    assert processes.stop(process, grace=0.5) == "SIGKILL"
    assert not processes.group_alive(process.pid)


def test_a_pid_that_is_not_the_recorded_process_is_never_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        token = processes.token_of(bystander.pid)
        assert token is not None
        stranger = Process(bystander.pid, token.rpartition(":")[0] + ":1")  # same pid, another start time
        assert not processes.running(stranger)
        assert processes.stop(stranger) is None
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait()


def test_a_directory_where_another_jobs_process_runs_or_that_is_no_jobs_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "job"
    process = processes.start(LocalRun(("sleep", "300")), directory, "first")
    try:
        with pytest.raises(
            processes.LocalJobError, match=r"another job of that namespace and name \(root uid first\)"
        ):
            processes.start(LocalRun(("true",)), directory, "second")
    finally:
        processes.stop(process)
    # once it ended, its directory is made anew for the next job of that name
    again = processes.start(LocalRun(("true",)), directory, "second")
    wait_for(lambda: ended(directory), 30, "the second job's exit status")
    assert processes.recorded(directory) == ("second", again)
    assert "sleep 300" not in (directory / "engine.log").read_text()

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(processes.LocalJobError, match="is not a job's directory"):
        processes.start(LocalRun(("true",)), tmp_path / "mine", "third")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_a_directory_is_removed_only_for_the_root_that_owns_it(tmp_path: Path) -> None:
    directory = tmp_path / "ml" / "job"
    processes.start(LocalRun(("true",)), directory, "owner")
    wait_for(lambda: ended(directory), 30, "the exit status")
    assert not processes.remove(directory, "somebody-else") and directory.is_dir()
    assert processes.remove(directory, "owner")
    assert not directory.exists() and not directory.parent.exists()  # its empty namespace directory too


def test_following_a_log_returns_once_the_process_ended_with_its_last_lines(tmp_path: Path) -> None:
    directory = tmp_path / "job"
    script = "for i in 1 2 3; do echo line $i; sleep 0.3; done"
    process = processes.start(LocalRun(("sh", "-c", script)), directory, "u")

    lines = list(
        processes.read_log(
            directory / "engine.log", follow=True, alive=lambda: processes.running(process), poll=0.05
        )
    )

    assert [line for line in lines if line.startswith("line")] == ["line 1", "line 2", "line 3"]
    assert lines[-1].endswith("exited with status 0")


def test_the_observed_process_of_a_record(tmp_path: Path) -> None:
    here = processes.this_host()
    directory = tmp_path / "job"
    process = processes.start(LocalRun(("sleep", "300")), directory, "u")
    record = LocalRecord(here.name, str(directory), str(directory / "engine.log"), (), process)
    try:
        seen = processes.observe(record, here)
        assert seen.alive and seen.exit is None
        elsewhere = processes.observe(LocalRecord("another-host", str(directory), "", (), process), here)
        assert not elsewhere.alive and elsewhere.exit is None  # from another host nothing is looked at
    finally:
        processes.stop(process)
    seen = processes.observe(record, here)
    assert not seen.alive and seen.exit == Exit(143, "SIGTERM", seen.exit.finished if seen.exit else "")


def test_the_supervisor_reports_its_pid_once_it_leads_its_own_session(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobs.launcher.processes", str(tmp_path), "--", "sleep", "300"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(processes.SOURCE_ROOT)},
    )
    reported = json.loads(done.stdout)
    pid = int(reported["pid"])
    try:
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid
        assert processes.token_of(pid) == reported["token"]
    finally:
        os.killpg(pid, signal.SIGKILL)
    usage = subprocess.run(
        [sys.executable, "-m", "jobs.launcher.processes"], capture_output=True, check=False
    )
    assert usage.returncode == 2 and b"usage:" in usage.stderr
