"""The gate before production, as one Airflow task: check the dry run, then (optionally) ask a person.

It is Airflow 3's human-in-the-loop ``ApprovalOperator`` with the decision in front: the dry-run figures are
checked first (a run over the threshold fails here, readably, and nobody is asked); when the form's
``require_approval`` is set, the task then waits in the UI with the dry-run summary as the body, and a
"Reject" fails it. Without ``require_approval`` it returns at once, which is also what keeps ``dag.test()``
usable (it would wait forever for a human).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from cognito_migration import storage
from cognito_migration.load import GATE_SUMMARY, GateFailed, run_gate
from cognito_migration.params import parse_params


class DryRunGateOperator(ApprovalOperator):
    """Fail before production when the staging dry run looks wrong; else, if asked, wait for an approval.

    :param batch_ids: every batch convert produced (an XComArg); a batch without a dry-run result fails the gate.
    """

    template_fields = (*ApprovalOperator.template_fields, "batch_ids")

    def __init__(self, *, batch_ids: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Import the dry-run users into production?")
        super().__init__(fail_on_reject=True, **kwargs)
        self.batch_ids = batch_ids

    def execute(self, context: Any) -> Any:
        params = parse_params(dict(context["params"]))
        if not params.runs("dry_run"):
            raise AirflowSkipException(f"stop_after={params.stop_after}: no dry run, no gate")
        try:
            decision = run_gate(params, context["run_id"], _as_list(self.batch_ids))
        except GateFailed as exc:
            raise AirflowFailException(str(exc)) from None
        summary = decision.as_dict()
        if not (params.require_approval and params.runs("import")):
            return summary
        users = decision.totals.get("users", 0)
        self.subject = f"Import {users:,} users of {params.user_pool_id} into Avnology production?"
        self.body = decision.markdown()
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        response = super().execute_complete(context, event)  # a "Reject" raises here (fail_on_reject)
        summary = storage.read_json(storage.run_dir(context["run_id"]) / GATE_SUMMARY)
        summary["approved_by"] = str((response.get("responded_by_user") or {}).get("name", ""))
        return summary


def _as_list(batch_ids: Any) -> list[str]:
    if isinstance(batch_ids, str) or not isinstance(batch_ids, Iterable):
        raise AirflowFailException(f"gate: batch_ids must be a list of batch ids, got {type(batch_ids).__name__}")
    return [str(b) for b in batch_ids]
