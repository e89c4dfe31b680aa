"""The Runner protocol: one map of runners, one poll loop, and each runner's wait and schedules."""

from __future__ import annotations

import pytest

from voltpipe.errors import ConfigError, PipelineError
from voltpipe.runners import RUNNERS, TARGETS, get_runner, run_pipeline
from voltpipe.runners.base import RunState, follow_run
from voltpipe.testing.kfp_server import KfpTestServer
from voltpipe.testing.vertex_server import VertexTestServer


def _reads(*states: RunState):  # type: ignore[no-untyped-def]
    """A run that reports `states` one read at a time, counting the reads."""
    seen: list[str] = []

    def read() -> RunState:
        current = states[min(len(seen), len(states) - 1)]
        seen.append(current.state)
        return current

    return read, seen


def test_the_map_names_every_target():
    assert TARGETS == ("local", "vertex", "kfp")
    assert {t: get_runner(t).target for t in TARGETS} == {t: t for t in RUNNERS}
    with pytest.raises(ConfigError, match=r"unknown target 'laptop'; valid: local, vertex, kfp"):
        get_runner("laptop")


def test_follow_run_reads_until_a_terminal_state():
    read, seen = _reads(RunState("PENDING"), RunState("RUNNING"), RunState("DONE"))
    state = follow_run(
        read,
        what="run 1",
        url="http://x",
        terminal_states={"DONE", "BROKEN"},
        failed_states={"BROKEN"},
        poll_seconds=0,
    )
    assert state == "DONE"
    assert seen == ["PENDING", "RUNNING", "DONE"]


def test_follow_run_names_the_failed_state_and_the_services_message():
    read, seen = _reads(RunState("RUNNING"), RunState("BROKEN", "train: loss is NaN"))
    with pytest.raises(
        PipelineError, match=r"^run 1 ended in state BROKEN: train: loss is NaN \(see http://x\)$"
    ):
        follow_run(
            read,
            what="run 1",
            url="http://x",
            terminal_states={"DONE", "BROKEN"},
            failed_states={"BROKEN"},
            poll_seconds=0,
        )
    assert seen == ["RUNNING", "BROKEN"]


def test_follow_run_gives_up_after_the_timeout():
    read, seen = _reads(RunState("RUNNING"))
    with pytest.raises(PipelineError, match=r"^run 1 is still RUNNING after 0 s; follow it at u$"):
        follow_run(
            read,
            what="run 1",
            url="u",
            terminal_states={"DONE"},
            failed_states=(),
            poll_seconds=0.01,
            timeout_seconds=0.03,
        )
    assert len(seen) >= 2


def test_the_local_runner_has_no_templates_waits_or_schedules(make_config):
    local = get_runner("local")
    cfg = make_config()
    with pytest.raises(ConfigError, match="--template-tag runs a published template"):
        run_pipeline("training", cfg, target="local", template_tag="prod")
    with pytest.raises(ConfigError, match="builds its pipeline from the config"):
        local.submit(cfg, "training", "t.yaml", cache=True, wait=False)
    with pytest.raises(ConfigError, match="nothing to wait for"):
        local.wait(cfg, "run-1")
    with pytest.raises(ConfigError, match="local runs are not scheduled; schedules run on"):
        local.list_schedules(cfg)


@pytest.mark.integration
def test_kfp_runner_waits_for_a_submitted_run(make_config, training_template):
    kfp = get_runner("kfp")
    with KfpTestServer(run_states=["RUNNING", "RUNNING", "SUCCEEDED"]) as srv:
        cfg = make_config(f"kfp.host={srv.endpoint}")
        summary = kfp.submit(cfg, "training", training_template, cache=True, wait=False)
        assert summary["status"] == "submitted"
        assert kfp.wait(cfg, summary["run_id"], poll_seconds=0.01) == "SUCCEEDED"
        assert len(srv.find("GET", rf"/runs/{summary['run_id']}$")) == 3


@pytest.mark.integration
def test_kfp_runner_wait_names_the_failed_run(make_config, training_template):
    kfp = get_runner("kfp")
    with KfpTestServer(run_states=["FAILED"], failure_message="train: loss is NaN") as srv:
        cfg = make_config(f"kfp.host={srv.endpoint}")
        run_id = kfp.submit(cfg, "training", training_template, cache=True, wait=False)["run_id"]
        with pytest.raises(PipelineError, match=rf"KFP run {run_id} ended in state FAILED: train"):
            kfp.wait(cfg, run_id, poll_seconds=0.01)


@pytest.mark.integration
def test_vertex_runner_waits_for_a_submitted_job(monkeypatch, make_config, training_template):
    vertex = get_runner("vertex")
    with VertexTestServer(
        pipeline_states=["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_FAILED"],
        failure_message="step 'train' failed: out of memory",
    ) as srv:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.endpoint)
        cfg = make_config(f"vertex.api_endpoint={srv.endpoint}")
        summary = vertex.submit(cfg, "training", training_template, cache=True, wait=False)
        with pytest.raises(
            PipelineError,
            match=r"ended in state PIPELINE_STATE_FAILED: step 'train' failed: out of memory",
        ):
            vertex.wait(cfg, summary["run_id"], poll_seconds=0.01)
        assert srv.find("GET", rf"/pipelineJobs/{summary['run_id']}$")
