"""Experiments on live traffic: decision logs, arms, and the report that measures them in money.

A decision log has one row per scored attempt: the contract's attempt columns, what was decided
(``p_approve``, ``variant``, ``model_version``, ``decided_at``) and, once reported, the labels
(:mod:`approvals.experiments.log`). :mod:`approvals.experiments.assignment` assigns payments
to arms (the service imports it, so this package imports nothing on its own);
:mod:`approvals.experiments.report` compares arms: approval rate and approved value, uplift
with confidence intervals, sample-ratio checks.
"""
