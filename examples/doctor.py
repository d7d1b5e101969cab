# %% [markdown]
# # The doctor: does this PyTorch stack really work?
# `tour doctor` runs small probes, each a real operation with a checked fact (a matmul equals the CPU reference,
# a backend initialises and reduces, a model file loads), in a worker process: a library that crashes or hangs
# on import is one failed probe, never a crash of the doctor. Then diagnoses name root causes with one fix each.
# Here we call the same functions the command uses: `collect()` gathers a `Report`, formatting is separate.
# `TOUR_QUICK=1` runs only the system and device probes.

# %%
import json

from tour.core import startup
from tour.tools import doctor

# TOUR_QUICK=1: the device probes only. The system probes always run; `only` adds groups (empty: all of them).
only = ("device",) if startup.quick() else ()

# %% [markdown]
# ## 1) Collect
# `on_result` is called as each probe finishes, so a long run shows progress; the Report holds them all.

# %%
report = doctor.collect(quick=True, only=only, on_result=lambda p: print(doctor.format_row(p)))

# %% [markdown]
# ## 2) Read the report
# Every probe has a status (ok, failed, skipped), the fact it checked or why it failed, and whether it is required:
# an optional piece (a GPU, torchcodec) that fails never makes the exit code 1.

# %%
print(report.counts(), "| exit code", report.exit_code)
slowest = max(report.probes, key=lambda p: p.seconds)
print(f"slowest probe: {slowest.group} {slowest.name}, {slowest.seconds:.1f} s: {slowest.detail}")
for p in report.probes:
    if p.status != "ok":
        print(f"{p.status}: {p.group} {p.name}{' (required)' if p.required else ''}: {p.detail}")

# %% [markdown]
# ## 3) Diagnoses
# Several failed probes often share one cause (a torchvision built for another torch breaks six of them); the
# diagnoses group them, each with its evidence and the one command that fixes it.

# %%
print(doctor.format_diagnosis_block(report) or "no diagnoses")
print(doctor.format_summary(report))

# %% [markdown]
# ## 4) The same report as JSON
# `tour doctor --json` prints this; CI jobs and bug reports read it (schema 1: fields are only ever added).

# %%
data = json.loads(doctor.to_json(report))
print({k: data[k] for k in ("schema", "ok", "exit_code", "counts")})
print(f"doctor: {data['counts']['ok']} probes ok, exit code {data['exit_code']}")
