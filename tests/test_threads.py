"""The tour's CPU threading policy (tour.core.threads): its decisions for given machines, the user's settings
winning, and child processes inheriting the choice. No test here times anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tour.core import threads
from tour.core.threads import Machine, choose_threads

CLEAN: dict[str, str] = {}  # an environment where the user set nothing


@pytest.fixture(autouse=True)
def _nothing_applied(monkeypatch):
    monkeypatch.setattr(threads, "_applied", None)  # a test that applies must not change later device lines


def test_quiet_machine_keeps_openmp_defaults():
    p = choose_threads(CLEAN, Machine(cores=8, load=0.3))
    assert not p.busy and p.threads is None and p.env == {}  # exactly what torch does without the tour
    assert p.reason.startswith("8 thread(s), OpenMP's default spin-wait: quiet")


def test_busy_machine_takes_the_idle_cores_and_sleeps_while_waiting():
    p = choose_threads(CLEAN, Machine(cores=8, load=3.0))
    assert p.busy and p.threads == 5 and p.env["OMP_WAIT_POLICY"] == "PASSIVE"
    two = choose_threads(CLEAN, Machine(cores=2, load=4.7, others=2))  # the case: two torch jobs on 2 cores
    assert two.threads == 1 and two.env == {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    assert "2 other OpenMP process(es) on 2 usable core(s)" in two.reason


def test_other_openmp_processes_count_even_between_their_bursts():
    p = choose_threads(CLEAN, Machine(cores=4, load=0.2, others=2))  # their threads between two parallel regions
    assert p.busy and p.env["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize(("machine", "usable"), [
    (Machine(cores=16, quota=1.0), 1),  # docker --cpus=1: OpenMP alone would start 16 threads
    (Machine(cores=16, quota=2.5), 2),
    (Machine(cores=16, quota=0.25), 1),
    (Machine(cores=16, affinity=4), 4),  # taskset -c 0-3
    (Machine(cores=16, affinity=4, quota=3.0), 3),
])
def test_affinity_and_quota_bound_the_threads(machine, usable):
    p = choose_threads(CLEAN, machine)
    assert threads.usable_cores(machine) == usable and f"{usable} usable core(s) of 16" in p.reason
    if machine.quota:  # OpenMP knows nothing of quotas: the tour sets the count
        assert p.threads == usable and p.env["OMP_NUM_THREADS"] == str(usable)
    else:  # OpenMP already sizes its pool by the affinity mask
        assert p.threads is None and p.env == {}


def test_busy_under_a_quota_still_gets_at_least_one_thread():
    assert choose_threads(CLEAN, Machine(cores=16, quota=2.0, load=9.0)).threads == 1


@pytest.mark.parametrize("name", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"])
def test_a_users_wait_policy_always_wins(name):
    p = choose_threads({name: "ACTIVE" if name == "OMP_WAIT_POLICY" else "200"}, Machine(cores=2, load=8.0, others=3))
    assert not set(p.env) & set(threads.WAIT_VARS) and f"your {name}=" in p.reason
    assert p.env == {"OMP_NUM_THREADS": "1"}  # the count is still the tour's


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_users_thread_count_always_wins(name):
    p = choose_threads({name: "6"}, Machine(cores=2, load=8.0))
    assert p.threads is None and "OMP_NUM_THREADS" not in p.env and f"your {name}=6" in p.reason
    assert p.env == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_an_explicit_thread_count_wins():
    assert choose_threads(CLEAN, Machine(cores=2, load=8.0), threads=3).env["OMP_NUM_THREADS"] == "3"
    assert choose_threads(CLEAN, Machine(cores=64), threads=1).threads == 1


def test_off_means_torchs_defaults():
    env = {threads.REASON_VAR: "off"}
    p = threads.apply(choose_threads(env, Machine(cores=2, load=9.0)), env)
    assert p.env == {} and p.threads is None and "TOUR_THREADS=off" in p.reason
    assert env == {threads.REASON_VAR: "off"}


def test_apply_sets_only_the_chosen_variables_and_says_which():
    env: dict[str, str] = {"OMP_NUM_THREADS": "4"}  # the user's
    policy = threads.apply(choose_threads(env, Machine(cores=8, load=6.0)), env)
    assert env["OMP_NUM_THREADS"] == "4" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert env[threads.SET_VAR] == "OMP_WAIT_POLICY" and env[threads.REASON_VAR] == policy.reason
    assert threads.without_tour(env) == {"OMP_NUM_THREADS": "4"}  # the bench's baseline keeps only the user's
    again = choose_threads(env, Machine(cores=8, load=0.0))  # a child process keeps its parent's choice
    assert again.env == {} and again.reason == f"inherited: {policy.reason}"


def test_ranks_split_the_tours_threads_but_never_the_users():
    ours = {"OMP_NUM_THREADS": "8", threads.SET_VAR: "OMP_NUM_THREADS"}
    assert threads.for_ranks(2, ours)["OMP_NUM_THREADS"] == "4"
    assert threads.for_ranks(3, {**ours, "OMP_NUM_THREADS": "2"})["OMP_NUM_THREADS"] == "1"
    assert threads.for_ranks(2, {"OMP_NUM_THREADS": "8"})["OMP_NUM_THREADS"] == "8"  # the user's, untouched
    fresh = threads.for_ranks(2, {}, Machine(cores=6))
    assert fresh["OMP_NUM_THREADS"] == "3" and fresh[threads.SET_VAR] == "OMP_NUM_THREADS"


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_quota(str(tmp_path), "/nonexistent") == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_quota(str(tmp_path), "/nonexistent") is None
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_quota(str(tmp_path), "/nonexistent") == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_quota(str(tmp_path), "/nonexistent") is None


def test_observe_reads_this_machine():
    m = threads.observe()
    assert m.cores == os.cpu_count() and m.load >= 0 and m.others >= 0
    assert 1 <= threads.usable_cores(m) <= m.cores


def _child_report(env: dict[str, str]) -> dict:
    """A CLI-started process (`tour ...`: startup.start_up) that starts a child, as the doctor, export and torchrun
    do; the child reports its environment and torch's thread count."""
    child = ("import json, os, torch; print(json.dumps({'env': {k: os.environ.get(k) for k in "
             "('OMP_NUM_THREADS', 'OMP_WAIT_POLICY', 'TOUR_THREADS')}, 'threads': torch.get_num_threads()}))")
    parent = ("import subprocess, sys\nfrom tour.core import startup\nstartup.start_up()\n"
              f"sys.stdout.write(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True,"
              " check=True).stdout)")
    done = subprocess.run([sys.executable, "-c", parent], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_child_process_inherits_the_choice():
    env = {k: v for k, v in os.environ.items() if k not in (*threads.WAIT_VARS, *threads.COUNT_VARS,
                                                             threads.SET_VAR, threads.REASON_VAR)}
    got = _child_report(env)
    assert got["env"]["TOUR_THREADS"] and 1 <= got["threads"] <= os.cpu_count()
    if got["env"]["OMP_NUM_THREADS"]:  # chosen (a busy machine or a quota): the child's torch follows it
        assert got["threads"] == int(got["env"]["OMP_NUM_THREADS"])
    busy = ": busy," in got["env"]["TOUR_THREADS"]
    assert (got["env"]["OMP_WAIT_POLICY"] == "PASSIVE") == busy


def test_a_child_keeps_the_users_settings():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
    env.pop(threads.REASON_VAR, None)
    got = _child_report(env)
    assert got["threads"] == 1 and got["env"]["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "your OMP_NUM_THREADS=1" in got["env"]["TOUR_THREADS"]


def test_device_line_says_what_was_chosen(monkeypatch):
    from tour.core import device as dev

    policy = threads.Policy(threads=1, env={"OMP_NUM_THREADS": "1"}, reason="1 thread(s) (the idle cores), test")
    monkeypatch.setattr(threads, "_applied", policy)
    text = dev.describe("cpu")
    assert "\n  threads: 1 thread(s) (the idle cores), test" in text and "note:" not in text


def test_bench_load_arms(monkeypatch):
    from tour.tools import bench_load

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # set by the user (conftest does)
    default = bench_load.arm_env("default")
    assert "OMP_WAIT_POLICY" not in default and "OMP_NUM_THREADS" not in default
    tour = bench_load.arm_env("tour")
    assert tour["OMP_WAIT_POLICY"] == "PASSIVE" and tour[threads.REASON_VAR]
    assert bench_load.arm_env("GOMP_SPINCOUNT=1000")["GOMP_SPINCOUNT"] == "1000"


def test_bench_runs_the_load_section_only_when_asked():
    from tour.tools import bench

    assert "load" not in bench.sections(bench.Config())  # a plain `tour bench` starts no competitors
    assert bench.sections(bench.Config(load=2))[-1] == "load"
    assert bench.sections(bench.Config(only=["load"])) == ["load"]


# the policy through the import API: every stop's run() -------------------------------------------------------------
@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine is busy or quiet (what observe() sees), with no thread choice in the environment."""
    for name in (*threads.COUNT_VARS, threads.SET_VAR, threads.REASON_VAR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_run", None)

    def set_load(load: float) -> None:
        monkeypatch.setattr(threads, "observe", lambda: Machine(cores=4, load=load))

    return set_load


def _threads_inside(fn=None):
    import torch

    from tour.core.state import keeps_caller_state

    @keeps_caller_state
    def run(cfg=None):  # a stop's run() as the registry sees it
        if fn:
            fn()
        return torch.get_num_threads(), threads.current()

    return run()


def test_a_busy_machine_runs_a_stop_on_the_idle_cores_and_restores_the_callers_count(machine):
    import torch

    machine(3.0)  # 3 of 4 cores taken by others
    torch.set_num_threads(4)
    inside, policy = _threads_inside()
    assert inside == 1 and torch.get_num_threads() == 4
    assert policy.busy and "1 thread(s) for this run (the idle cores; 4 again after it): busy" in policy.reason
    assert threads.current() is None  # the run's share ends with the run


def test_the_run_never_takes_more_threads_than_the_caller_had(machine):
    import torch

    machine(2.0)  # 2 idle cores, but the caller chose 1
    torch.set_num_threads(1)
    assert _threads_inside()[0] == 1 and torch.get_num_threads() == 1


@pytest.mark.parametrize("setting", ["quiet", "OMP_NUM_THREADS", "TOUR_THREADS=off"])
def test_a_quiet_machine_or_the_users_choice_leaves_the_count(machine, monkeypatch, setting):
    import torch

    machine(0.2 if setting == "quiet" else 3.0)
    if setting == "OMP_NUM_THREADS":
        monkeypatch.setenv("OMP_NUM_THREADS", "4")
    if setting == "TOUR_THREADS=off":
        monkeypatch.setenv(threads.REASON_VAR, "off")
    torch.set_num_threads(4)
    assert _threads_inside()[0] == 4


def test_the_count_comes_back_when_the_run_fails(machine):
    import torch

    machine(3.5)
    torch.set_num_threads(3)
    with pytest.raises(ZeroDivisionError):
        _threads_inside(lambda: 1 / 0)
    assert torch.get_num_threads() == 3 and threads.current() is None


def test_a_run_inside_a_run_keeps_the_outer_share(machine, monkeypatch):
    import torch

    machine(3.0)
    torch.set_num_threads(4)
    looks = []
    monkeypatch.setattr(threads, "observe", lambda: looks.append(1) or Machine(cores=4, load=3.0))
    inner = []
    _threads_inside(lambda: inner.append(_threads_inside()[0]))
    assert inner == [1] and len(looks) == 1 and torch.get_num_threads() == 4


def test_every_stops_run_passes_through_the_policy():
    """One place, not one edit per stop: each registered stop's run() is wrapped by keeps_caller_state."""
    from tour.core.state import keeps_caller_state
    from tour.tools import registry

    wrapper_code = keeps_caller_state(lambda: None).__code__
    for name in registry.STOPS:
        try:
            run = registry.load(name).run
        except ImportError as e:  # an optional stack not installed here
            print(f"{name}: not importable here ({e})")
            continue
        assert run.__code__ is wrapper_code, f"{name}.run is not wrapped by keeps_caller_state"


def test_own_spinning_threads_are_not_other_work():
    assert threads.own_running() >= 1  # this thread at least, however many torch threads spin
    assert threads.runnable_now(samples=2, gap_s=0.0) >= 0


def test_the_doctor_reads_the_same_busy_signal(monkeypatch):
    """The doctor's facts take threads running now (threads.observe), not the 1-minute load average."""
    from tour.tools.doctor import facts as doctor_facts
    from tour.tools.doctor import rules
    from tour.tools.doctor.rows import Facts, ProbeResult

    monkeypatch.setattr(threads, "observe", lambda: Machine(cores=2, load=5.0))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0), raising=False)  # a lagging average says quiet
    assert doctor_facts.collect_facts().cpu["running"] == 5.0
    busy = Facts.from_dict({"cpu": {"count": 2, "usable": 2, "running": 5.0}, "env": {}})
    torch_row = ProbeResult("torch", "system", "ok", "", 0.0, True, data={"threads": 2})
    (d,) = rules.rule_cpu_oversubscribed(busy, [torch_row])
    assert "5.0 other threads running on 2 usable cores with OMP_WAIT_POLICY unset" in d.evidence
