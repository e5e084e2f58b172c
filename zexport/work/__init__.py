"""The worker process: pulls batches, reads them, renders them, asks for attachments.

Never imports the controller (run/) nor the downloader (net/): a worker talks to
them only through the wire protocol (docs/protocol.md).
"""
