"""``--data s3``: training and held-out attempts in moto's S3, as production keeps them.

One simulation (``SIMULATED_PAYMENTS`` payments, seed 7) cut in time: the first 70 %
of the period to ``s3://<bucket>/train/``, the rest to ``s3://<bucket>/holdout/``, so every
held-out attempt comes after the model's feature state. The release then reads them through
its own S3 branch (``configure-aws-credentials``, ``aws s3 cp`` in ``fetch-data.sh``).
"""

from __future__ import annotations

import io

from dev.dry_run.sandbox import aws_client, create_bucket

TRAIN_SHARE = 0.7


def seed_training_data(endpoint: str, region: str, bucket: str, payments: int) -> dict[str, str]:
    """Simulate, cut in time, upload; the ``TRAINING_DATA_URI``/``HOLDOUT_DATA_URI`` vars."""
    from approvals.simulate import simulate

    attempts = simulate(payments, seed=7).attempts
    times = attempts["event_time"]
    cut = times.min() + (times.max() - times.min()) * TRAIN_SHARE
    s3 = aws_client("s3", endpoint, region)
    create_bucket(s3, bucket, region)
    for split, rows in (("train", attempts[times < cut]), ("holdout", attempts[times >= cut])):
        body = io.BytesIO()
        rows.to_parquet(body, index=False)
        s3.put_object(Bucket=bucket, Key=f"{split}/part-0.parquet", Body=body.getvalue())
    return {
        "TRAINING_DATA_URI": f"s3://{bucket}/train/",
        "HOLDOUT_DATA_URI": f"s3://{bucket}/holdout/",
    }
