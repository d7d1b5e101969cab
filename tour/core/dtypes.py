"""The one place that decides dtypes: the training and inference dtype a device runs well, the low-precision fast
paths it has, a --dtype flag turned into a torch dtype, autocast, and TF32 (IEEE fp32 for parity checks). The
device itself is tour.core.device's choice.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

from tour.core.config import FLOAT_DTYPES  # the --dtype choices: with the flags, torch-free
from tour.core.errors import TourError


def get_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision (training) dtype on this device: bf16 on an accelerator that runs it natively
    (`supports_dtype`: Ampere and newer, an Intel GPU's XMX; not a T4 or V100, which emulate it), else fp32.
    Inference in bf16 where a CPU has AMX/AVX512-BF16 is `inference_dtype`'s choice, not this one."""
    # CPU policy: fp32 even with AMX-BF16. Mixed-precision training on a CPU gains little over fp32 and moves the
    # numbers the stops compare with their fp32 references (losses, parity), so the tour trains in fp32 there.
    if device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if supports_dtype(device, torch.bfloat16) else torch.float32


# Low-precision fast paths by the dtype they speed up. CPU names are the instruction sets oneDNN's kernels use
# (Linux /proc/cpuinfo flags in upper case); GPU names say which tensor-core generation the compute capability has.
# AVX512-FP16 is listed by fast_paths but speeds up nothing here: on a Sapphire Rapids CPU that has it, an fp16
# 2048² matmul ran at 0.8x fp32 (torch 2.14), so only AMX-FP16 (Granite Rapids), which oneDNN targets, counts.
FAST_PATHS_FOR = {
    torch.bfloat16: ("AMX-BF16", "AVX512-BF16", "tensor cores (bf16)", "XMX (bf16)"),
    torch.float16: ("AMX-FP16", "tensor cores (fp16)", "XMX (fp16)", "Metal (fp16)"),
    torch.int8: ("AMX-INT8", "AVX512-VNNI", "AVX-VNNI", "tensor cores (int8)"),
}
_CPU_FLAGS = {"amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8", "amx_fp16": "AMX-FP16", "avx512_bf16": "AVX512-BF16",
              "avx512_fp16": "AVX512-FP16", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI"}
# (compute capability, what it added): Volta fp16 tensor cores, Turing int8 (torch._int_mm), Ampere bf16 + TF32
_CUDA_PATHS = (((7, 0), "tensor cores (fp16)"), ((7, 5), "tensor cores (int8)"), ((8, 0), "tensor cores (bf16)"),
               ((8, 0), "TF32"))
DTYPE_NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:  # not Linux: torch's own capability string is all we know
        return set()


def fast_paths(device: torch.device) -> tuple[str, ...]:
    """The low-precision fast paths this hardware has, by name (AMX-BF16, AVX512-BF16, tensor cores (bf16), TF32...).
    Empty means fp32 is the only dtype that runs at full speed here; others work but are emulated."""
    if device.type == "cpu":
        flags = _cpu_flags()
        return tuple(name for flag, name in _CPU_FLAGS.items() if flag in flags)
    if device.type == "cuda":
        cc = torch.cuda.get_device_capability(device)
        return tuple(name for need, name in _CUDA_PATHS if cc >= need)
    if device.type == "xpu":
        return ("XMX (bf16)", "XMX (fp16)")
    if device.type == "mps":
        return ("Metal (fp16)",)
    return ()


def dtype_fast_paths(device: torch.device, dtype: torch.dtype) -> list[str]:
    """The fast paths this hardware has that speed up `dtype` (["AMX-BF16", "AVX512-BF16"] for bf16 on a recent
    Xeon); empty where `dtype` would be emulated."""
    wanted = FAST_PATHS_FOR.get(dtype, ())
    # fast_paths is looked up at call time, so a test can force a device without fast paths
    return [p for p in fast_paths(device) if p in wanted]


def supports_dtype(device: torch.device, dtype: torch.dtype) -> bool:
    """Does this hardware run `dtype` natively (a fast path), not by emulation slower than fp32? fp32 always."""
    return dtype == torch.float32 or bool(dtype_fast_paths(device, dtype))


def inference_dtype(device: torch.device) -> torch.dtype:
    """The dtype to run inference in on this device: bf16 where it is native (fp32's range, so no overflow), else
    fp16 on a GPU with fp16 fast paths, else fp32. Training keeps `get_dtype` (fp32 on CPU)."""
    if supports_dtype(device, torch.bfloat16):
        return torch.bfloat16
    if device.type != "cpu" and supports_dtype(device, torch.float16):
        return torch.float16
    return torch.float32


def parse_dtype(name: str, device: torch.device, flag: str = "--dtype") -> torch.dtype:
    """'auto' (inference_dtype) or one of DTYPE_NAMES -> a torch dtype; anything else is a one-line error."""
    if name == "auto":
        return inference_dtype(device)
    if name not in DTYPE_NAMES:
        raise TourError(f"{flag} {name!r} is not a dtype the tour knows; choose one of: auto, "
                        f"{', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> 'bf16': the tour's short name (DTYPE_NAMES), else torch's own."""
    return next((k for k, v in DTYPE_NAMES.items() if v == dtype), str(dtype).removeprefix("torch."))


def choose_dtype(name: str, device: torch.device, flag: str = "--dtype",
                 random_weights: bool = False) -> tuple[torch.dtype, str]:
    """A stop's `--dtype NAME` -> (dtype, what to print about the choice). 'auto' is `inference_dtype` (bf16
    where this hardware has a bf16 fast path...); an explicit dtype runs even without a fast path, and says that
    it is emulated there (usually slower than fp32). `random_weights` (a stand-in model): 'auto' is fp32, since a
    random model's logits are near-tied everywhere and a lower precision's batch-dependent rounding then decides
    its tokens (seen: Whisper's batched transcripts in bf16 on an AMX CPU)."""
    if name not in FLOAT_DTYPES:
        raise TourError(f"{flag} {name!r} is not a float dtype a stop can run in; choose one of: "
                        f"{', '.join(FLOAT_DTYPES)}")
    if name == "auto" and random_weights:
        return torch.float32, "fp32 (auto: random weights, whose near-tied logits a lower precision's rounding decides)"
    dtype = parse_dtype(name, device, flag)
    paths = dtype_fast_paths(device, dtype)
    if name == "auto":
        why = (f"auto: {', '.join(paths)} on this {device.type}" if paths
               else f"auto: no bf16/fp16 fast path on this {device.type}, so fp32")
    elif not supports_dtype(device, dtype):
        why = f"{flag} {name}: no fast path on this {device.type}, so emulated (usually slower than fp32)"
    else:
        why = f"{flag} {name}"
    return dtype, f"{dtype_name(dtype)} ({why})"


def autocast(device: torch.device, dtype: torch.dtype | None = None):
    """An autocast context where it helps (a bf16-capable accelerator), a no-op context elsewhere. On CPU only an
    explicit `dtype` (e.g. `inference_dtype(device)`, which the precision stop checks against fp32) autocasts:
    the default stays fp32 there, so the other stops' numbers match their fp32 references."""
    dtype = dtype or get_dtype(device)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# TF32 -----------------------------------------------------------------------------------------------------------
# On Ampere and newer, fp32 matmuls and cuDNN convolutions may run in TF32 (10-bit mantissa): faster, but off from
# an IEEE fp32 reference by ~1e-3. torch's defaults: matmul IEEE, cuDNN convolutions TF32. torch 2.9 added a
# per-operator API (fp32_precision = "ieee" / "tf32"); reading the legacy flags after using it raises, so the new
# one is used where it exists.


def _precision_slots() -> dict | None:
    """The new API's settings objects by operator, or None on a torch without them."""
    b = torch.backends
    slots = {"matmul": b.cuda.matmul, "conv": getattr(b.cudnn, "conv", None), "rnn": getattr(b.cudnn, "rnn", None)}
    return slots if all(hasattr(v, "fp32_precision") for v in slots.values()) else None


def tf32_enabled() -> dict[str, bool]:
    """Whether TF32 is allowed now for fp32 matmuls and for cuDNN convolutions."""
    slots = _precision_slots()
    if slots is None:
        return {"matmul": torch.backends.cuda.matmul.allow_tf32, "conv": torch.backends.cudnn.allow_tf32}
    inherited = getattr(torch.backends, "fp32_precision", "none")  # "none" on an operator: the global setting
    return {op: (slots[op].fp32_precision if slots[op].fp32_precision != "none" else inherited) == "tf32"
            for op in ("matmul", "conv")}


def precision_note(device: torch.device) -> str:
    """The fp32 precision in force, for the device line and the bench files: "TF32 matmul off, cuDNN conv on" on
    CUDA; "" elsewhere (TF32 is a CUDA tensor-core mode)."""
    if device.type != "cuda":
        return ""
    state = tf32_enabled()
    return f"TF32 matmul {'on' if state['matmul'] else 'off'}, cuDNN conv {'on' if state['conv'] else 'off'}"


@contextmanager
def ieee_fp32():
    """fp32 matmuls and cuDNN convolutions in IEEE fp32 (TF32 off) for the duration, then the caller's settings back.
    Parity checks (eager vs compiled, vs a package) run inside, so a TF32 rounding difference is not a failure."""
    slots = _precision_slots()
    if slots is None:
        before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    else:
        before = {op: slot.fp32_precision for op, slot in slots.items()}
        for slot in slots.values():
            slot.fp32_precision = "ieee"
    try:
        yield
    finally:
        if slots is None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        else:
            for op, slot in slots.items():
                slot.fp32_precision = before[op]


def dtypes_note(device: torch.device) -> str:
    """'training fp32, inference bf16': the two dtypes the helper picks here (get_dtype, inference_dtype), so a stop
    that trains in fp32 and predicts in bf16 doesn't read as a contradiction."""
    train, infer = dtype_name(get_dtype(device)), dtype_name(inference_dtype(device))
    return f"dtype {train}" if train == infer else f"training {train}, inference {infer}"
