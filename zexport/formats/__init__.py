"""Built-in output formats, registered as plugins through ``zexport_formats``."""
