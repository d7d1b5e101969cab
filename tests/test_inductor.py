"""What Inductor needs, checked before it fails mid-compile: a C++ compiler (CPU, and AOTInductor everywhere), Triton
with a C compiler and Python.h (GPUs), and a CUDA toolkit for AOTInductor on CUDA. Each situation is built here on a
CPU machine: a faked device type and a faked file system, with the real checks."""

import sysconfig
from pathlib import Path

import pytest
import torch

from tour.core import inductor

CUDA = torch.device("cuda")  # only its type is read; no GPU needed


@pytest.fixture
def no_toolkit(tmp_path, monkeypatch):
    """No CUDA_HOME/CUDA_PATH, no nvcc on PATH, no /usr/local/cuda; a C++ compiler and a working Triton."""
    for var in ("CUDA_HOME", "CUDA_PATH", "LIBRARY_PATH"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(inductor, "DEFAULT_CUDA_HOME", str(tmp_path / "no-cuda"))
    monkeypatch.setattr(inductor, "cxx_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(inductor, "triton_problem", lambda: None)
    monkeypatch.setattr(inductor, "_ldconfig_path", lambda name: None)  # no driver libcuda.so either
    return tmp_path


def toolkit(root: Path, *, crt=True, stub=True) -> Path:
    (root / "include").mkdir(parents=True)
    (root / "include" / "cuda.h").write_text("")
    if crt:
        (root / "include" / "crt").mkdir()
    if stub:
        (root / "lib64" / "stubs").mkdir(parents=True)
        (root / "lib64" / "stubs" / "libcuda.so").write_text("")
    return root


def test_aoti_on_cuda_without_a_toolkit_says_what_to_install(no_toolkit):
    reason = inductor.aoti_problem(CUDA)
    assert reason.startswith("no CUDA toolkit found") and "\n" not in reason
    assert f"CUDA {torch.version.cuda} toolkit" in reason and "CUDA_HOME" in reason


def test_aoti_on_cuda_checks_headers_and_libcuda(no_toolkit, monkeypatch):
    monkeypatch.setenv("CUDA_HOME", str(toolkit(no_toolkit / "pip-like", crt=False, stub=False)))
    assert "lacks include/crt" in inductor.aoti_problem(CUDA)  # pip's CUDA wheels: cuda.h but no crt/
    monkeypatch.setenv("CUDA_HOME", str(toolkit(no_toolkit / "headers-only", stub=False)))
    assert inductor.aoti_problem(CUDA).startswith("no libcuda.so to link against")
    monkeypatch.setenv("CUDA_HOME", str(toolkit(no_toolkit / "full")))
    assert inductor.aoti_problem(CUDA) is None


def test_nvcc_on_path_finds_the_toolkit(no_toolkit, monkeypatch):
    home = toolkit(no_toolkit / "cuda-13")
    (home / "bin").mkdir()
    (home / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (home / "bin" / "nvcc").chmod(0o755)
    monkeypatch.setenv("PATH", str(home / "bin"))
    assert inductor.cuda_home() == home.resolve()
    assert inductor.aoti_problem(CUDA) is None


def test_aoti_needs_a_cxx_compiler_on_every_device(monkeypatch):
    monkeypatch.setattr(inductor, "cxx_compiler", lambda: None)
    assert inductor.aoti_problem(torch.device("cpu")).startswith("no C++ compiler found")
    assert inductor.aoti_problem(CUDA).startswith("no C++ compiler found")


@pytest.fixture
def triton_installed(monkeypatch, tmp_path):
    import torch.utils._triton

    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: True)
    monkeypatch.delenv("CC", raising=False)
    return tmp_path


def test_triton_without_a_c_compiler(triton_installed, monkeypatch):
    monkeypatch.setenv("PATH", str(triton_installed))  # no gcc, no clang
    reason = inductor.compile_problem(CUDA)
    assert reason.startswith("no C compiler found") and "apt install gcc" in reason


def test_triton_without_python_headers(triton_installed, monkeypatch):
    real = sysconfig.get_paths
    monkeypatch.setattr(sysconfig, "get_paths", lambda **kw: {**real(**kw), "include": str(triton_installed)})
    reason = inductor.compile_problem(CUDA)
    assert reason.startswith("Python.h for Python") and "python3-dev" in reason


def test_triton_with_compiler_and_headers_is_ready(triton_installed, monkeypatch):
    (triton_installed / "Python.h").write_text("")
    real = sysconfig.get_paths
    monkeypatch.setattr(sysconfig, "get_paths", lambda **kw: {**real(**kw), "include": str(triton_installed)})
    monkeypatch.setenv("CC", "sh")  # any program on PATH will do: Triton takes $CC as given
    assert inductor.compile_problem(CUDA) is None


def test_an_unwritable_inductor_cache_is_one_line_before_any_stop_runs(tmp_path, monkeypatch, capsys):
    """torch makes TORCHINDUCTOR_CACHE_DIR while importing torch._dynamo and dies there with a traceback; every
    stop's run checks it first (keeps_caller_state) and says it in one line, nothing written."""
    from tour import basics
    from tour.core.errors import TourError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv(inductor.CACHE_VAR, str(blocker / "inductor"))
    with pytest.raises(TourError, match=f"{inductor.CACHE_VAR}=.*a-file/inductor cannot be written"):
        inductor.check_cache_var()
    out = tmp_path / "out"
    assert basics.main(["--quick", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be written" in err and not out.exists()
    monkeypatch.setenv(inductor.CACHE_VAR, str(tmp_path / "new" / "inductor"))
    inductor.check_cache_var()  # a folder that can be made is made, as torch would
    assert (tmp_path / "new" / "inductor").is_dir()


def test_a_kernel_a_killed_compile_left_half_written_is_dropped_but_not_one_being_written(tmp_path):
    # g++ writes its .so in place: a compile killed mid-build (Ctrl-C, gpu-check's time limit) left a 0-byte file
    # that Inductor then failed to load ("file too short") on every later run
    from tour.core.inductor import drop_truncated_builds, inductor_cache

    (tmp_path / "mq").mkdir()
    empty, cut, good, busy = (tmp_path / "mq" / f"{n}.main.so" for n in ("empty", "cut", "good", "busy"))
    empty.write_bytes(b"")
    cut.write_bytes(b"\x7fE")
    good.write_bytes(b"\x7fELF" + bytes(60))
    busy.write_bytes(b"")
    with open(busy, "ab"):  # a live process is writing this one
        assert sorted(p.name for p in drop_truncated_builds(tmp_path)) == ["cut.main.so", "empty.main.so"]
    assert good.exists() and busy.exists() and not empty.exists() and not cut.exists()
    with inductor_cache(tmp_path):  # every compile of the tour enters here, so the next run heals itself
        assert not busy.exists()
