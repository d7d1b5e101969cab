"""The tools layer: the `tour` command, `tour run all` and its report, `tour bench`, `tour doctor`.

Tools reach the stops only through `tour.tools.registry`; nothing in the core or in a stop imports a tool.
"""
