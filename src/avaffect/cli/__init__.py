"""The ``avaffect`` command line."""
