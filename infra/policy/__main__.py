"""Pulumi policy pack entry point: every rule of ``rules.py``, mandatory.

Run from ``infra/platform`` or ``infra/application``: ``pulumi preview --policy-pack ../policy``.
"""

import sys
from pathlib import Path

# The CLI runs this file from infra/policy/; make the `infra` package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import EnforcementLevel, PolicyPack

from infra.policy.pack import PACK_NAME, policies

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
