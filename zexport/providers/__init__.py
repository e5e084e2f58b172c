"""Attachment providers: the plugin contract (:mod:`.base`) and the built-in providers."""
