"""The release dry run (``make release-dry-run``, :mod:`dev.release_dry_run`), in parts.

- reading workflows: :mod:`~dev.dry_run.workflow` (files, checks, ``needs`` order),
  :mod:`~dev.dry_run.expressions` and :mod:`~dev.dry_run.evaluate` (``${{ }}`` and ``if:``),
  :mod:`~dev.dry_run.command_files` (``GITHUB_ENV``, ``GITHUB_OUTPUT``, ``GITHUB_PATH``);
- running them: :mod:`~dev.dry_run.pipeline` (jobs, reusable workflow calls),
  :mod:`~dev.dry_run.jobs` (steps), :mod:`~dev.dry_run.shell` (``run:``),
  :mod:`~dev.dry_run.actions`, :mod:`~dev.dry_run.composite` and
  :mod:`~dev.dry_run.artifacts` (``uses:``), :mod:`~dev.dry_run.run` (shared state, progress);
- the machine: :mod:`~dev.dry_run.sandbox` (snapshot, moto, stacks, runner env),
  :mod:`~dev.dry_run.settings` (``settings.yaml``: vars, secrets, github context),
  :mod:`~dev.dry_run.data` (``--data s3``);
- stand-ins first on PATH: :mod:`~dev.dry_run.shims` with :mod:`~dev.dry_run.docker_shim`,
  :mod:`~dev.dry_run.ecr`, :mod:`~dev.dry_run.pulumi_shim`, :mod:`~dev.dry_run.stack_config`,
  :mod:`~dev.dry_run.kubectl_shim` and :mod:`~dev.dry_run.cluster` (the image, served);
  :mod:`~dev.dry_run.record` logs what they stood in for; :mod:`~dev.dry_run.report` sums up.
"""
