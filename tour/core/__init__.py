"""The core layer: what every stop and tool shares, and nothing that depends on a stop or a tool.

config (Config fields, validation, quick mode) and cli (Config -> flags, exit codes, a stop's main), startup (how a
process starts), errors (TourError, require), device, dtypes and timing (the one device choice, dtype policy and
timer), roofs (the machine's one roof), threads and state, assets (where the offline models and data are), cache
(converted folders, built once) and stand_ins (random-weight stand-ins), models and data (the shared models and data
sets), inductor (C++ compiler and cache), torch_private (torch's private APIs, guarded), labels, results, render and
plots (a Result's fields, checks and views). README.md's layout lists each in a line.
"""
