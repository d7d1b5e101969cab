"""Nothing lost when things go wrong: a full disk, Ctrl-C in a long tour, an odd --out, a typo found before the
work, a killed conversion, and a doctor that knows its tested sets on any install. Each fault is built here."""

import errno
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tour.core import assets, files
from tour.core.cli import parse_config
from tour.tools import bench, run_all
from tour.tools.doctor import facts as doctor_facts

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


def tour(*args, timeout=300, **kw):
    return subprocess.run([PY, "-m", "tour", *args], capture_output=True, text=True, timeout=timeout, **kw)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


# a full disk -------------------------------------------------------------------------------------------------------
def _full_disk(monkeypatch, after: int = 100):
    """Figure.savefig writes `after` bytes, then the disk is full (ENOSPC), as a real one would be mid-file."""
    from matplotlib.figure import Figure

    def savefig(self, fname, **kw):
        Path(fname).write_bytes(b"\x89PNG" + b"\0" * after)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", savefig)


def test_a_full_disk_mid_run_is_one_line_with_the_path_and_the_fix(monkeypatch, tmp_path, capsys):
    from tour import basics

    _full_disk(monkeypatch)
    code = basics.main(["--quick", "--device", "cpu", "--out", str(tmp_path)])
    line = one_line(capsys.readouterr().err)
    assert code == 1  # mid-run: the machine's failure, not a bad flag
    png = tmp_path / "basics" / "digits_loss.png"
    assert f"cannot write {png}: No space left on device" in line and "free some space" in line
    assert "--out" in line
    assert not png.exists() and not leftovers(tmp_path)  # no half-written picture, under either name


def test_safetensors_on_a_full_disk_names_the_folder(small_disk):
    """A Rust writer's SafetensorError carries no errno: the real one, from a full disk, is still one line. (Not
    /dev/full: safetensors 0.8 writes a temporary file and renames it over the path, which replaced the device.)"""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    with pytest.raises(files.WriteError) as e:
        with files.writes_to(small_disk):
            save_file({"w": torch.zeros(16 * 1024)}, str(small_disk / "w.safetensors"))  # 64 KiB on an 8 KiB disk
    assert "No space left on device" in str(e.value) and e.value.exit_code == 1


def test_a_rust_writers_error_in_words_is_a_write_error(tmp_path):
    class SafetensorError(Exception):  # what safetensors raises: no errno, the OS error in its words
        pass

    with pytest.raises(files.WriteError, match=r"No space left on device; free some space"):
        with files.writes_to(tmp_path):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_a_half_saved_model_folder_is_removed(tmp_path):
    folder = tmp_path / "model"

    with pytest.raises(files.WriteError, match=f"cannot write {folder}: No space left on device"):
        with files.writes_to(folder, owned=True):  # what nlp and generate wrap save_pretrained in
            folder.mkdir()
            (folder / "config.json").write_text("{}")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # model.safetensors did not fit
    assert not folder.exists()


def test_the_vision_weights_on_a_full_disk_leave_no_file(monkeypatch, tmp_path):
    from tour.core.models import SmallCNN
    from tour.vision import mnist

    def half_then_full(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(files.WriteError, match="mnist_cnn.safetensors: No space left on device"):
        mnist.save_and_reload(SmallCNN(), tmp_path, None, "cpu")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_file_whole(monkeypatch, tmp_path):
    path = files.write_text(tmp_path / "results.json", '{"old": true}\n')
    with pytest.raises(files.WriteError):
        with files.writing(path) as tmp:
            tmp.write_text('{"new": ')
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(path.read_text()) == {"old": True} and not leftovers(tmp_path)


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 KiB tmpfs (root only, where mount works); unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mnt)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_really_full_disk_is_one_line(small_disk):
    res = tour("run", "basics", "--quick", "--device", "cpu", "--out", str(small_disk))
    assert res.returncode == 1, res.stderr
    assert "No space left on device" in one_line(res.stderr)
    assert not leftovers(small_disk) and not (small_disk / "basics" / "digits_loss.png").exists()


# a bad --out, before any work ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["run", "all", "--quick"], ["bench", "--quick"], ["run", "basics", "--quick"]])
def test_an_out_that_cannot_be_a_folder_is_one_line_exit_2(command):
    res = tour(*command, "--out", "/dev/null")
    assert res.returncode == 2
    assert "cannot create output folder /dev/null" in one_line(res.stderr)


def test_a_read_only_out_is_one_line_exit_2(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=8k", "tmpfs", str(ro)],
                             capture_output=True).returncode == 0 if shutil.which("mount") else False
    if not mounted:
        ro.chmod(0o555)
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root, and no mount)")
    try:
        res = tour("run", "all", "--quick", "--only", "basics", "--out", str(ro / "out"))
        assert res.returncode == 2
        line = one_line(res.stderr)
        assert f"cannot create output folder {ro / 'out'}" in line and "pass --out with a" in line
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=False)


# Ctrl-C in a long tour ----------------------------------------------------------------------------------------------
def test_ctrl_c_leaves_the_report_of_what_finished(tmp_path):
    out = tmp_path / "tour"
    proc = subprocess.Popen([PY, "-m", "tour", "run", "all", "--quick", "--only", "basics,audio", "pyro",
                             "--device", "cpu", "--no-doctor", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # ready when the second stop has printed its own first line
            if line.startswith("[audio]"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    stops = json.loads((out / "results.json").read_text())["stops"]
    states = [stops[n]["state"] for n in ("basics", "audio", "pyro")]
    assert states[0] == "ok" and stops["basics"]["result"]["test_accuracy"] > 0.9
    assert "interrupted" in states  # the stop Ctrl-C came in (audio, or pyro on a fast machine) ...
    assert all(s == "not run" for s in states[states.index("interrupted") + 1:])  # ... and none after it ran
    page = (out / "index.html").read_text()
    assert 'id="stop-basics"' in page and "INTERRUPTED" in page and "incomplete" in page
    assert not leftovers(out)


def test_a_report_is_written_after_every_stop(tmp_path, monkeypatch):
    """A kill of the parent (no finally runs) still leaves the report of the stops before it."""
    seen = []

    def fake(name, cfg):
        seen.append(json.loads((tmp_path / "results.json").read_text())["stops"] if seen else None)
        return run_all.StopOutcome(name, True, 0.1, result={"x": 1})

    monkeypatch.setattr(run_all, "run_stop", fake)
    run_all.run(run_all.Config(only=["basics", "audio"], out=str(tmp_path)))
    assert seen[1]["basics"]["state"] == "ok" and seen[1]["audio"]["state"] == "not run"


def test_only_the_last_report_draws_the_chart(tmp_path, monkeypatch):
    """Drawing the chart costs ~0.4 s: the reports rewritten while the tour runs list the numbers, and the one a
    Ctrl-C leaves (the last) draws it, as main()'s final report does."""
    from tour.tools import report

    charts, real_write = [], report.write

    def write(*a, chart=True, **kw):
        charts.append(chart)
        return real_write(*a, chart=chart, **kw)

    def fake(name, cfg):
        if name == "pyro":
            raise KeyboardInterrupt
        return run_all.StopOutcome(name, True, 0.1, result={"x": 1})

    monkeypatch.setattr(report, "write", write)
    monkeypatch.setattr(run_all, "run_stop", fake)
    with pytest.raises(KeyboardInterrupt):
        run_all.run(run_all.Config(only=["basics", "audio", "pyro"], out=str(tmp_path)))
    assert charts == [False, False, True]


def test_bench_marks_the_interrupted_section_and_the_rest(tmp_path, monkeypatch):
    def interrupt(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_section", lambda name, *a: interrupt() if name == "nlp" else None)
    with pytest.raises(KeyboardInterrupt):
        bench.run(bench.Config(quick=True, device="cpu", out=str(tmp_path), only=["roof", "nlp", "vision"]))
    md = (tmp_path / "bench" / "bench.md").read_text()
    data = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert data["interrupted"] == "nlp" and data["not_run"] == ["vision"]
    assert "- nlp interrupted (Ctrl-C)" in md and "- not run: vision" in md


# one syntax for names ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("words", [["basics,audio", "pyro"], ["basics", "audio", "pyro"], ["basics, audio,pyro"]])
def test_only_and_skip_take_commas_spaces_or_both(words):
    cfg = parse_config(run_all.Config, ["--only", *words, "--skip", "audio,", "pyro"], "tour run all")
    assert cfg.only == ["basics", "audio", "pyro"] and run_all.selected(cfg) == ["basics"]
    names = [w.replace("basics", "roof").replace("audio", "nlp").replace("pyro", "vision") for w in words]
    assert parse_config(bench.Config, ["--only", *names], "tour bench").only == ["roof", "nlp", "vision"]
    assert run_all.Config(only="basics,audio").only == ["basics", "audio"]  # the same in a notebook


@pytest.mark.parametrize("command,known", [(["run", "all"], "basics"), (["bench"], "roof")])
def test_an_unknown_name_in_a_list_is_one_line(command, known):
    res = tour(*command, "--only", f"{known},nosuch", "--out", "/dev/null")
    assert res.returncode == 2 and "'nosuch' is not one of" in one_line(res.stderr)


# a typo found before the work --------------------------------------------------------------------------------------
def test_a_model_that_cannot_be_loaded_is_refused_before_any_work():
    res = tour("run", "attention", "--quick", "--device", "cpu", "--model", "nosuch/model-typo")
    assert res.returncode == 2
    assert "--model nosuch/model-typo" in one_line(res.stderr)
    assert "1) naive" not in res.stdout  # nothing ran first


# a killed conversion, and two first runs at once ---------------------------------------------------------------------
CONVERT = textwrap.dedent("""
    import sys, time
    from tour.core import assets

    def build(tmp):
        (tmp / "model.safetensors").write_text("half")
        print("building", flush=True)
        time.sleep(float(sys.argv[1]))
        (tmp / "config.json").write_text("{}")

    print(assets.converted("demo", build))
""")


def _converter(cache: Path, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "TOUR_CACHE_DIR": str(cache)}
    proc = subprocess.Popen([PY, "-c", CONVERT, str(seconds)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "building"
    return proc


def _temporary(cache: Path) -> list[Path]:
    return list(cache.glob(".demo-*"))


def test_a_killed_conversion_is_cleaned_by_the_next_run_but_a_live_one_is_not(tmp_path):
    dead = _converter(tmp_path, 600)
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    (stale,) = _temporary(tmp_path)
    live = _converter(tmp_path, 600)  # the next run: it cleans up first, then writes (and stays alive)
    try:
        (writing,) = _temporary(tmp_path)
        assert writing != stale and not stale.exists()
        assert assets.remove_stale(tmp_path, "demo") == []  # a third run leaves the live one's folder alone
        assert _temporary(tmp_path) == [writing] and (writing / "model.safetensors").exists()
    finally:
        live.kill()
        live.wait()


def test_two_first_runs_at_once_both_succeed_with_one_valid_folder(tmp_path):
    runs = [_converter(tmp_path, 1.0), _converter(tmp_path, 1.0)]
    outs = [p.communicate(timeout=60)[0].strip() for p in runs]
    assert [p.returncode for p in runs] == [0, 0] and outs[0] == outs[1]
    assert json.loads((Path(outs[0]) / "config.json").read_text()) == {} and not _temporary(tmp_path)


def test_a_read_only_cache_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("TOUR_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(assets.TourError, match="set TOUR_CACHE_DIR to a writable folder"):
        assets.converted("demo", lambda tmp: None)


# the tested sets travel with the package ---------------------------------------------------------------------------
def test_the_tested_sets_in_the_package_are_the_checkouts():
    copies = doctor_facts.tested_files()
    sources = [REPO / "constraints.txt", *sorted((REPO / "stacks").glob("*.txt"))]
    assert [p.relative_to(doctor_facts.TESTED) for p in copies] == [p.relative_to(REPO) for p in sources]
    differ = [str(s.relative_to(REPO)) for s, c in zip(sources, copies) if not filecmp.cmp(s, c, shallow=False)]
    assert not differ, f"{differ} changed: run `make tested-sets` to copy them into the package"


@pytest.mark.slow
def test_a_non_editable_install_knows_its_tested_set(tmp_path):
    """`pip install .` (a wheel, not editable) into a fresh venv that sees the shared venv's packages."""
    import site
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The shared packages after the venv's own (a .pth appends), so the installed tour shadows the checkout.
    shared = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    Path(purelib, "shared.pth").write_text("\n".join(dict.fromkeys(shared)) + "\n")
    src = tmp_path / "src"  # a copy: building must not leave build/ or *.egg-info in the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "tour-output", "*.egg-info", "build",
                                                             "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(src)],
                   check=True, env=env, cwd=tmp_path, timeout=300)
    code = ("from tour.tools.doctor import facts, rules; f = facts.collect_facts(); import tour; "
            "print(tour.__file__); print(rules.version_summary(f))")
    res = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    where, summary = res.stdout.strip().splitlines()[-2:]
    assert where.startswith(purelib), where  # the installed copy, not the checkout
    assert "tested set unknown" not in summary and "at a tested version" in summary, summary


# output that tells the learner nothing -----------------------------------------------------------------------------
NOISE = textwrap.dedent("""
    import sys, warnings
    from tour.core.cli import guarded

    def body():
        import torch.utils.cpp_extension  # "No CUDA runtime is found" on a CPU machine with a CUDA_HOME
        from transformers import AutoModel
        from tour.core.assets import minilm_dir
        AutoModel.from_pretrained(minilm_dir())  # transformers' "Loading weights" bar
        warnings.warn("Int8Tensor does not implement _stable_hash_for_caching. For PT2-compatible ...")
        print("the tour's own line")
        return 0

    sys.exit(guarded("noise", body) if sys.argv[1] == "tour" else body())
""")


def test_the_command_line_quiets_library_noise_and_keeps_its_own():
    pytest.importorskip("transformers")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    loud, quiet = (subprocess.run([PY, "-c", NOISE, how], capture_output=True, text=True, env=env, timeout=300)
                   for how in ("plain", "tour"))
    assert "Loading weights" in loud.stderr and "_stable_hash_for_caching" in loud.stderr  # the noise is real
    assert quiet.returncode == 0 and "the tour's own line" in quiet.stdout
    for noise in ("Loading weights", "_stable_hash_for_caching", "No CUDA runtime is found"):
        assert noise not in quiet.stderr, quiet.stderr
