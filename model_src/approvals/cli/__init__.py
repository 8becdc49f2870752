"""The ``approvals`` command line (:mod:`approvals.cli.main`) and its registry subcommands."""
