"""Attachment downloads (BRIEF §5): workers ask, the controller downloads.

The pieces, and which process each runs in:

- :mod:`.pipeline` (workers): finds attachments whose file is missing, sends
  ``fetch`` requests for a whole batch up front, and orders rendering so
  conversations that wait on nothing go first.
- :mod:`.service` (controller): answers ``fetch`` frames: cache lookup,
  de-duplication, download through a provider, optional archive update.
- :mod:`.providers`: the attachment-provider plugin interface and the
  built-in ``chatgpt``, ``claude`` and ``perplexity`` providers.
- :mod:`.downloader`: one shared ``httpx.AsyncClient`` with bounded
  concurrency, hand-followed redirects, size caps, deadlines and retries.
- :mod:`.auth`: the ``--auth`` TOML file. Credentials never leave the
  controller process.
- :mod:`.cache`: the on-disk cache keyed by provider and file id.
"""
