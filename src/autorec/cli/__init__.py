"""The ``autorec`` command line: one module per command, wired up in :mod:`.main`."""
