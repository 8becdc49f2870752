"""The transactions data contract (``shared/contracts/transactions.md``) as code.

One declaration of the columns (:mod:`~approvals.contract.columns`) drives every boundary, and
one validator (:mod:`~approvals.contract.table`) checks whole column tables against it: files
for simulate, train, evaluate, predict and materialize (:mod:`~approvals.contract.files`, pandas
imported lazily), and the batches of the online service. Single online requests are validated
by the pydantic :class:`~approvals.contract.attempt.Attempt` model, which also names the field
of a rejected batch.

A package rather than one module: with the validator it is over twice the size of the old one.
"""

from approvals.contract.attempt import Attempt
from approvals.contract.columns import (
    BY_NAME,
    CARD_BRANDS,
    CARD_TYPES,
    CHANNELS,
    COLUMNS,
    FEATURE_COLUMNS,
    LABEL_COLUMNS,
    MAX_ATTEMPT_NUMBER,
    MAX_ID_LENGTH,
    THREE_DS,
    Column,
)
from approvals.contract.files import read_attempts, read_table, validate_frame, write_frame_atomic
from approvals.contract.request import MISSING, validate_request, validate_rows
from approvals.contract.table import AttemptColumns

__all__ = [
    "BY_NAME",
    "CARD_BRANDS",
    "CARD_TYPES",
    "CHANNELS",
    "COLUMNS",
    "FEATURE_COLUMNS",
    "LABEL_COLUMNS",
    "MAX_ATTEMPT_NUMBER",
    "MAX_ID_LENGTH",
    "MISSING",
    "THREE_DS",
    "Attempt",
    "AttemptColumns",
    "Column",
    "read_attempts",
    "read_table",
    "validate_frame",
    "validate_request",
    "validate_rows",
    "write_frame_atomic",
]
