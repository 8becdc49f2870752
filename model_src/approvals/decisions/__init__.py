"""Decisions on top of calibrated probabilities: route ranking, retry advice, their costs."""
