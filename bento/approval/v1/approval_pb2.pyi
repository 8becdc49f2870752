from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Attempt(_message.Message):
    __slots__ = ("attempt_id", "payment_id", "event_time", "merchant_id", "mcc", "merchant_country", "amount", "currency", "card_fingerprint", "card_bin", "card_brand", "card_type", "issuer_country", "channel", "three_ds", "network_token", "route_id", "attempt_number", "previous_response_code", "merchant_advice_code")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    MCC_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CARD_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CARD_BIN_FIELD_NUMBER: _ClassVar[int]
    CARD_BRAND_FIELD_NUMBER: _ClassVar[int]
    CARD_TYPE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    THREE_DS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ADVICE_CODE_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    payment_id: str
    event_time: _timestamp_pb2.Timestamp
    merchant_id: str
    mcc: str
    merchant_country: str
    amount: float
    currency: str
    card_fingerprint: str
    card_bin: str
    card_brand: str
    card_type: str
    issuer_country: str
    channel: str
    three_ds: str
    network_token: bool
    route_id: str
    attempt_number: int
    previous_response_code: str
    merchant_advice_code: str
    def __init__(self, attempt_id: _Optional[str] = ..., payment_id: _Optional[str] = ..., event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., merchant_id: _Optional[str] = ..., mcc: _Optional[str] = ..., merchant_country: _Optional[str] = ..., amount: _Optional[float] = ..., currency: _Optional[str] = ..., card_fingerprint: _Optional[str] = ..., card_bin: _Optional[str] = ..., card_brand: _Optional[str] = ..., card_type: _Optional[str] = ..., issuer_country: _Optional[str] = ..., channel: _Optional[str] = ..., three_ds: _Optional[str] = ..., network_token: bool = ..., route_id: _Optional[str] = ..., attempt_number: _Optional[int] = ..., previous_response_code: _Optional[str] = ..., merchant_advice_code: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("attempt",)
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    attempt: Attempt
    def __init__(self, attempt: _Optional[_Union[Attempt, _Mapping]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("attempt_id", "p_approve", "model_version", "degraded", "variant")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    P_APPROVE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    p_approve: float
    model_version: str
    degraded: bool
    variant: str
    def __init__(self, attempt_id: _Optional[str] = ..., p_approve: _Optional[float] = ..., model_version: _Optional[str] = ..., degraded: bool = ..., variant: _Optional[str] = ...) -> None: ...

class ScoreBatchRequest(_message.Message):
    __slots__ = ("attempts",)
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    def __init__(self, attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ...) -> None: ...

class AttemptScore(_message.Message):
    __slots__ = ("attempt_id", "p_approve", "variant")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    P_APPROVE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    p_approve: float
    variant: str
    def __init__(self, attempt_id: _Optional[str] = ..., p_approve: _Optional[float] = ..., variant: _Optional[str] = ...) -> None: ...

class ScoreBatchResponse(_message.Message):
    __slots__ = ("scores", "model_version", "degraded", "variant")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[AttemptScore]
    model_version: str
    degraded: bool
    variant: str
    def __init__(self, scores: _Optional[_Iterable[_Union[AttemptScore, _Mapping]]] = ..., model_version: _Optional[str] = ..., degraded: bool = ..., variant: _Optional[str] = ...) -> None: ...

class RankRoutesRequest(_message.Message):
    __slots__ = ("attempt", "route_ids")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_IDS_FIELD_NUMBER: _ClassVar[int]
    attempt: Attempt
    route_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, attempt: _Optional[_Union[Attempt, _Mapping]] = ..., route_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RankedRoute(_message.Message):
    __slots__ = ("route_id", "p_approve", "expected_value")
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    P_APPROVE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    route_id: str
    p_approve: float
    expected_value: float
    def __init__(self, route_id: _Optional[str] = ..., p_approve: _Optional[float] = ..., expected_value: _Optional[float] = ...) -> None: ...

class RankRoutesResponse(_message.Message):
    __slots__ = ("routes", "model_version", "degraded", "variant")
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[RankedRoute]
    model_version: str
    degraded: bool
    variant: str
    def __init__(self, routes: _Optional[_Iterable[_Union[RankedRoute, _Mapping]]] = ..., model_version: _Optional[str] = ..., degraded: bool = ..., variant: _Optional[str] = ...) -> None: ...

class AdviseRetryRequest(_message.Message):
    __slots__ = ("attempt", "response_code", "merchant_advice_code", "reattempts_in_window", "declines_24h", "hours_since_decline", "route_ids", "delays_hours")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ADVICE_CODE_FIELD_NUMBER: _ClassVar[int]
    REATTEMPTS_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    DECLINES_24H_FIELD_NUMBER: _ClassVar[int]
    HOURS_SINCE_DECLINE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_IDS_FIELD_NUMBER: _ClassVar[int]
    DELAYS_HOURS_FIELD_NUMBER: _ClassVar[int]
    attempt: Attempt
    response_code: str
    merchant_advice_code: str
    reattempts_in_window: int
    declines_24h: int
    hours_since_decline: float
    route_ids: _containers.RepeatedScalarFieldContainer[str]
    delays_hours: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, attempt: _Optional[_Union[Attempt, _Mapping]] = ..., response_code: _Optional[str] = ..., merchant_advice_code: _Optional[str] = ..., reattempts_in_window: _Optional[int] = ..., declines_24h: _Optional[int] = ..., hours_since_decline: _Optional[float] = ..., route_ids: _Optional[_Iterable[str]] = ..., delays_hours: _Optional[_Iterable[float]] = ...) -> None: ...

class AdviseRetryResponse(_message.Message):
    __slots__ = ("action", "reason", "route_id", "delay_hours", "with_3ds", "with_network_token", "p_approve", "expected_value", "model_version", "degraded", "variant")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    DELAY_HOURS_FIELD_NUMBER: _ClassVar[int]
    WITH_3DS_FIELD_NUMBER: _ClassVar[int]
    WITH_NETWORK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    P_APPROVE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    action: str
    reason: str
    route_id: str
    delay_hours: float
    with_3ds: bool
    with_network_token: bool
    p_approve: float
    expected_value: float
    model_version: str
    degraded: bool
    variant: str
    def __init__(self, action: _Optional[str] = ..., reason: _Optional[str] = ..., route_id: _Optional[str] = ..., delay_hours: _Optional[float] = ..., with_3ds: bool = ..., with_network_token: bool = ..., p_approve: _Optional[float] = ..., expected_value: _Optional[float] = ..., model_version: _Optional[str] = ..., degraded: bool = ..., variant: _Optional[str] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("attempt", "approved", "response_code", "merchant_advice_code")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ADVICE_CODE_FIELD_NUMBER: _ClassVar[int]
    attempt: Attempt
    approved: bool
    response_code: str
    merchant_advice_code: str
    def __init__(self, attempt: _Optional[_Union[Attempt, _Mapping]] = ..., approved: bool = ..., response_code: _Optional[str] = ..., merchant_advice_code: _Optional[str] = ...) -> None: ...

class ReportOutcomesRequest(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[Outcome, _Mapping]]] = ...) -> None: ...

class ReportOutcomesResponse(_message.Message):
    __slots__ = ("applied", "duplicates", "late")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    applied: int
    duplicates: int
    late: int
    def __init__(self, applied: _Optional[int] = ..., duplicates: _Optional[int] = ..., late: _Optional[int] = ...) -> None: ...
