"""Attachment downloads, in the controller (BRIEF §5): workers ask, the controller fetches.

- :mod:`.service` answers workers' ``fetch`` frames: cache lookup, de-duplication,
  download through a provider, optional archive update.
- :mod:`.session` is what a provider is given: credentials scoped to their origin.
- :mod:`.downloader`: one shared ``httpx.AsyncClient`` with bounded concurrency,
  hand-followed redirects, size caps, deadlines and retries.
- :mod:`.auth`: the ``--auth`` TOML file; credentials never leave the controller.
- :mod:`.cache`: the on-disk cache keyed by provider and file id.
- :mod:`.limits` and :mod:`.options`: what a download may take, importable without httpx.
"""
