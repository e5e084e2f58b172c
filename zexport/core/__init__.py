"""What every process shares: names, safe output, folders, time zones, edit safety.

Imports only the public contracts (model, errors, ...), so both the controller and
the workers can use it without pulling in either's machinery.
"""
