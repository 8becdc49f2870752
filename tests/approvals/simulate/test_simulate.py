"""The simulator: contract-valid, deterministic, realistic, calibrated truth, atomic writes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from approvals import codes
from approvals.cli.main import main
from approvals.contract import COLUMNS, validate_frame
from approvals.simulate import Simulation, dynamics, simulate, tables, write
from approvals.simulate.payments import draw_payments
from approvals.simulate.world import build_world
from approvals.simulate.writer import FILES

N = 30_000
HARD = {"14", "41", "43", "54", "57", "R1"}


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """One medium simulation shared by the read-only tests."""
    return simulate(N, seed=11)


@pytest.fixture(scope="module")
def first(sim: Simulation) -> pd.DataFrame:
    """First attempts joined with their truth."""
    frame = sim.attempts.merge(sim.truth, on="attempt_id", validate="1:1")
    return frame[frame["attempt_number"] == 1]


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = simulate(1500, seed=5), simulate(1500, seed=5), simulate(1500, seed=6)
    for name in FILES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)
    assert a.manifest == b.manifest, "the manifest is a function of the seed"
    assert not a.attempts["approved"].equals(c.attempts["approved"]), "another seed differs"


def test_attempts_follow_the_contract(sim: Simulation) -> None:
    wanted = [c.name for c in COLUMNS]
    assert list(sim.attempts.columns) == wanted, "exactly the contract columns, in order"
    validate_frame(sim.attempts, labels=True)
    assert sim.attempts["event_time"].is_monotonic_increasing, "sorted by event_time"
    assert str(sim.attempts["event_time"].dt.tz) == "UTC", "event_time is UTC"
    assert (sim.attempts["attempt_number"] == 1).sum() == N, "one first attempt per payment"
    assert sim.truth["attempt_id"].equals(sim.attempts["attempt_id"]), "truth row per attempt"


def test_static_population_is_consistent(sim: Simulation) -> None:
    a = sim.attempts
    bins = a.drop_duplicates("card_bin")
    prefix = {"visa": ("4",), "amex": ("34", "37"), "jcb": ("35",), "unionpay": ("62",)}
    for brand, heads in prefix.items():
        rows = bins[bins["card_brand"] == brand]["card_bin"]
        assert rows.str.startswith(heads).all(), f"{brand} BINs start with {heads}"
    mc = bins[bins["card_brand"] == "mastercard"]["card_bin"].str[:4].astype(int)
    assert (mc.between(5100, 5599) | mc.between(2221, 2720)).all(), "mastercard BIN ranges"
    assert 300 <= a["card_bin"].nunique() <= 800, "hundreds of BINs"
    currency = {c.code: c.currency for c in tables.COUNTRIES}
    assert (a["merchant_country"].map(currency) == a["currency"]).all(), "merchant currency"
    per_card = a[a["attempt_number"] == 1].groupby("card_fingerprint").size()
    assert per_card.mean() >= 3, f"cards recur ({per_card.mean():.1f} payments per card)"


def test_overall_and_segment_rates(sim: Simulation, first: pd.DataFrame) -> None:
    rate = first["approved"].mean()
    assert 0.80 <= rate <= 0.88, f"first-attempt approval {rate:.3f}"
    retries = sim.attempts[sim.attempts["attempt_number"] > 1]
    assert retries["approved"].mean() < rate, "retries approve less than first attempts"
    by_type = first.groupby("card_type")["approved"].mean()
    assert by_type["prepaid"] < by_type["debit"] < by_type["credit"], f"card types {by_type}"
    by_channel = first.groupby("channel")["approved"].mean()
    assert by_channel["moto"] < by_channel["ecommerce"] < by_channel["recurring"], "channels"
    by_mcc = first.groupby("mcc")["approved"].mean()
    assert by_mcc["7995"] < by_mcc["5411"] - 0.05, "gambling is riskier than grocery"
    cross = first["merchant_country"] != first["issuer_country"]
    assert first.loc[cross, "approved"].mean() < first.loc[~cross, "approved"].mean(), "xborder"


def test_truth_is_spread_and_calibrated(sim: Simulation) -> None:
    p, y = sim.truth["p_approve"].to_numpy(), sim.attempts["approved"].to_numpy()
    assert p.std() > 0.15, f"true probabilities are spread (std {p.std():.3f})"
    edges = np.quantile(p, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for b in range(10):
        sel = bins == b
        mean_p, observed = p[sel].mean(), y[sel].mean()
        tolerance = 4 * np.sqrt(max(mean_p * (1 - mean_p), 1e-4) / sel.sum()) + 0.005
        assert abs(mean_p - observed) < tolerance, f"bin {b}: p {mean_p:.3f} vs {observed:.3f}"


def test_authentication_never_lowers_approval_on_average() -> None:
    rng = np.random.default_rng(3)
    world = build_world(rng, 5000, 30)
    pay = draw_payments(rng, world, 5000, 30)
    none = dynamics.static_risk_logit(world, replace(pay, three_ds=np.zeros(5000, int)))
    for field, on in (("three_ds", np.ones(5000, int)), ("token", np.ones(5000, bool))):
        base = (
            none
            if field == "three_ds"
            else dynamics.static_risk_logit(world, replace(pay, token=np.zeros(5000, bool)))
        )
        with_it = dynamics.static_risk_logit(world, replace(pay, **{field: on}))
        lift = dynamics.sigmoid(with_it).mean() - dynamics.sigmoid(base).mean()
        assert lift > 0, f"{field} raises approval on average ({lift:+.4f})"
    assert world.banks.three_ds.mean() > 0 and world.banks.token.mean() > 0, "issuer strengths"


def test_domestic_route_beats_cross_border_for_the_same_issuer(
    sim: Simulation, first: pd.DataFrame
) -> None:
    country = {r["route_id"]: r["country"] for r in sim.manifest["routes"]}
    routes = sim.routes.merge(first[["attempt_id", "issuer_country", "card_bin"]], on="attempt_id")
    routes["domestic"] = routes["route_id"].map(country) == routes["issuer_country"]
    per = routes.groupby(["attempt_id", "domestic"])["p_approve"].mean().unstack().dropna()
    assert len(per) > 1000, "many payments can choose a domestic or a foreign route"
    gain = (per[True] - per[False]).mean()
    assert gain > 0.01, f"domestic acquiring approves more ({gain:+.4f})"


def test_routes_table_holds_the_observed_truth(sim: Simulation, first: pd.DataFrame) -> None:
    joined = first.merge(sim.routes, on=["attempt_id", "route_id"], suffixes=("", "_route"))
    assert len(joined) == len(first), "every first attempt has its observed route"
    assert np.allclose(joined["p_approve"], joined["p_approve_route"]), "same truth"
    n_routes = sim.routes.groupby("attempt_id").size()
    assert n_routes.between(2, 4).all(), "merchants use 2 to 4 routes"


def test_retry_chains_are_consistent(sim: Simulation) -> None:
    a = sim.attempts.sort_values(["payment_id", "attempt_number"])
    prev = a.groupby("payment_id")["response_code"].shift(1)
    assert a["previous_response_code"].equals(prev.where(prev.notna(), None)), "prev code chain"
    number = a.groupby("payment_id").cumcount() + 1
    assert (a["attempt_number"] == number).all(), "attempt numbers increment from 1"
    assert (a.groupby("payment_id")["event_time"].diff().dropna() > pd.Timedelta(0)).all()
    assert (a.groupby("payment_id")["card_fingerprint"].nunique() == 1).all(), "one card"
    after = a[a["attempt_number"] > 1]
    assert not after["previous_response_code"].isin(["00", *HARD]).any(), "no retry after hard"
    mac_rows = a[a["merchant_advice_code"].notna()]
    assert (mac_rows["card_brand"] == "mastercard").all(), "MACs only on Mastercard"
    assert not mac_rows["approved"].any(), "MACs only on declines"


def test_hard_declines_never_succeed(sim: Simulation) -> None:
    a = sim.attempts
    hard_payments = a.loc[a["response_code"].isin(HARD), "payment_id"]
    assert all(codes.is_hard(c) or c == "54" for c in HARD), "taxonomy agrees"
    later = a[a["payment_id"].isin(hard_payments)]
    assert not later["approved"].any(), "a payment with a hard decline is never approved"
    declined = a[(a["attempt_number"] == 1) & ~a["approved"]]
    hard_first = declined.loc[declined["response_code"].isin(HARD), "attempt_id"]
    assert len(hard_first) > 0, "some first attempts are hard-declined"
    rows = sim.retries[sim.retries["attempt_id"].isin(hard_first)]
    assert len(rows) > 0 and (rows["p_approve"] == 0).all(), "counterfactual retries give 0"


def test_retry_dynamics(sim: Simulation) -> None:
    r = sim.retries.merge(sim.attempts[["attempt_id", "response_code", "route_id"]],
                          on="attempt_id", suffixes=("", "_first"))  # fmt: skip
    assert set(r["delay_hours"]) == {0.05, 1.0, 24.0, 72.0, 168.0}, "retry delays"
    assert r["p_approve"].between(0, 1).all(), "probabilities"
    nsf = r[r["response_code"] == "51"].groupby("delay_hours")["p_approve"].mean()
    assert nsf[72.0] > 2 * nsf[0.05], f"a 51 recovers days later: {nsf.to_dict()}"
    outage = r[r["response_code"].isin(["91", "96"]) & (r["delay_hours"] == 0.05)]
    other = outage[outage["route_id"] != outage["route_id_first"]]["p_approve"].mean()
    same = outage[outage["route_id"] == outage["route_id_first"]]["p_approve"].mean()
    assert other > same, f"a 91/96 recovers on another route ({other:.3f} vs {same:.3f})"
    a = sim.attempts
    retried = a[a["attempt_number"] > 1]
    assert retried.loc[retried["previous_response_code"] == "51", "approved"].mean() > 0.05


def _exposed(attempts: pd.DataFrame, windows: pd.DataFrame) -> pd.Series:
    """Attempts inside at least one of the windows (``start_time <= t <= end_time``)."""
    inside = pd.Series(False, index=attempts.index)
    for w in windows.itertuples():
        inside |= attempts["event_time"].between(w.start_time, w.end_time)
    return inside


def test_outage_windows_explain_every_91_and_96(sim: Simulation) -> None:
    # given the simulation's outage windows and its attempts
    out, a = sim.outages, sim.attempts
    assert set(out["kind"]) == {"route", "issuer", "issuer_route"}, "all three kinds drawn"
    assert (out["start_time"] < out["end_time"]).all(), "every window has start < end"
    assert out["severity"].between(0, 1, inclusive="neither").all(), "severity is a share"
    assert str(out["start_time"].dt.tz) == "UTC", "UTC timestamps"
    route = out["kind"] == "route"
    assert out.loc[route, "route_id"].notna().all(), "route outages name their route"
    assert out.loc[~route, "card_bins"].map(len).gt(0).all(), "issuer outages name their BINs"
    assert out.loc[out["kind"] == "issuer", "route_id"].isna().all(), "issuer-wide: no route"
    # then every 96 lies in a route window of its route, and most attempts there are 96s
    for route_id, windows in out[route].groupby("route_id"):
        on_route = a[a["route_id"] == route_id]
        inside = _exposed(on_route, windows)
        assert not on_route.loc[~inside, "response_code"].eq("96").any(), f"{route_id}: stray 96"
        share = on_route.loc[inside, "response_code"].eq("96").mean()
        assert share > 0.3, f"{route_id}: {share:.2f} of attempts in its outages declined 96"
    # and every 91 lies in an issuer window of its BIN (issuer-wide, or on its route)
    issuer = out[~route].explode("card_bins")
    for row in a[a["response_code"] == "91"].itertuples():
        mine = issuer[(issuer["card_bins"] == row.card_bin)
                      & issuer["route_id"].isin([None, row.route_id])]  # fmt: skip
        hit = (mine["start_time"] <= row.event_time) & (row.event_time <= mine["end_time"])
        assert hit.any(), f"{row.attempt_id}: a 91 outside its issuer's outages"


def test_write_is_atomic(tmp_path: Path) -> None:
    small = simulate(300, seed=2)
    out = write(small, tmp_path / "sim")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*(f"{n}.parquet" for n in ("attempts", "truth", "routes", "retries",
                                                       "outages")),
                            "manifest.json"]), "all files"  # fmt: skip
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = replace(simulate(200, seed=3), manifest={"bad": object()})
    with pytest.raises(TypeError):
        write(broken, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "old DIR intact"
    assert [p.name for p in tmp_path.iterdir()] == ["sim"], "no temporary directory left"
    back = pd.read_parquet(out / "attempts.parquet")
    validate_frame(back, labels=True)
    assert len(back) == len(small.attempts), "round trip"
    outages = pd.read_parquet(out / "outages.parquet")
    assert len(outages) == small.manifest["counts"]["outages_rows"], "outages round trip"
    assert outages["start_time"].equals(small.outages["start_time"]), "UTC times kept"


def test_cli_simulates_and_rejects_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    main(["simulate", "--payments", "400", "--out", str(out), "--seed", "4", "--days", "10"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["payments"] == 400 and manifest["seed"] == 4, "manifest"
    with pytest.raises(SystemExit) as bad:
        main(["simulate", "--payments", "0", "--out", str(out)])
    assert bad.value.code == 2, "bad input exits 2"
    assert "Traceback" not in capsys.readouterr().err, "no traceback for a user mistake"
