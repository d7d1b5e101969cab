"""How many CPU threads the tour uses, and how they wait: its fair share of the cores on a busy machine.

PyTorch's CPU kernels run on an OpenMP thread pool (libgomp in the Linux wheels, Intel's libiomp elsewhere). By
default the pool has one thread per core and a thread that finishes its part *spins* (~300,000 turns of a busy
loop in libgomp) before it sleeps. On an idle machine that is the fastest choice. Beside another OpenMP program
it is the slowest: our spinning threads and theirs take each other's cores, a parallel region waits for a
thread that is not running, and the digits MLP trained 8-32x slower beside two small torch jobs (fair share: 3x).

`choose_threads()` decides, from what the machine is doing, the thread count and the wait policy; `apply()` puts them in
the environment; `configure()` does both on this machine. The tour's CLI calls `configure()` at start-up, before
torch is imported, and every child process (torchrun ranks, export's fresh process, the doctor's workers)
inherits the choice through the environment. Through the import API (`from tour import nlp; nlp.run(...)`),
`during_run()` wraps every stop's run(): on a machine busy at that moment it lowers torch's thread count to the
idle cores for the run, and gives the caller's count back after.

What must happen BEFORE `import torch`: the wait policy (`OMP_WAIT_POLICY`, `GOMP_SPINCOUNT`, `KMP_BLOCKTIME`)
is read once, when OpenMP starts with torch, and `OMP_NUM_THREADS` sizes the first pool. In a notebook, call

    import tour.core.threads; tour.core.threads.configure()   # first cell, before `import torch`

What still works AFTER: the thread count (`torch.set_num_threads`); `configure()` applies that part and says the
wait policy will only reach child processes. threadpoolctl (`threadpool_limits`) can likewise cap threads at run
time, but no library can change a running OpenMP's wait policy.

Never overridden: `OMP_WAIT_POLICY`, `GOMP_SPINCOUNT`, `KMP_BLOCKTIME`, `OMP_NUM_THREADS` (and `MKL_NUM_THREADS`)
set by the user, and a thread count passed to `configure(threads=...)`. `TOUR_THREADS=off` turns the policy off
(torch's own defaults, e.g. to compare). Imports no torch.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # how waiting OpenMP threads behave
COUNT_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # how many threads
REASON_VAR = "TOUR_THREADS"  # the choice, for child processes and their device line
SET_VAR = "TOUR_THREADS_SET"  # which variables the tour set (all others are the user's)
# Other work worth at least one core counts as busy: on a quiet desktop, fewer than one thread is runnable on
# average (an editor, a browser tab wake up for microseconds).
BUSY_AT = 1.0
# A busy machine's wait policy. Measured beside two torch jobs on 2 cores (python -m tour.tools.bench_load
# --compare): one thread + PASSIVE 113 ms per EfficientNet call, one thread alone 124, two threads + PASSIVE 164,
# GOMP_SPINCOUNT=1000 203, OpenMP's default 3,504. PASSIVE is also the standard variable that libgomp and
# Intel's/LLVM's OpenMP all read (GOMP_SPINCOUNT is libgomp's only, KMP_BLOCKTIME Intel's only).
BUSY_WAIT = {"OMP_WAIT_POLICY": "PASSIVE"}
OPENMP_LIBS = ("libgomp", "libiomp", "libomp")  # a process mapping one of these runs an OpenMP pool


@dataclass(frozen=True)
class Machine:
    """What `choose_threads()` looks at; `observe()` reads it from this machine, tests build it by hand."""

    cores: int = 1  # os.cpu_count()
    affinity: int | None = None  # CPUs this process may run on (sched_getaffinity), None if unknown
    quota: float | None = None  # cgroup CPU quota in cores (docker --cpus=1.5 -> 1.5), None if unlimited
    load: float = 0.0  # other work in cores right now: threads runnable (not the load average: it lags a minute)
    others: int = 0  # other processes running an OpenMP pool right now (torch, numpy+MKL, ...)


@dataclass(frozen=True)
class Policy:
    threads: int | None  # torch's intra-op thread count; None: torch's own default
    env: dict[str, str] = field(default_factory=dict)  # variables to set (never one the user set)
    reason: str = ""  # one line for the device line: what was chosen and why
    busy: bool = False


def usable_cores(m: Machine) -> int:
    """Cores this process can really use: the CPU count, cut by affinity (taskset, cpusets) and by the cgroup
    quota. OpenMP sizes its pool from the affinity mask but knows nothing of the quota, so `docker --cpus=1` on
    a 16-core host would otherwise run 16 threads in one core's time."""
    n = m.cores
    if m.affinity:
        n = min(n, m.affinity)
    if m.quota:
        n = min(n, max(1, math.floor(m.quota)))
    return max(1, n)


def is_busy(m: Machine) -> bool:
    """The one test of "is the CPU busy": other work worth a core, or another OpenMP pool running."""
    return max(m.load, m.others) >= BUSY_AT


def _situation(m: Machine) -> str:
    usable = usable_cores(m)
    return (f"{m.load:.1f} other thread(s) running" + (f", {m.others} other OpenMP process(es)" if m.others else "")
            + f" on {usable} usable core(s)" + (f" of {m.cores}" if usable < m.cores else ""))


def _user_set(env, names) -> list[str]:
    ours = set(env.get(SET_VAR, "").split(","))
    return [n for n in names if env.get(n, "").strip() and n not in ours]


def choose_threads(env=None, machine: Machine | None = None, threads: int | None = None) -> Policy:
    """The tour's threading for `machine` (pure: reads nothing else). `env`: the environment to respect
    (default os.environ); `threads`: an explicit count, which wins like a user's OMP_NUM_THREADS.

    Rules, in order:
    1. TOUR_THREADS=off: nothing is set. A choice inherited from a parent tour process (TOUR_THREADS set to its
       reason) is kept as it is.
    2. Threads: the user's OMP_NUM_THREADS / MKL_NUM_THREADS or `threads` if given; else on a quiet machine
       the usable cores (affinity, quota), and on a busy one the cores nobody else is using, at least 1.
    3. Wait policy: the user's OMP_WAIT_POLICY / GOMP_SPINCOUNT / KMP_BLOCKTIME if any is set; else OpenMP's
       default spin on a quiet machine (fastest there: PASSIVE made tiny ops 1.7x slower) and PASSIVE on a
       busy one, where spinning threads take each other's cores.
    """
    env = os.environ if env is None else env
    m = machine or Machine()
    if env.get(REASON_VAR, "").strip().lower() == "off":  # the user's opt-out: exactly torch's own behaviour
        return Policy(threads=None, reason="torch's and OpenMP's defaults (TOUR_THREADS=off)")
    if env.get(REASON_VAR):
        return Policy(threads=None, reason=f"inherited: {env[REASON_VAR]}")
    usable, busy = usable_cores(m), is_busy(m)
    user_count, user_wait = _user_set(env, COUNT_VARS), _user_set(env, WAIT_VARS)
    new_env: dict[str, str] = {}
    if threads is not None:
        count, why_count = max(1, threads), f"{threads} thread(s) as asked"
    elif user_count:
        count, why_count = None, f"threads from your {user_count[0]}={env[user_count[0]]}"
    elif busy:
        count = min(usable, max(1, round(usable - m.load)))
        why_count = f"{count} thread(s) (the idle cores)"
    else:  # OpenMP sizes its pool by the affinity mask itself; only a quota below that needs saying
        count = usable if usable < (m.affinity or m.cores) else None
        why_count = f"{usable} thread(s)" + (" (the quota)" if count else "")
    if count is not None and not user_count:
        new_env["OMP_NUM_THREADS"] = str(count)
    if user_wait:
        why_wait = f"wait policy from your {user_wait[0]}={env[user_wait[0]]}"
    elif busy:
        new_env.update(BUSY_WAIT)
        why_wait = "waiting threads sleep (" + " ".join(f"{k}={v}" for k, v in BUSY_WAIT.items()) + ")"
    else:
        why_wait = "OpenMP's default spin-wait"
    reason = f"{why_count}, {why_wait}: {'busy' if busy else 'quiet'}, {_situation(m)}"
    return Policy(threads=count, env=new_env, reason=reason, busy=busy)


# reading this machine -------------------------------------------------------------------------------------------
def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cgroup_quota(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> float | None:
    """The CPU quota in cores from cgroup v2 `cpu.max` ("150000 100000" = 1.5) or v1 `cpu.cfs_quota_us` /
    `cpu.cfs_period_us`; None when unlimited or unknown. Looks at the root (what a container sees) and at this
    process's own group."""
    own = [line.split(":", 2)[2].strip() for line in _read(proc_cgroup).splitlines() if line.startswith("0::")]
    found = []
    for d in {Path(root), *(Path(root + p) for p in own if p != "/")}:
        parts = _read(d / "cpu.max").split()
        if len(parts) == 2 and parts[0] != "max":
            found.append(int(parts[0]) / int(parts[1]))
    for v1 in ("cpu", "cpu,cpuacct"):
        q, p = _read(f"{root}/{v1}/cpu.cfs_quota_us").strip(), _read(f"{root}/{v1}/cpu.cfs_period_us").strip()
        if q.lstrip("-").isdigit() and int(q) > 0 and p.isdigit() and int(p) > 0:
            found.append(int(q) / int(p))
    return min(found) if found else None


def runnable_now(samples: int = 10, gap_s: float = 0.005) -> float:
    """Threads of OTHER processes runnable right now: the 4th field of /proc/loadavg less this process's own
    running threads, averaged over ~50 ms. The tour's one "is the CPU busy" signal (the doctor and the device
    line read it too). The 1-minute load average lags both ways: a job started a second ago shows here at once,
    and one that just ended no longer counts (with the load average, the tour ran 1.6x slower for a minute after a
    neighbour quit). Our own OpenMP threads, still spinning after the last op, are not someone else's work."""
    counts = []
    for i in range(samples):
        fields = _read("/proc/loadavg").split()
        if len(fields) >= 4 and "/" in fields[3]:
            counts.append(max(0, int(fields[3].split("/")[0]) - own_running()))
        if i + 1 < samples:
            time.sleep(gap_s)
    return statistics.fmean(counts) if counts else 0.0


def own_running() -> int:
    """This process's threads in state R (running or runnable), this one included: at least 1."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    states = (_read(f"/proc/self/task/{t}/stat").rsplit(")", 1)[-1].split()[:1] for t in tasks)
    return max(1, sum(st == ["R"] for st in states))


def openmp_processes(limit: int = 500) -> int:
    """Other processes with an OpenMP pool that are running now: multi-threaded, state R, and mapping libgomp,
    libiomp or libomp. Reads only /proc/PID/stat for most processes, /proc/PID/maps for the few candidates."""
    me, count = os.getpid(), 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != me][:limit]
    except OSError:
        return 0
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat").rsplit(")", 1)
        fields = stat[1].split() if len(stat) == 2 else []
        if len(fields) < 18 or fields[0] != "R" or int(fields[17]) < 2:  # state, num_threads
            continue
        maps = _read(f"/proc/{pid}/maps")
        count += any(lib in maps for lib in OPENMP_LIBS)
    return count


def cores_here() -> Machine:
    """Only the fixed part of this machine: cores, affinity, quota (cheap; no load, no process scan)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    quota = cgroup_quota() if sys.platform.startswith("linux") else None
    return Machine(cores=os.cpu_count() or 1, affinity=affinity, quota=quota)


def observe() -> Machine:
    """This machine now: cores, affinity, cgroup quota, threads running, other OpenMP processes (~50-150 ms).
    Without /proc (macOS, Windows) the 1-minute load average stands in for the threads running."""
    if not Path("/proc/loadavg").exists():
        try:
            return replace(cores_here(), load=os.getloadavg()[0])
        except (AttributeError, OSError):  # not on every platform
            return cores_here()
    return replace(cores_here(), load=runnable_now(), others=openmp_processes())


# applying it ----------------------------------------------------------------------------------------------------
_applied: Policy | None = None  # what this process applied, for the device line


def apply(policy: Policy, env=None) -> Policy:
    """Put `policy` into `env` (default os.environ) for this process's OpenMP, if torch is not loaded yet, and
    for every child process. With torch already imported only the thread count can still change here
    (torch.set_num_threads); the reason then says so."""
    global _applied
    env = os.environ if env is None else env
    if not policy.env and policy.threads is None and env.get(REASON_VAR):  # off, or inherited: nothing to do
        return policy
    env.update(policy.env)
    env[SET_VAR] = ",".join(policy.env)
    env[REASON_VAR] = policy.reason
    torch = sys.modules.get("torch")
    if torch is not None and policy.threads is not None and env is os.environ:
        torch.set_num_threads(policy.threads)
        if policy.env.keys() & set(WAIT_VARS):
            policy = Policy(policy.threads, policy.env, policy.reason + " (torch was already imported: the wait "
                            "policy reaches child processes only)", policy.busy)
    if env is os.environ:
        _applied = policy
    return policy


def configure(threads: int | None = None) -> Policy:
    """Choose for this machine now and apply it. Call it first thing, before `import torch` (see above)."""
    return apply(choose_threads(machine=observe(), threads=threads))


def current() -> Policy | None:
    """What governs this process's threads: a running stop's busy-machine share (`during_run`), the policy applied
    here, or the one inherited from a parent tour process through the environment; None when the tour chose
    nothing (torch's defaults, or the user's)."""
    if _run is not None:
        return _run
    if _applied is not None:
        return _applied
    if os.environ.get(REASON_VAR):
        return choose_threads()
    return None


# while a stop runs ----------------------------------------------------------------------------------------------
_run: Policy | None = None  # the share a running stop took on a busy machine, for its device line


@contextmanager
def during_run():
    """Around every stop's `run()` (tour.core.state.keeps_caller_state applies it), so a stop imported in a
    notebook or script gets the policy the `tour` command gets: on a machine that is busy NOW, torch runs on the
    idle cores' worth of threads (never more than the caller had), and the caller's count comes back after.
    Beside other torch jobs, all cores' threads made `nlp.run()` 10x slower than the command line.

    Only the thread count: the wait policy is fixed once torch has started (configure() before `import torch`
    sets it). Nothing changes with TOUR_THREADS=off, with the user's OMP_NUM_THREADS / MKL_NUM_THREADS, on a
    quiet machine, or inside another stop's run (the outer one chose)."""
    global _run
    if _run is not None or os.environ.get(REASON_VAR, "").strip().lower() == "off" or \
            _user_set(os.environ, COUNT_VARS):
        yield
        return
    m = observe()
    policy = choose_threads(without_tour(os.environ), m)  # what a fresh `tour` process would pick now
    if not policy.busy or policy.threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    share = min(before, policy.threads)
    if share == before:  # already no more than the idle cores (the `tour` command chose at start-up, or the caller)
        yield
        return
    spins = "" if any(os.environ.get(v) for v in WAIT_VARS) else (
        "; waiting threads still spin: tour.core.threads.configure() before `import torch` makes them sleep")
    _run = Policy(share, {}, f"{share} thread(s) for this run (the idle cores; {before} again after it): busy, "
                             f"{_situation(m)}{spins}", busy=True)
    torch.set_num_threads(share)
    try:
        yield
    finally:
        _run = None
        torch.set_num_threads(before)


def without_tour(env) -> dict[str, str]:
    """`env` minus what the tour set: OpenMP's defaults plus only what the user chose (the bench's baseline)."""
    ours = {n for n in env.get(SET_VAR, "").split(",") if n}
    return {k: v for k, v in env.items() if k not in ours | {SET_VAR, REASON_VAR}}


def for_ranks(ranks: int, env=None, machine: Machine | None = None) -> dict[str, str]:
    """A copy of `env` for `ranks` processes sharing this machine (torchrun's local ranks): each gets its share
    of the tour's thread count, at least 1 (torchrun's own default is 1 per rank). A user's OMP_NUM_THREADS is
    passed on untouched."""
    env = dict(os.environ if env is None else env)
    if _user_set(env, ("OMP_NUM_THREADS",)):
        return env
    ours = env.get("OMP_NUM_THREADS", "")
    total = int(ours) if ours.isdigit() else usable_cores(machine or cores_here())
    env["OMP_NUM_THREADS"] = str(max(1, total // max(1, ranks)))
    env[SET_VAR] = ",".join(sorted({*filter(None, env.get(SET_VAR, "").split(",")), "OMP_NUM_THREADS"}))
    return env
