"""A local job's record in its root, its directory, and its phase as a machine sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.launcher.local import (
    Exit,
    Host,
    LocalRecord,
    LocalRun,
    Process,
    Seen,
    job_directory,
    jobs_directory,
    local_phase,
    local_view,
    record_for,
)
from jobs.launcher.status import JobView

HERE = Host("laptop", "boot-1")
PROCESS = Process(4242, "boot-1:987654")
RECORD = LocalRecord(
    "laptop", "/state/jobs/ml/prep", "/state/jobs/ml/prep/engine.log", ("run", "it"), PROCESS
)


@pytest.mark.parametrize(
    ("record", "seen", "phase", "reason"),
    [
        pytest.param(
            RECORD, Seen(HERE, alive=True), "Running", "process 4242 runs on host laptop", id="alive: Running"
        ),
        pytest.param(
            RECORD,
            Seen(HERE, alive=False, exit=Exit(0)),
            "Succeeded",
            "process 4242 exited with status 0",
            id="exit 0: Succeeded",
        ),
        pytest.param(
            RECORD,
            Seen(HERE, alive=True, exit=Exit(3)),
            "Failed",
            "process 4242 exited with status 3",
            id="an exit status wins over a process seen just before it ended",
        ),
        pytest.param(
            RECORD,
            Seen(HERE, exit=Exit(143, "SIGTERM")),
            "Failed",
            "process 4242 killed by SIGTERM (status 143)",
            id="killed by a signal",
        ),
        pytest.param(
            RECORD,
            Seen(HERE),
            "Failed",
            "process 4242 is gone without an exit status (killed?)",
            id="gone without a status",
        ),
        pytest.param(
            RECORD,
            Seen(Host("laptop", "boot-2")),
            "Failed",
            "process 4242 is gone: host laptop restarted since, and it left no exit status",
            id="the host restarted",
        ),
        pytest.param(
            RECORD,
            Seen(Host("server", "boot-9")),
            "Unknown",
            "on host laptop: process 4242 can be seen only there",
            id="another host: Unknown",
        ),
        pytest.param(
            LocalRecord("laptop", "/d", "/d/engine.log", ()),
            Seen(HERE),
            "Pending",
            "its process on host laptop has not started (yet)",
            id="no process recorded yet: Pending",
        ),
    ],
)
def test_the_phase_of_a_local_job(record: LocalRecord, seen: Seen, phase: str, reason: str) -> None:
    assert local_phase(record, seen) == (phase, reason)


def test_a_root_being_deleted_is_terminating_whatever_the_process() -> None:
    assert local_phase(RECORD, Seen(HERE, alive=True), deleting=True)[0] == "Terminating"


def test_the_record_round_trips_through_the_roots_annotations() -> None:
    annotations = RECORD.annotations()
    assert annotations["tidescale.io/target"] == "local"
    assert annotations["tidescale.io/pid"] == "4242"
    assert annotations["tidescale.io/process"] == "boot-1:987654"
    assert LocalRecord.of({"metadata": {"annotations": annotations}}) == RECORD
    assert LocalRecord.of({"metadata": {"annotations": {"tidescale.io/workload": "Pod/x"}}}) is None
    assert PROCESS.boot == "boot-1"


def test_a_record_about_to_start_names_the_log_in_the_jobs_directory() -> None:
    record = record_for(HERE, Path("/s/ml/prep"), LocalRun(("a", "b")))
    assert (record.host, record.log, record.command, record.process) == (
        "laptop",
        "/s/ml/prep/engine.log",
        ("a", "b"),
        None,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"TIDESCALE_JOBS_DIR": "/j", "XDG_STATE_HOME": "/x"}, "/j", id="TIDESCALE_JOBS_DIR"),
        pytest.param({"XDG_STATE_HOME": "/x"}, "/x/tidescale/jobs", id="XDG_STATE_HOME"),
        pytest.param({}, "/home/me/.local/state/tidescale/jobs", id="the default"),
    ],
)
def test_where_local_jobs_keep_their_directories(env: dict[str, str], expected: str) -> None:
    base = jobs_directory(env, Path("/home/me"))
    assert base == Path(expected)
    assert job_directory(base, "ml", "prep") == Path(expected) / "ml" / "prep"


def test_the_view_of_a_local_job_shows_its_process_and_says_which_host_when_unknown() -> None:
    view = JobView("prep", "ml", "Pipeline", "Pending", "its workload does not exist (yet)", "", "", "")
    running = local_view(view, RECORD, Seen(HERE, alive=True))
    assert (running.phase, running.workloads) == ("Running", ("Process/4242 on laptop: Running",))
    assert running.to_json()["local"] == {
        "host": "laptop",
        "pid": 4242,
        "directory": "/state/jobs/ml/prep",
        "log": "/state/jobs/ml/prep/engine.log",
        "command": ["run", "it"],
        "started": None,
        "exitCode": None,
    }
    elsewhere = local_view(view, RECORD, Seen(Host("server", "b")))
    assert elsewhere.workloads == ("Process/4242 on laptop: Unknown (on host laptop)",)
    done = local_view(view, RECORD, Seen(HERE, exit=Exit(0)))
    assert done.local is not None and done.local["exitCode"] == 0


def test_an_exit_file_cut_short_is_no_exit_status() -> None:
    assert Exit.from_json('{"exitCode": 0, "signal": null}') == Exit(0)
    assert Exit.from_json('{"exitCo') is None
