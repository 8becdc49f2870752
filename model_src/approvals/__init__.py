"""approvals: calibrated card authorization approval model and decisions."""
