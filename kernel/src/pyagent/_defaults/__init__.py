"""The kernel's own drivers, published through entry points exactly like a plugin's."""
