"""The controller process: planning, the worker pool, control, results and the report.

Runs only in the controller; imports work/ and net/ to start and serve workers,
never the other way round (see the import contracts in pyproject.toml).
"""
