"""Evaluation: metrics and plots, policy evaluation against the oracle, the release gate."""
