"""IAM policy documents as plain data (pure functions, no resources)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Document = dict[str, Any]


def service_trust(service: str) -> Document:
    """Trust policy letting one AWS service principal assume a role.

    Args:
        service: Service principal, e.g. ``eks.amazonaws.com``.

    Returns:
        The trust policy document.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def web_identity_trust(provider_arn: str, issuer: str, subject: str, audience: str) -> Document:
    """Trust policy for an OIDC identity (IRSA or GitHub Actions) limited to one subject.

    Args:
        provider_arn: ARN of the IAM OIDC provider.
        issuer: Issuer host and path without ``https://`` (the condition key prefix).
        subject: The only ``sub`` claim accepted.
        audience: The only ``aud`` claim accepted.

    Returns:
        The trust policy document.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{issuer}:sub": subject, f"{issuer}:aud": audience}
                },
            }
        ],
    }


def statement(actions: Sequence[str], resources: Sequence[str], **extra: Any) -> Document:
    """One Allow statement.

    Args:
        actions: IAM actions.
        resources: Resource ARNs.
        **extra: Further statement keys such as ``Condition`` or ``Sid``.

    Returns:
        The statement.
    """
    return {"Effect": "Allow", "Action": list(actions), "Resource": list(resources), **extra}


def document(*statements: Document) -> Document:
    """Wrap statements into a policy document.

    Args:
        *statements: The statements.

    Returns:
        The policy document.
    """
    return {"Version": "2012-10-17", "Statement": list(statements)}


def deny_insecure_transport(bucket_arn: str) -> Document:
    """Bucket policy refusing every request that does not use TLS 1.2 or later.

    Args:
        bucket_arn: ARN of the bucket.

    Returns:
        The bucket policy document.
    """
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": resources,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": "DenyOutdatedTls",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": resources,
                "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
            },
        ],
    }
