"""Policy pack for the approvals stacks; the rules live in :mod:`infra.policy.rules`."""
