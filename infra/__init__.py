"""Pulumi program that stands up the approvals platform on AWS (one stack per environment)."""
