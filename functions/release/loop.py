"""The release loop's steps: StartRelease, CheckRelease, FinishRelease and RollBack (docs/release.md).

    StartRelease ─► Next? ─bake─► Bake (Wait $.release.wait) ─► CheckRelease ─► Next?
                        ├─promote─► FinishRelease      (production moves, only while the release runs)
                        ├─rollback─► RollBack          (the release ends, the version is rejected)
                        ├─decide─► AwaitShadowDecision (a shadow without an agreement rule: people decide)
                        └─superseded─► Superseded      (a promotion, rollback or newer release ended it)

Each function takes the state's input and the clients (``Clients``) and returns the state's
``$.release`` (start, check) or ``$.outcome`` (finish, rollback). The release's state between the
states is ``{"id", "mode", "version", "production_version", "bake", "waited", "wait", "next",
"alarms", "reason"?, "alarm"?, "numbers"?}``.

The bake is counted by the waits done (``waited``, the seconds of every Wait state passed), not by a
clock: a check after each wait of at most ``CHECK_INTERVAL`` seconds, so a release is checked every
minute and a test on the local clock is deterministic (a bake over ``MAX_CHECKS`` minutes is checked
less often: ``check_interval``, for the execution history's 25,000 events). Every write is safe to repeat (a retried
state): the release id is a hash of the execution and the version, ``start_release`` with it
returns the running release, PutMetricAlarm overwrites, a promotion already made by this execution
is found in the audit history.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions.core.layout import (
    METRIC_SHADOW_ERRORS,
    METRIC_SHADOW_LATENCY,
    METRIC_VERSION_ERRORS,
    METRIC_VERSION_LATENCY,
    METRICS_NAMESPACE,
    MODEL_PROMOTED,
    RELEASE_ROLLED_BACK,
    RELEASE_STARTED,
    VERSION_DIMENSION,
    release_alarm_names,
)
from functions.core.registry import AliasConflict, InvalidTransition, Registry, ReleaseConflict
from functions.core.releasestats import release_numbers
from functions.pipeline.errors import PipelineInputError
from functions.pipeline.steps import (
    approved_by,
    check_input,
    decision_reason,
    log_decision,
    put_event,
    put_event_after_commit,
)

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 60  # seconds between checks: the per-version alarms' period
PERIOD = 60
LATENCY_PERIODS = 3
DEFAULT_BAKE = 1800
NEXT = ("bake", "promote", "rollback", "decide", "superseded")
# Step Functions keeps at most 25,000 events in an execution's history, ~10 per check: a bake longer
# than MAX_CHECKS minutes (16.7 h) is checked less often, every whole number of minutes.
MAX_CHECKS = 1000


def check_interval(bake: int) -> int:
    """Seconds between checks: a minute (the alarms' period), longer for a bake over MAX_CHECKS minutes."""
    return max(CHECK_INTERVAL, -(-int(bake) // (MAX_CHECKS * 60)) * 60)


@dataclass
class Clients:
    """What the steps use: the registry, EventBridge and CloudWatch clients, and where alarms go."""

    registry: Registry
    events: Any
    cloudwatch: Any
    alarm_prefix: str = "shipyard-"  # ``<stack>-``: the Release function may only touch these alarms
    topic_arn: str | None = None  # the alarms' action (the stack's alarm topic)


def release_id(execution_arn: str, version: int) -> str:
    """The same for a retry of the same execution and version, different for any other run."""
    return hashlib.sha256(f"{execution_arn}#{int(version)}".encode()).hexdigest()[:16]


alarm_names = release_alarm_names

def _settings(spec: Mapping[str, Any]) -> dict:
    release = dict(spec.get("release") or {})
    if release.get("mode") not in ("canary", "shadow"):
        raise PipelineInputError(f"a release loop needs spec.release.mode canary or shadow, "
                                 f"got {release.get('mode')!r}")
    release["bake"] = int(release.get("bake") or DEFAULT_BAKE)
    return release


# ---------------------------------------------------------------------------- start


def start(event: Mapping[str, Any], clients: Clients, *, execution_arn: str) -> dict:
    """Start the canary/shadow release of the run's version (the registry's running release: the
    inference function routes by it), create its two alarms, send `Release Started`."""
    model, spec, _ = check_input(event)
    version = int(event["version"])
    cfg = _settings(spec)
    mode, bake = cfg["mode"], cfg["bake"]
    rid = release_id(execution_arn, version)
    validation = event.get("validation") or {}
    expected = validation.get("production_version")
    names = alarm_names(clients.alarm_prefix, model, version)
    state = {"id": rid, "mode": mode, "version": version, "production_version": expected, "bake": bake,
             "waited": 0, "wait": min(check_interval(bake), bake), "next": "bake", "alarms": names}
    reason = f"pipeline: {validation.get('reason') or 'passed validation'}{approved_by(event)}"
    try:
        release = clients.registry.start_release(
            model, version, mode=mode, release_id=rid, expected_production=expected, execution_arn=execution_arn,
            percent=cfg.get("percent"), bake=bake, actor=execution_arn, reason=reason)
    except AliasConflict as err:  # production moved after the gate compared against it
        return _superseded(clients, model, {**state, "alarms": []}, execution_arn,
                           f"superseded before it started: {err}")
    state["started_at"] = release.get("started_at")
    put_alarms(clients, model, version, mode, cfg, names)
    detail = {"model": model, "version": version, "mode": mode, "release_id": rid, "production_version": expected,
              "percent": release.get("percent"), "bake": bake, "alarms": names, "execution_arn": execution_arn,
              "metric": validation.get("metric"), "score": validation.get("candidate_score"),
              "production_score": validation.get("production_score")}
    put_event(clients.events, RELEASE_STARTED, detail, execution_arn)
    return state


def put_alarms(clients: Clients, model: str, version: int, mode: str, cfg: Mapping[str, Any],
               names: list[str]) -> None:
    """The release's two alarms: errors (Sum > max_errors in a minute) and p99 latency (above
    max_latency_ms for 3 minutes), on the candidate's per-version metrics (canary: Version*; shadow:
    Shadow*, what it does with the copy of the traffic). No data is not breaching."""
    errors, latency = (METRIC_VERSION_ERRORS, METRIC_VERSION_LATENCY) if mode == "canary" else \
        (METRIC_SHADOW_ERRORS, METRIC_SHADOW_LATENCY)
    dims = [{"Name": "Model", "Value": model}, {"Name": VERSION_DIMENSION, "Value": str(int(version))}]
    actions = {"AlarmActions": [clients.topic_arn]} if clients.topic_arn else {}
    common = {"Namespace": METRICS_NAMESPACE, "Dimensions": dims, "Period": PERIOD,
              "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
              "ActionsEnabled": bool(actions), **actions}
    max_errors, max_latency = int(cfg.get("max_errors") or 0), float(cfg.get("max_latency_ms") or 1000.0)
    clients.cloudwatch.put_metric_alarm(
        AlarmName=names[0], MetricName=errors, Statistic="Sum", Threshold=float(max_errors),
        EvaluationPeriods=1, DatapointsToAlarm=1,
        AlarmDescription=f"Shipyard {mode} release of {model} v{version}: more than {max_errors} failed requests "
                         "in a minute; the release loop rolls it back (docs/release.md)", **common)
    clients.cloudwatch.put_metric_alarm(
        AlarmName=names[1], MetricName=latency, ExtendedStatistic="p99", Threshold=max_latency,
        EvaluationPeriods=LATENCY_PERIODS, DatapointsToAlarm=LATENCY_PERIODS,
        AlarmDescription=f"Shipyard {mode} release of {model} v{version}: p99 latency above {max_latency:g} ms "
                         f"for {LATENCY_PERIODS} minutes; the release loop rolls it back (docs/release.md)", **common)


def delete_alarms(clients: Clients, names: list[str]) -> bool:
    """Best effort, after the outcome is recorded: an alarm left behind is logged, never an error."""
    if not names:
        return True
    try:
        clients.cloudwatch.delete_alarms(AlarmNames=list(names))
        return True
    except Exception as err:  # noqa: BLE001 - the release's outcome stands; the alarms are clutter
        logger.warning("release alarms %s not deleted: %s", names, err)
        return False


# ---------------------------------------------------------------------------- check


def check(event: Mapping[str, Any], clients: Clients, *, execution_arn: str) -> dict:
    """After a wait: what next? ``superseded`` (the release is no longer running), ``rollback`` (one
    of its alarms fired), ``bake`` (more to wait), or, the bake done: canary ``promote``; shadow with
    an agreement rule ``promote``/``rollback`` on the numbers; shadow without one ``decide``."""
    model, spec, _ = check_input(event)
    state = dict(event.get("release") or {})
    if not state.get("id"):
        raise PipelineInputError(f"CheckRelease for {model!r} without $.release")
    cfg = _settings(spec)
    current = clients.registry.get_release(model)
    if not current or current.get("id") != state["id"]:
        return _superseded(clients, model, state, execution_arn, superseded_by(clients.registry, model, state, current))
    fired = firing_alarm(clients, state.get("alarms") or [])
    if fired is not None:
        name, why = fired
        return {**state, "next": "rollback", "alarm": name, "reason": f"alarm {name} fired: {why}"}
    waited = int(state.get("waited") or 0) + int(state.get("wait") or 0)
    bake = int(state.get("bake") or cfg["bake"])
    state["waited"] = waited
    if waited < bake:
        return {**state, "wait": min(check_interval(bake), bake - waited), "next": "bake"}
    if state["mode"] == "canary":
        return {**state, "next": "promote", "reason": f"canary baked {waited} s at {current.get('percent')}% "
                                                       "of the traffic with no alarm"}
    numbers = shadow_numbers(clients, model, current)
    state["numbers"] = numbers
    return {**state, **shadow_decision(cfg, numbers)}


def firing_alarm(clients: Clients, names: list[str]) -> tuple[str, str] | None:
    """(name, StateReason) of the first of the alarms in ALARM, or None."""
    if not names:
        return None
    for alarm in clients.cloudwatch.describe_alarms(AlarmNames=list(names)).get("MetricAlarms", []):
        if alarm.get("StateValue") == "ALARM":
            return alarm["AlarmName"], str(alarm.get("StateReason") or "in ALARM")
    return None


def shadow_numbers(clients: Clients, model: str, release: Mapping[str, Any]) -> dict:
    """The shadow's numbers since the release started (functions/core/releasestats.py), small."""
    shadow = release_numbers(clients.cloudwatch, model, dict(release)).get("shadow") or {}
    keep = ("samples", "agreement", "agreement_samples", "errors", "latency_p99")
    return {k: shadow.get(k) for k in keep}


def shadow_decision(cfg: Mapping[str, Any], numbers: Mapping[str, Any]) -> dict:
    """``{"next", "reason"}`` at the end of a shadow's bake: the agreement rule, or people decide."""
    rule = cfg.get("agreement")
    samples = int(numbers.get("samples") or 0)
    agreement = numbers.get("agreement")
    if rule is None:
        return {"next": "decide", "reason": f"shadow baked: {samples} predictions shadowed, agreement "
                                            f"{_fmt(agreement)}; no agreement rule, people decide"}
    minimum = int(cfg.get("min_samples") or 1)
    if samples < minimum:
        return {"next": "rollback", "reason": f"shadow agreement not measured: {samples} predictions shadowed, "
                                              f"fewer than min_samples {minimum}"}
    if agreement is None or agreement < float(rule):
        return {"next": "rollback", "reason": f"shadow agreement {_fmt(agreement)} < {rule:g} over {samples} "
                                              "predictions"}
    return {"next": "promote", "reason": f"shadow agreement {_fmt(agreement)} >= {rule:g} over {samples} predictions"}


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def superseded_by(registry: Registry, model: str, state: Mapping[str, Any], current: Mapping[str, Any] | None) -> str:
    """What ended the release: a newer release, or production moving (a promotion or rollback by hand)."""
    if current:
        return f"superseded by release {current.get('id')} ({current.get('mode')} of v{current.get('version')})"
    last = registry.last_event(model)
    production = registry.get_alias(model)
    if last and production != state.get("production_version"):
        return (f"superseded: production moved to v{last.get('to_version')} by {last.get('actor')} "
                f"({last.get('kind') or 'promote'}: {last.get('reason')})")
    return "superseded: the release is no longer running"


def _superseded(clients: Clients, model: str, state: Mapping[str, Any], execution_arn: str, reason: str) -> dict:
    """The release ended without this loop: reject the version if it is still canary/shadow, say why."""
    version = int(state["version"])
    try:
        clients.registry.record_rejection(model, version, reason)
    except InvalidTransition:
        pass  # promoted by hand (production now), or already rejected
    clients.registry.log_release_event(model, "release_superseded", version=version, actor=execution_arn,
                                       reason=reason, release_id=state.get("id"))
    delete_alarms(clients, state.get("alarms") or [])
    return {**state, "next": "superseded", "reason": reason, "superseded": True}


# ---------------------------------------------------------------------------- finish, roll back


def finish(event: Mapping[str, Any], clients: Clients, *, execution_arn: str) -> dict:
    """Promote the released version, only while its release still runs (and production is what the
    release started from); `Model Promoted`. A release ended meanwhile is superseded, not failed."""
    model, _, dataset = check_input(event)
    state = dict(event.get("release") or {})
    version = int(state["version"])
    validation = event.get("validation") or {}
    reason = f"{state.get('mode')} release {state.get('id')}: {state.get('reason') or 'baked'}{approved_by(event)}"
    registry = clients.registry
    try:
        moved = registry.promote(model, version, reason=reason, actor=execution_arn,
                                 expected=state.get("production_version"), release_id=state["id"])
    except (AliasConflict, ReleaseConflict) as err:
        last = registry.last_event(model, "production")
        if not (last and last.get("to_version") == version and last.get("actor") == execution_arn):
            current = registry.get_release(model)
            out = _superseded(clients, model, state, execution_arn,
                              f"{superseded_by(registry, model, state, current)} ({err})")
            return {"promoted": False, "superseded": True, "version": version, "reason": out["reason"]}
        moved = last  # a retry: this execution already promoted it
    # Production has moved: nothing from here may fail the state.
    try:
        registry.log_release_event(model, "release_promoted", version=version, actor=execution_arn, reason=reason,
                                   release_id=state.get("id"), audit_seq=moved.get("seq"))
    except Exception as err:  # noqa: BLE001 - the promotion stands
        logger.warning("release log entry for %s v%s not written: %s", model, version, err)
    detail = {"model": model, "version": version, "previous_version": moved.get("from_version"),
              "execution_arn": execution_arn, "reason": reason, "audit_seq": moved.get("seq"),
              "metric": validation.get("metric"), "score": validation.get("candidate_score"),
              "production_score": validation.get("production_score"), "dataset": dataset,
              "release_id": state.get("id"), "mode": state.get("mode")}
    error = put_event_after_commit(clients.events, MODEL_PROMOTED, detail, execution_arn)
    delete_alarms(clients, state.get("alarms") or [])
    out = {"promoted": True, "superseded": False, "from_version": moved.get("from_version"), "to_version": version,
           "audit_seq": moved.get("seq"), "event_delivered": error is None}
    if error is not None:
        out["event_error"] = error
    return out


def rollback(event: Mapping[str, Any], clients: Clients, *, execution_arn: str) -> dict:
    """End the release and reject its version (production untouched); `Release Rolled Back` with the
    reason: an alarm that fired, a shadow's numbers, or a person's reject or timeout."""
    model, _, _ = check_input(event)
    state = dict(event.get("release") or {})
    version = int(state["version"])
    reason = decision_reason(event) or state.get("reason") or "rolled back"
    try:
        clients.registry.end_release(model, state["id"], reason=reason, actor=execution_arn)
    except ReleaseConflict as err:
        last = [e for e in clients.registry.release_log(model)
                if e.get("release_id") == state["id"] or (e.get("release") or {}).get("id") == state["id"]]
        if not (last and last[-1].get("kind") == "release_rolled_back" and last[-1].get("actor") == execution_arn):
            current = clients.registry.get_release(model)
            out = _superseded(clients, model, state, execution_arn,
                              f"{superseded_by(clients.registry, model, state, current)} ({err})")
            return {"rolled_back": False, "superseded": True, "version": version, "reason": out["reason"]}
        # a retry: this execution already ended it
    log_decision(clients.registry, model, version, event, execution_arn)
    detail = {"model": model, "version": version, "production_version": state.get("production_version"),
              "reason": reason, "alarm": state.get("alarm"), "mode": state.get("mode"),
              "release_id": state.get("id"), "execution_arn": execution_arn}
    error = put_event_after_commit(clients.events, RELEASE_ROLLED_BACK, detail, execution_arn)
    delete_alarms(clients, state.get("alarms") or [])
    return {"rolled_back": True, "superseded": False, "version": version, "reason": reason,
            "event_delivered": error is None}
