"""`tour doctor`: does this PyTorch stack really work, and if not, why and what to type (see cli.py's docstring for
the command and its JSON, and the parts of this package). Importing it imports no torch.

    from tour.tools import doctor
    report = doctor.collect(quick=True)         # a Report: rows, diagnoses, facts
    print(doctor.format_table(report))
"""

from tour.tools.doctor.cli import (PROG, format_diagnoses, format_diagnosis_block, format_row, format_summary,
                                   format_table, main, to_json)
from tour.tools.doctor.collect import DEFAULT_TIMEOUT, collect
from tour.tools.doctor.rows import (ERROR, FAILED, NOTE, OK, SKIPPED, WARNING, Diagnosis, Facts, ProbeResult,
                                    Report)

__all__ = ["DEFAULT_TIMEOUT", "ERROR", "FAILED", "NOTE", "OK", "PROG", "SKIPPED", "WARNING", "Diagnosis", "Facts",
           "ProbeResult", "Report", "collect", "format_diagnoses", "format_diagnosis_block", "format_row",
           "format_summary", "format_table", "main", "to_json"]
