"""Monitoring: a window of the decision log against the model's training reference.

:mod:`approvals.monitoring.monitor` measures feature, input and prediction drift
(:mod:`~approvals.monitoring.drift`), calibration (:mod:`~approvals.monitoring.calibration`),
approval-rate anomalies per issuer and route (:mod:`~approvals.monitoring.anomalies`) and
training-serving skew (:mod:`~approvals.monitoring.skew`), each alert backed by an effect size
and, where rows are few, a test adjusted over segments (:mod:`~approvals.monitoring.stats`).
:mod:`~approvals.monitoring.export` writes the report, its PNGs and Prometheus metrics;
:mod:`~approvals.monitoring.simulated` plants incidents in simulated logs to prove it. The
reference itself is written at training time (:mod:`approvals.model.reference`).
"""
