"""Development tooling of the repository: not shipped in the wheel or the bento.

- :mod:`dev.stack`: :class:`~dev.stack.LocalStack`, one local Redis + ``bentoml serve``;
- :mod:`dev.local`: ``make serve``; :mod:`dev.demo`: ``make demo`` (and ``make quality``);
- :mod:`dev.requests`: contract rows as HTTP bodies and gRPC messages (tests, bench, demo).

Importable in the development venv because its editable install puts the repository root on
the path (``dev-mode-dirs`` in ``pyproject.toml``).
"""
