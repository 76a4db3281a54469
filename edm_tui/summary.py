"""Command-line output for runs, plans and history."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edm_tui.daemon.history import ItemRecord, RunRecord
from edm_tui.daemon.runner import RunResult
from edm_tui.i18n import _, format_datetime, format_duration, format_number, translate_message
from edm_tui.sync.model import Action


def action_label(action: str) -> str:
    labels = {
        Action.ADD.value: _("added to IEM"),
        Action.CONFIRM.value: _("confirmed in IEM"),
        Action.ACTIVATE.value: _("resubscribed in IEM"),
        Action.UNSUBSCRIBE_IEM.value: _("unsubscribed in IEM"),
        Action.UPDATE_NAMES.value: _("names updated in IEM"),
        Action.SUBSCRIBE_MAGENTO.value: _("subscribed in Magento"),
        Action.UNSUBSCRIBE_MAGENTO.value: _("unsubscribed in Magento"),
        Action.CREATE_GUEST.value: _("guest subscribers created in Magento"),
    }
    return labels.get(action, action)


def reason_word(reason: str) -> str:
    """Return why the sync chose an item's action, in words. Unknown codes are returned unchanged."""
    words = {
        "new_in_magento": _("new subscriber in Magento"),
        "magento_changed": _("changed in Magento"),
        "magento_newer": _("Magento's change is newer than IEM's"),
        "iem_changed": _("changed in IEM"),
        "iem_newer": _("IEM's change is newer than Magento's"),
        "not_confirmed_in_iem": _("not confirmed in IEM yet"),
        "confirmed_in_iem": _("confirmed in IEM"),
        "row_deleted": _("the Magento row was deleted"),
        "email_changed": _("the email address changed"),
        "new_in_iem": _("new subscriber in IEM"),
        "names_changed": _("the customer's name changed"),
        "invalid_name": _("the customer's name is not valid UTF-8"),
    }
    return words.get(reason, reason)


def status_label(status: str) -> str:
    labels = {
        "running": _("running"),
        "succeeded": _("succeeded"),
        "partial": _("finished with failed items"),
        "failed": _("failed"),
        "blocked": _("blocked by the safety brake"),
        "interrupted": _("interrupted"),
        "cancelled": _("cancelled"),
    }
    return labels.get(status, status)


def trigger_label(trigger: str) -> str:
    """Return what started a run, in words. Unknown codes are returned unchanged."""
    labels = {
        "schedule": _("schedule"),
        "manual": _("manual"),
        "cli": _("command line"),
    }
    return labels.get(trigger, trigger)


def outcome_label(outcome: str) -> str:
    """Return the outcome of one item in words. Unknown codes are returned unchanged."""
    words = {
        "succeeded": _("succeeded"),
        "failed": _("failed"),
        "skipped": _("skipped"),
        "pending": _("pending"),
        "interrupted": _("interrupted"),
    }
    return words.get(outcome, outcome)


def run_error_text(run: Mapping[str, Any]) -> str | None:
    """Return a run's error from the daemon in the active language; the daemon records English."""
    error = run.get("error")
    if not error:
        return None
    message = run.get("error_message")
    if message is None and isinstance(run.get("summary"), dict):
        message = run["summary"].get("error_message")
    if message is None:
        return _(str(error))  # texts without parameters are catalog entries themselves
    return translate_message(message, str(error))


def _table_lines(rows: list[tuple[str, ...]], right_aligned: set[int]) -> list[str]:
    """Return rows (the first is the heading) as lines, in columns as wide as their longest value.

    The widths follow the text, so longer Hungarian words keep the columns aligned.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(width) if i in right_aligned else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


def _time(stamp: int | None) -> str:
    return format_datetime(stamp)


def _ordered(counts: dict[str, Any]) -> list[str]:
    order = [a.value for a in Action]
    return sorted(counts, key=lambda a: order.index(a) if a in order else len(order))


def print_run_summary(result: RunResult) -> None:
    summary = result.summary
    if result.run_id is not None:
        print(_("Run {run_id}: {status} in {duration}").format(
            run_id=result.run_id, status=status_label(result.status),
            duration=format_duration(summary.get("duration_seconds", 0))))
    else:
        print(_("Run: {status}").format(status=status_label(result.status)))

    if result.error:
        print("  " + _("Reason: {error}").format(error=result.error))

    if result.counts:
        for action in _ordered(result.counts):
            by = result.counts[action]
            line = f"  {action_label(action)}: {by.get('succeeded', 0)}"
            extra = []
            if by.get("failed"):
                extra.append(_("{n} failed").format(n=by["failed"]))
            if by.get("skipped"):
                extra.append(_("{n} skipped").format(n=by["skipped"]))
            if extra:
                line += " (" + ", ".join(extra) + ")"
            print(line)
    elif result.status in ("succeeded", "partial"):
        print("  " + _("Nothing to change: both sides already agree."))

    if summary.get("identities") is not None:
        print("  " + _("Subscribers seen: {identities} ({subscribed} subscribed), {pending} pending, "
                       "{duplicates} with duplicate rows").format(
            identities=summary.get("identities", 0), subscribed=summary.get("subscribed_identities", 0),
            pending=summary.get("pending", 0), duplicates=summary.get("duplicates", 0)))
    if summary.get("unknown_status"):
        print("  " + _("Unknown status: {n} subscribers have a subscriber_status other than 1 to 4; "
                       "treated as pending").format(n=summary["unknown_status"]))
    if summary.get("out_of_scope"):
        print("  " + _("Out of scope: {n} Magento rows belong to no website (store 0 or deleted)").format(
            n=summary["out_of_scope"]))
    if summary.get("invalid_email"):
        print("  " + _("Skipped: {n} Magento rows without an email address").format(n=summary["invalid_email"]))
    if summary.get("previously_rejected"):
        print("  " + _("Not retried: {n} items IEM refused before; they are retried once their Magento data "
                       "changes").format(n=summary["previously_rejected"]))
    if result.status == "blocked":
        print("  " + _("Nothing was written. If the change is intended, run once with --allow-mass-changes."))
    if result.history_path is not None and result.run_id is not None:
        program = edm_sync_program()
        command = f"{program} --config {result.config_path} history" if result.config_path else f"{program} history"
        print(_("History: {path} (details: {command} {run_id})").format(
            path=result.history_path, command=command, run_id=result.run_id))


def edm_sync_program() -> str:
    """Return how to call edm-sync from here: its name when it is on PATH, else its path.

    A checkout's `./run` installs it into .venv/bin, which is not on PATH.
    """
    if shutil.which("edm-sync"):
        return "edm-sync"
    installed = Path(sys.executable).with_name("edm-sync")
    if not installed.exists():
        return "edm-sync"
    try:
        return str(installed.relative_to(Path.cwd()))
    except ValueError:
        return str(installed)


def plan_as_dict(result: RunResult, limit: int) -> dict[str, Any]:
    plan = result.plan
    assert plan is not None
    # A large plan keeps only its first decisions of each action in memory; the counts are whole.
    totals = plan.counts()
    actions: dict[str, dict[str, Any]] = {}
    for decision in plan.decisions:
        entry = actions.setdefault(decision.action.value, {
            "direction": decision.direction, "count": totals.get(decision.action.value, 0), "first": []})
        if len(entry["first"]) < limit:
            entry["first"].append({"email": decision.email, "website_id": decision.website_id,
                                   "list_id": decision.list_id, "reason": decision.reason})
    return {
        "actions": actions,
        "blocked": str(result.brake.message()) if result.brake else None,
        "failed_up_front": [
            {"email": d.email, "action": d.action.value, "reason": reason} for d, reason in plan.invalid
        ],
        "summary": result.summary,
    }


def print_plan(result: RunResult, limit: int) -> None:
    data = plan_as_dict(result, limit)
    if not data["actions"]:
        print(_("Nothing to change: both sides already agree."))
    for action in _ordered(data["actions"]):
        entry = data["actions"][action]
        arrow = "Magento → IEM" if entry["direction"] == "to_iem" else "IEM → Magento"
        print(f"{action_label(action)} ({arrow}): {entry['count']}")
        for item in entry["first"]:
            print(f"    {item['email']}  " + _("website {website}, list {list_id}, {reason}").format(
                website=item["website_id"], list_id=item["list_id"], reason=reason_word(item["reason"])))
        if entry["count"] > len(entry["first"]):
            print("    " + _("… and {n} more").format(n=entry["count"] - len(entry["first"])))
    for item in data["failed_up_front"]:
        print(_("Will fail: {email} ({reason})").format(email=item["email"], reason=item["reason"]))
    if data["blocked"]:
        print(_("A sync would be blocked by the safety brake: {reason}").format(reason=data["blocked"]))


def print_runs(runs: list[RunRecord]) -> None:
    if not runs:
        print(_("No runs yet."))
        return
    headers = ("ID", _("Started"), _("Trigger"), _("Status"), _("Writes"), _("Failed"))
    rows = []
    for run in runs:
        writes = sum(by.get("succeeded", 0) for by in run.counts.values())
        failed = sum(by.get("failed", 0) for by in run.counts.values())
        rows.append((str(run.id), _time(run.started_at), trigger_label(run.trigger), status_label(run.status),
                     format_number(writes), format_number(failed)))
    for line in _table_lines([headers, *rows], right_aligned={0, 4, 5}):
        print(line)


def print_items(run: RunRecord, items: list[ItemRecord]) -> None:
    print(_("Run {run_id}: {status}, started {started}, finished {finished}").format(
        run_id=run.id, status=status_label(run.status), started=_time(run.started_at),
        finished=_time(run.finished_at)))
    if run.error:
        print("  " + _("Reason: {error}").format(error=run_error_text(run.as_dict())))
    if not items:
        print("  " + _("No items: this run wrote nothing."))
        return
    headers = (_("Outcome"), _("Action"), _("Website"), _("List"), _("Tries"), _("Email"))
    rows = [headers]
    errors: dict[int, str] = {}
    for item in items:
        rows.append((outcome_label(item.outcome), action_label(item.action), str(item.website_id or "-"),
                     str(item.list_id), str(item.attempts), item.email))
        if item.error_message:
            errors[len(rows) - 1] = f"{item.error_class}: {item.error_message}"
    for index, line in enumerate(_table_lines(rows, right_aligned={2, 3, 4})):
        print("  " + line)
        if index in errors:
            print("    " + errors[index])
