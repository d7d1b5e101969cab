"""The core layer: what every stop and tool shares, and nothing that depends on a stop or a tool.

config (Config -> flags, validation, quick mode), errors (TourError, require), device (the one device/dtype helper,
timers, threads), assets (where the offline models and data are), models and data (the digits MLP, the CNN,
EfficientNet-Lite0, their splits), inductor (C++ compiler and cache), torch_private (torch's private APIs, guarded),
results (Result display, bench rows), plots (matplotlib figures without touching pyplot's global state).
"""
