#!/usr/bin/env bash
# Put the training and held-out attempts in work/data/train/attempts and
# work/data/holdout/attempts (directories of Parquet files holding attempts only).
# Source: TRAINING_DATA_URI and HOLDOUT_DATA_URI (S3 prefixes; only their *.parquet objects are
# copied) or, when TRAINING_DATA_URI is empty, one simulation of SIMULATED_PAYMENTS payments
# (seed 7) cut in time: the last fifth of its period is held out, so every held-out attempt
# comes after the model's feature state. The simulator's manifest and truth tables stay in
# work/sim, out of the training data.
# Inputs: APPROVALS (the command that runs the CLI).
set -euo pipefail
for split in train holdout; do
  rm -rf "work/data/$split"
  mkdir -p "work/data/$split/attempts"
done
if [ -n "${TRAINING_DATA_URI:-}" ]; then
  if [ -z "${HOLDOUT_DATA_URI:-}" ]; then
    echo "error: TRAINING_DATA_URI is set but HOLDOUT_DATA_URI is not" >&2
    exit 2
  fi
  for split in train holdout; do
    uri="$TRAINING_DATA_URI"
    [ "$split" = train ] || uri="$HOLDOUT_DATA_URI"
    aws s3 cp --recursive --only-show-errors --exclude '*' --include '*.parquet' \
      "$uri" "work/data/$split/attempts"
  done
else
  $APPROVALS simulate --payments "${SIMULATED_PAYMENTS:-250000}" --seed 7 --out work/sim
  uv run --frozen --all-extras python .github/scripts/split-attempts.py work/sim/attempts.parquet \
    --train work/data/train/attempts/part-0.parquet \
    --holdout work/data/holdout/attempts/part-0.parquet --holdout-fraction 0.2
fi
for split in train holdout; do
  if [ -z "$(find "work/data/$split/attempts" -name '*.parquet' -print -quit)" ]; then
    echo "error: no Parquet attempts in work/data/$split/attempts" >&2
    exit 2
  fi
done
