"""Machine rules: compilers, codecs, caches, offline mode, threads, disk and shadowed installs."""

from __future__ import annotations

import os
from pathlib import Path

from tour.tools.doctor.facts import MIN_FREE_VAR
from tour.tools.doctor.rows import (ERROR, LIBRARY_LOAD, MISSING_SHARED_LIBRARY, PERMISSION, WARNING, Diagnosis,
                                    Facts, truthy)
from tour.tools.doctor.rules.common import (cuda_libs, failed, keys, lacks_compiler, loading, system_fix,
                                           torch_data)


def rule_no_cxx(facts: Facts, probes) -> list[Diagnosis]:
    cxx = facts.env.get("CXX")
    found = [v for k, v in facts.compilers.items() if v and k != "$CXX"]
    bad_cxx = bool(cxx) and not facts.compilers.get("$CXX")
    if found and not bad_cxx:
        return []
    cause = "no C++ compiler for Inductor on CPU (torch.compile, AOTInductor)"
    if found:
        cause, fix = f"CXX={cxx} names a compiler that is not there, and Inductor calls $CXX first", "unset CXX"
    else:
        fix = system_fix(facts, "g++", "-c conda-forge cxx-compiler", mac="xcode-select --install")
    explained = [p for p in failed(probes) if lacks_compiler(p, "c++")]
    evidence = f"CXX {cxx or 'unset'}; " + (f"found {', '.join(found)}" if found else "no g++, c++ or clang++ on PATH")
    return [Diagnosis("no-cxx", ERROR, cause, evidence, fix, keys(explained))]


def rule_torchcodec_ffmpeg(facts: Facts, probes) -> list[Diagnosis]:
    # A load failure that names no library, or names one that is not CUDA's (CUDA's: rule_cuda_library).
    rows = [p for p in failed(probes) if "torchcodec" in p.libraries and (p.kind == LIBRARY_LOAD or (
        p.kind == MISSING_SHARED_LIBRARY and not cuda_libs(p)))]
    absent = "torchcodec" in facts.dists and not facts.ffmpeg_libs and not any("torchcodec" in p.libraries
                                                                               for p in probes)
    if not rows and not absent:
        return []
    fix = system_fix(facts, "ffmpeg", '-c conda-forge "ffmpeg<8"', mac="brew install ffmpeg")
    libs = ", ".join(facts.ffmpeg_libs) or "none of libavutil, libavcodec, libavformat"
    missing = sorted({lib for p in rows for lib in p.data.get("missing_libraries", [])})
    return [Diagnosis("torchcodec-ffmpeg", WARNING,
                      "torchcodec cannot load FFmpeg's shared libraries (torchaudio.load/save need them)",
                      f"the loader finds {libs}" + (f"; missing: {', '.join(missing)}" if missing else ""),
                      fix, keys(rows))]


def _under(path: str | None, folder: str) -> bool:
    return bool(path) and (Path(path) == Path(folder) or Path(folder) in Path(path).parents)


def rule_cache_unwritable(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    hf_rows = [p for p in failed(probes) if {"huggingface-hub", "datasets"} & set(p.libraries)]
    for cache in facts.caches:
        if cache["writable"]:
            continue
        var = cache["var"]
        if any(d.rule == "cache-unwritable" and var in d.fix for d in out):
            continue  # HF_HOME moves both Hugging Face caches: one diagnosis, one fix
        target = cache.get("fallback") or f"/tmp/{var.lower()}"
        inside = [p for p in failed(probes) if _under(p.data.get("path"), cache["path"])]  # the OSError's path
        explained = failed(probes, PERMISSION) + inside + (hf_rows if var.startswith("HF") else [])
        explained = list({id(p): p for p in explained}.values())
        out.append(Diagnosis("cache-unwritable", ERROR, f"the {cache['name']} cache cannot be written",
                             f"{cache['why']} (set by {var if var in facts.env else 'the default'})",
                             f"export {var}={target}", keys(explained)))
    return out


def rule_offline_hub_name(facts: Facts, probes) -> list[Diagnosis]:
    offline = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if truthy(facts.env.get(v))]
    missing = [m for m in facts.models if m["kind"] == "hub" and not m["cached"]]
    if not offline or not missing:
        return []
    name = missing[0]["name"]
    return [Diagnosis("offline-hub-name", ERROR,
                      f"{offline[0]}=1 but the hub model {name} is not in the cache, so loading it will fail",
                      f"no {facts.caches[0]['path']}/models--{name.replace('/', '--')}/snapshots",
                      f"HF_HUB_OFFLINE=0 hf download {name}   # once, online; offline runs then load it from the cache")]


def _env_int(facts: Facts, name: str) -> int:
    try:
        return int(facts.env.get(name, ""))
    except ValueError:
        return 0


def rule_cpu_oversubscribed(facts: Facts, probes) -> list[Diagnosis]:
    usable = facts.cpu.get("usable") or 0
    threads = torch_data(probes).get("threads") or 0
    asked = {v: _env_int(facts, v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if _env_int(facts, v) > usable}
    load = facts.cpu.get("running") or 0.0
    policy = (facts.env.get("OMP_WAIT_POLICY") or "").upper()
    # When the tour chose the threading (tour.core.threads, from what runs right now), its choice already answers
    # spinning, so only the user's own settings are judged then.
    chosen = (facts.env.get("TOUR_THREADS") or "off") != "off"
    spinning = bool(usable and load > usable and policy != "PASSIVE" and not chosen)
    if not usable or not (threads > usable or asked or spinning):
        return []
    why = []
    if threads > usable or asked:
        # torch may clamp its own pool to the usable cores; OpenMP/MKL in other libraries still use the variable
        set_by = ", ".join(f"{k}={v}" for k, v in asked.items())
        why.append(f"{set_by + ' ' if set_by else ''}on {usable} usable cores (torch runs {threads} intra-op threads)")
    if spinning:
        why.append(f"{load:.1f} other threads running on {usable} usable cores with OMP_WAIT_POLICY "
                   f"{policy or 'unset'}: waiting OpenMP threads spin and steal each other's cores")
    return [Diagnosis("cpu-oversubscribed", WARNING, "the CPU is oversubscribed: more busy threads than cores",
                      "; ".join(why), f"export OMP_NUM_THREADS={usable} OMP_WAIT_POLICY=PASSIVE")]


def _pythonpath_without(facts: Facts, folder: str) -> str | None:
    """The fix that takes `folder` off PYTHONPATH; None when PYTHONPATH does not put it there."""
    python_path = [p for p in facts.env.get("PYTHONPATH", "").split(os.pathsep) if p]
    on_it = [p for p in python_path if Path(p).resolve() == Path(folder).resolve()]
    if not on_it:
        return None
    rest = os.pathsep.join(p for p in python_path if p not in on_it)
    return f"export PYTHONPATH={rest}" if rest else "unset PYTHONPATH"


def rule_module_shadowed(facts: Facts, probes) -> list[Diagnosis]:
    out = []
    for s in facts.shadowed:
        origin = Path(s["origin"])
        hider = origin.parent if origin.name == "__init__.py" else origin  # a package folder or a module file
        fix = _pythonpath_without(facts, str(hider.parent)) or \
            f"mv {hider} {hider.with_name(hider.stem + '_mine' + hider.suffix)}   # or rename it: it is not the library"
        explained = loading(probes, s["dist"])
        out.append(Diagnosis(
            "module-shadowed", ERROR if any(p.required for p in explained) else WARNING,  # optional rows: a warning
            f"`import {s['module']}` loads {hider}, not the installed {s['dist']} {s['version']}",
            f"{s['dist']} {s['version']} is installed in {s['location']}, but {hider.parent} comes first on sys.path "
            "(PYTHONPATH, or the working folder, which Python searches first for `python -m`, `python -c` and "
            "notebooks)", fix, keys(explained)))
    return out


def rule_torch_shadowed(facts: Facts, probes) -> list[Diagnosis]:
    places = {i["location"] for i in facts.torch_installs}
    if len(places) < 2:
        return []
    loaded = next((i for i in facts.torch_installs if i["loaded"]), None)
    first = facts.torch_installs[0]
    others = [i for i in facts.torch_installs if i is not loaded]
    stray = others[0] if others else facts.torch_installs[1]
    listed = "; ".join(f"{i['version']} in {i['location']}" + (" (import torch loads this one)" if i["loaded"] else "")
                       for i in facts.torch_installs)
    fix = _pythonpath_without(facts, stray["location"])
    if fix is None and facts.user_site and Path(stray["location"]).resolve() == Path(facts.user_site).resolve():
        fix = "python -m pip uninstall -y torch   # the user-site copy comes first on the path, so it goes"
    elif fix is None:
        fix = f"rm -rf {stray['location']}/torch-{stray['version']}.dist-info {stray['location']}/torch" \
              "   # the copy `import torch` does not load"
    shadow = "metadata (pip, importlib.metadata) see" if loaded is not first else "it is the one loaded; also"
    return [Diagnosis("torch-shadowed", WARNING, f"two torch installs on the path: {len(facts.torch_installs)} found",
                      f"{listed}; {shadow} {first['version']} first", fix)]


def rule_low_disk(facts: Facts, probes) -> list[Diagnosis]:
    low = [c for c in facts.caches if c.get("free_bytes") is not None and c["free_bytes"] < facts.min_free_bytes
           and c["writable"]]  # an unwritable one is cache-unwritable's (a pseudo file system has 0 bytes free)
    if not low:
        return []
    fixes_ = []
    for c in low:
        if c["var"] in ("HF_HOME", "HF_HUB_CACHE") and "hf cache prune" not in fixes_:
            fixes_.append("hf cache prune")
        elif c["name"] == "inductor":
            fixes_.append(f"rm -rf {c['path']}")
    fixes_ = fixes_ or [f"export {low[0]['var']}=/a/folder/on/a/disk/with/room"]
    where = "; ".join(f"{c['name']} {c['path']}: {c['free_bytes'] / 1e9:.1f} GB free" for c in low)
    return [Diagnosis("low-disk", WARNING,
                      f"little free disk where the caches live (under {facts.min_free_bytes / 1e9:g} GB, "
                      f"{MIN_FREE_VAR} sets the limit)", where, " && ".join(fixes_))]
