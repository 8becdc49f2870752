"""Image registry: ECR repository for the bento image, immutable tags, scan on push."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class ImageRegistryArgs:
    """Inputs of :class:`ImageRegistry`."""

    repository_name: str
    untagged_expiry_days: int
    max_tagged_images: int
    force_delete: bool


def lifecycle_policy(untagged_expiry_days: int, max_tagged_images: int) -> dict[str, Any]:
    """ECR lifecycle rules: drop untagged layers soon, keep the newest tagged images.

    Args:
        untagged_expiry_days: Age after which untagged images go.
        max_tagged_images: How many images to keep in all.

    Returns:
        The lifecycle policy document.
    """
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": "expire untagged images",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": untagged_expiry_days,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": "keep only the newest images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": max_tagged_images,
                },
                "action": {"type": "expire"},
            },
        ]
    }


class ImageRegistry(pulumi.ComponentResource):
    """ECR repository with KMS encryption, immutable tags, scan on push and a lifecycle."""

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("approvals:infra:ImageRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            force_delete=args.force_delete,
            opts=child,
        )
        policy = lifecycle_policy(args.untagged_expiry_days, args.max_tagged_images)
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=json.dumps(policy),
            opts=child,
        )
        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        self.register_outputs(
            {"repositoryUrl": self.repository_url, "repositoryArn": self.repository_arn}
        )
