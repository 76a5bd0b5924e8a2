"""The kernel's own drivers and its ``event`` trigger, published through entry points exactly like a plugin's."""
