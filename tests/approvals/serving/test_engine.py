"""The serving engine on its own: same features and probabilities as batch prediction."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from approvals import features
from approvals.contract import (
    FEATURE_COLUMNS,
    MAX_ATTEMPT_NUMBER,
    MAX_ID_LENGTH,
    Attempt,
    AttemptColumns,
    validate_request,
)
from approvals.decisions.costs import load_costs
from approvals.decisions.retries import DeclineContext, RetryAdvice, RetryOption
from approvals.decisions.routes import RankedRoute
from approvals.features.online import OnlineFeatureStore
from approvals.features.redis_settings import RedisSettings
from approvals.features.tiles import plan, plan_columns
from approvals.model import predict
from approvals.model.package import ModelPackage
from approvals.serving.engine import (
    Engine,
    Job,
    OneAttempt,
    Pipeline,
    columns_of,
    retry_variant,
    route_variants,
)
from dev.processes import free_port
from dev.redis_server import RedisServer
from dev.requests import attempt_json

pytestmark = pytest.mark.servers


def attempts_of(frame: pd.DataFrame) -> list[Attempt]:
    return [Attempt.model_validate(attempt_json(row)) for _, row in frame.iterrows()]


def pipeline(package: ModelPackage, url: str) -> Pipeline:
    return Pipeline(
        package, OnlineFeatureStore(RedisSettings(url=url, cooldown_s=60, timeout_ms=3000))
    )


def engine(package: ModelPackage, url: str) -> Engine:
    """The engine with every request its own batch (the service batches them)."""
    batch = pipeline(package, url)

    async def model(attempts: AttemptColumns) -> np.ndarray:
        return (await batch([attempts]))[0]

    return Engine(package.model_version, model, load_costs())


def test_attempt_columns_match_the_offline_columns(test_rows: pd.DataFrame) -> None:
    # given contract rows, and the same rows as validated request models
    rows = test_rows.head(50)
    offline = features.frame_columns(rows)
    # when the engine builds its columns
    online = columns_of(attempts_of(rows)).columns
    # then every column the offline side has is equal, with the same dtype kind
    for name, column in offline.items():
        assert online[name].dtype.kind == column.dtype.kind, f"dtype of {name}"
        assert list(online[name]) == list(column), f"values of {name}"


def test_column_plan_reads_the_same_keys_as_the_record_plan(test_rows: pd.DataFrame) -> None:
    # given attempts as validated records and as the engine's columns
    attempts = attempts_of(test_rows.head(200))
    columns = columns_of(attempts).columns
    t_us = columns["event_time"].astype(np.int64)
    # when both plans are made
    by_records = plan([a.model_dump() for a in attempts], None)
    by_columns = plan_columns(columns, t_us)
    # then they read the same keys in the same order, deduplicated, for the same times
    assert by_columns.relkeys == by_records.relkeys
    assert len(set(by_columns.relkeys)) == len(by_columns.relkeys) < 9 * len(attempts)
    np.testing.assert_array_equal(by_columns.index, by_records.index)
    np.testing.assert_array_equal(by_columns.families, by_records.families)
    np.testing.assert_array_equal(by_columns.t_us, by_records.t_us)


def test_column_plan_names_a_missing_key_field(test_rows: pd.DataFrame) -> None:
    columns = dict(columns_of(attempts_of(test_rows.head(3))).columns)
    columns["card_bin"] = np.array(["411111", None, "411111"], dtype=object)
    with pytest.raises(ValueError, match="attempt 1: field 'card_bin' is missing"):
        plan_columns(columns, columns["event_time"].astype(np.int64))


def test_one_batch_of_requests_scores_like_each_request_alone(
    package: ModelPackage, test_rows: pd.DataFrame, features_redis: RedisServer
) -> None:
    # given three requests of different sizes, one of them empty
    requests = [
        columns_of(attempts_of(test_rows.iloc[a:b])) for a, b in ((0, 1), (1, 8), (8, 8), (8, 40))
    ]

    async def both() -> tuple[list[np.ndarray], list[np.ndarray]]:
        batch = pipeline(package, features_redis.url)
        together = await batch(requests)
        alone = [(await batch([r]))[0] for r in requests]
        return together, alone

    # when they are scored in one batch, and each in a batch of its own
    together, alone = asyncio.run(both())
    # then every request gets its own rows (probability, degraded, features), identical either way
    assert [len(r) for r in together] == [1, 7, 0, 32]
    for got, expected in zip(together, alone, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert not np.concatenate(together)[:, 1].any(), "features were read from Redis"


def test_served_probabilities_equal_batch_prediction(
    package: ModelPackage, test_rows: pd.DataFrame, features_redis: RedisServer
) -> None:
    # given the package's state materialized in Redis and attempts after that state
    rows = test_rows.head(300)
    expected = predict.score(package, rows)
    # when the engine scores them with online features
    live = engine(package, features_redis.url)
    scores = asyncio.run(live.score(columns_of(attempts_of(rows))))
    # then the probabilities equal batch prediction's, and features were not degraded
    assert not scores.degraded, "features were read from Redis"
    np.testing.assert_allclose(scores.p, expected, rtol=0, atol=1e-9)


def test_one_attempt_alone_is_answered_bit_for_bit_as_by_the_batch_path(
    package: ModelPackage, test_rows: pd.DataFrame, features_redis: RedisServer
) -> None:
    # given thousands of attempts after the state: real ones, the same a week later (other
    # windows), and with a card and a merchant never seen (absent keys)
    rows = test_rows.head(1000)
    later = rows.assign(event_time=rows["event_time"] + pd.Timedelta("7D"))
    unseen = rows.head(300).assign(card_fingerprint="never-seen", merchant_id="m-new")
    attempts = attempts_of(pd.concat([rows, later, unseen]))
    # a lone request's attempt as the gateway hands it over, and as a table of one row
    jobs: list[Job] = [OneAttempt(a) for a in attempts] + [columns_of([a]) for a in attempts]

    async def both(url: str) -> list[tuple[np.ndarray, np.ndarray]]:
        live = pipeline(package, url)
        # the second time round from held shared values
        return [(await live.one(job), (await live.many([job]))[0]) for job in jobs]

    # when each is scored by the single-attempt path and by the batch path, live and degraded
    for url in (features_redis.url, f"redis://127.0.0.1:{free_port()}/0"):
        answers = asyncio.run(both(url))
        # then the answers (probability, degraded) are the same bits
        assert len(answers) == len(jobs) >= 4000
        for i, (one, many) in enumerate(answers):
            assert one.shape == many.shape == (1, 2 + len(package.spec.names)), i
            assert np.array_equal(one.view(np.int64), many.view(np.int64)), (url, i)
        degraded = {bool(one[0, 1]) for one, _ in answers}
        assert degraded == {url != features_redis.url}, url


def test_unreachable_redis_gives_degraded_defaults(
    package: ModelPackage, test_rows: pd.DataFrame
) -> None:
    # given a Redis URL nothing listens on
    dead = engine(package, f"redis://127.0.0.1:{free_port()}/0")
    # when scoring
    scores = asyncio.run(dead.score(columns_of(attempts_of(test_rows.head(5)))))
    # then the answer is flagged degraded and still a probability per attempt
    assert scores.degraded, "degraded flag set"
    assert scores.p.shape == (5,) and np.all((scores.p > 0) & (scores.p < 1))


def test_rank_routes_scores_each_route_variant(
    package: ModelPackage, test_rows: pd.DataFrame, features_redis: RedisServer
) -> None:
    # given one attempt and three candidate routes
    attempt = attempts_of(test_rows.head(1))[0]
    routes = ["r_us", "r_eu", "r_gb"]
    live = engine(package, features_redis.url)

    async def both() -> tuple[tuple[list[RankedRoute], bool], np.ndarray]:
        ranked, scores = await live.rank_routes(attempt, [*routes, "r_us"])
        assert scores.features.shape == (3, len(package.spec.names)), "one per route"
        return (ranked, scores.degraded), (
            await live.score(columns_of(route_variants(attempt, routes)))
        ).p

    # when ranking
    (ranked, degraded), direct = asyncio.run(both())
    # then each route appears once, with the probability of the attempt sent there
    assert sorted(r.route_id for r in ranked) == sorted(routes), "duplicates merged"
    assert {r.route_id: r.p_approve for r in ranked} == pytest.approx(
        dict(zip(routes, direct, strict=True))
    )
    assert [r.expected_value for r in ranked] == sorted(
        (r.expected_value for r in ranked), reverse=True
    ), "best expected value first"
    assert not degraded


def test_advise_retry_respects_scheme_rules_and_scores_allowed_options(
    package: ModelPackage, test_rows: pd.DataFrame, features_redis: RedisServer
) -> None:
    attempt = attempts_of(test_rows.head(1))[0]
    options = [RetryOption(route_id=r, delay_hours=d) for r in ("r_us", "r_eu") for d in (1, 24)]
    # a hard decline stops whatever the model says
    hard = DeclineContext(response_code="14", attempt_number=1, amount=10.0, card_brand="visa")
    advice, _, features = asyncio.run(
        engine(package, features_redis.url).advise_retry(attempt, hard, options)
    )
    assert features.size == 0, "a stop scored nothing"
    assert (advice.action, advice.reason) == ("stop", "hard_decline")
    # a soft decline on a large amount is worth retrying with the best-scored option
    soft = DeclineContext(response_code="51", attempt_number=1, amount=500.0, card_brand="visa")
    big = attempt.model_copy(update={"amount": 500.0})
    variants = [retry_variant(big, soft, o) for o in options]

    async def both() -> tuple[RetryAdvice, np.ndarray, np.ndarray, np.ndarray]:
        live = engine(package, features_redis.url)
        advice, _, features = await live.advise_retry(big, soft, options)
        scores = await live.score(columns_of(variants))
        return advice, features, scores.p, scores.features

    advice, features, p, all_features = asyncio.run(both())
    assert advice.action == "retry", "a soft decline with high p is retried"
    assert advice.p_approve is not None and min(abs(p - advice.p_approve)) < 1e-9, "scored option"
    advised = int(np.argmin(abs(p - advice.p_approve)))
    assert np.array_equal(features, all_features[advised], equal_nan=True), "its features"
    assert variants[0].attempt_number == attempt.attempt_number + 1
    assert variants[0].previous_response_code == "51"


def test_columns_of_attempts_equal_the_validators_table(test_rows: pd.DataFrame) -> None:
    # given validated request models and the same attempts as a batch request's raw columns
    attempts = attempts_of(test_rows.head(50))
    raw = {name: [getattr(a, name) for a in attempts] for name in FEATURE_COLUMNS}
    # when the engine lays them out without re-checking, and the validator checks them
    built, checked = columns_of(attempts).columns, validate_request(raw).columns
    # then both give the same columns, dtypes and values
    assert list(built) == list(checked), "same columns in the same order"
    for name, column in checked.items():
        assert built[name].dtype == column.dtype, f"dtype of {name}"
        assert list(built[name]) == list(column), f"values of {name}"


def test_a_retry_of_an_attempt_at_the_request_limits_is_still_advised(
    package: ModelPackage, test_rows: pd.DataFrame, features_redis: RedisServer
) -> None:
    # given an attempt whose id has the longest length and whose number is the highest allowed
    # (its reattempt variants exceed both: schemathesis found this answered 500)
    attempt = attempts_of(test_rows.head(1))[0].model_copy(
        update={"attempt_id": "a" * MAX_ID_LENGTH, "attempt_number": MAX_ATTEMPT_NUMBER,
                "previous_response_code": "51"}
    )  # fmt: skip
    decline = DeclineContext(
        response_code="91", attempt_number=MAX_ATTEMPT_NUMBER, amount=10.0, card_brand="visa"
    )
    options = [RetryOption(route_id="r" * MAX_ID_LENGTH, delay_hours=1)]
    # when the engine advises on it
    advice, _, _ = asyncio.run(
        engine(package, features_redis.url).advise_retry(attempt, decline, options)
    )
    # then it answers (the variants are the engine's own, not a client's request)
    assert advice.action in {"retry", "stop"}, advice
