"""The trigger form of ``cognito_migration``: one pydantic model, the single source of truth.

The DAG builds its Airflow ``Param`` objects (with sections and descriptions) from this model, and every task
validates the run's params through it, so a bad value fails the first task with the field named.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


def _field(default: Any, section: str, description: str, **kwargs: Any) -> Any:
    return Field(default, description=description, json_schema_extra={"section": section}, **kwargs)


SOURCE = "Source: Cognito user pool"
EXTRACT = "Extract (Cognito quota)"
CONVERT = "Convert policies"
GATE = "Staging dry run and gate"
IMPORT = "Production import"
EMAIL = "Reset emails"
CUTOVER = "Cutover"

STAGES = ("extract", "convert", "dry_run", "import", "emails")


class MigrationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_pool_id: str = _field(
        "",
        SOURCE,
        "The Cognito user pool to migrate, e.g. `us-east-1_AbCdEf123`.",
        pattern=r"^[\w-]+_[0-9a-zA-Z]+$",
    )
    region: str = _field("us-east-1", SOURCE, "AWS Region of the user pool.", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    stop_after: Literal["extract", "convert", "dry_run", "import", "emails"] = _field(
        "emails",
        SOURCE,
        "Run the stages up to and including this one: extract → convert → dry_run → import → emails.",
    )

    shard_count: Literal[16, 256] = _field(
        16,
        EXTRACT,
        "ListUsers shards by `sub` prefix. 16 suits pools up to a few million users; 256 spreads a larger pool finer.",
    )
    userlist_budget_rps: float = _field(
        20.0,
        EXTRACT,
        "Requests/s this run may spend of the account's **UserList** quota (30 RPS, shared with your live app). "
        "The default leaves a third to production. At 60 users a page, 20 RPS is 1,200 users/s.",
        gt=0,
        le=30,
    )
    mfa_inventory: bool = _field(
        False,
        EXTRACT,
        "Also read each user's MFA settings with `AdminGetUser`. Costs one UserRead request per user "
        "(about 2.3 h per million users at 120 RPS) and counts as monthly-active-user activity.",
    )
    userread_budget_rps: float = _field(
        40.0, EXTRACT, "Requests/s for the MFA inventory from the **UserRead** quota (120 RPS).", gt=0, le=120
    )

    batch_size: int = _field(
        1000, CONVERT, "Users per Auth0 JSON batch file (each file also stays under 500 KB).", ge=1, le=10000
    )
    unconfirmed_policy: Literal["skip", "import"] = _field(
        "skip", CONVERT, "UNCONFIRMED users never proved their email: skip them (with a reason) or import them."
    )
    disabled_policy: Literal["import_blocked", "skip"] = _field(
        "import_blocked", CONVERT, "Disabled users: import them blocked and send no email, or skip them."
    )
    federated_policy: Literal["import", "skip"] = _field(
        "import",
        CONVERT,
        "Federated users (`Google_…`, EXTERNAL_PROVIDER): import them marked federated (no reset email), or skip.",
    )
    invalid_phone_policy: Literal["drop", "reject"] = _field(
        "drop", CONVERT, "A phone number that is not E.164: drop the phone with a warning, or reject the user."
    )
    duplicate_email_policy: Literal["confirmed_then_recent", "reject_all"] = _field(
        "confirmed_then_recent",
        CONVERT,
        "Emails that differ only in case: keep one (CONFIRMED first, then the most recently modified) and "
        "reject the others, or reject every user of the group.",
    )

    staging_mode: Literal["validate_only", "import"] = _field(
        "validate_only",
        GATE,
        "`validate_only` asks the staging tenant to validate each identity without creating it; "
        "`import` creates them for real in staging, as the cutover plan's rehearsal.",
    )
    max_reject_ratio: float = _field(
        0.01,
        GATE,
        "Stop before production when (invalid + conflict) / users in the dry run exceeds this ratio.",
        ge=0,
        le=1,
    )
    require_approval: bool = _field(
        False, GATE, "Wait for a person to approve the dry-run summary in the Airflow UI before production."
    )

    import_backend: Literal["api", "cli"] = _field(
        "api",
        IMPORT,
        "`api`: one idempotent `POST /v1/identities` per user. `cli`: run `avnology migrate auth0 --import` per batch.",
    )
    cli_path: str = _field("avnology", IMPORT, "Path of the `avnology` CLI, for the `cli` backend.")

    email_mode: Literal["preview", "send", "avnology_recovery", "off"] = _field(
        "preview",
        EMAIL,
        "`preview` renders sample emails into the run folder and sends nothing (the safe first run); "
        "`send` emails every eligible user once; `avnology_recovery` starts Avnology's own recovery flow per user.",
    )
    campaign: str = _field(
        "cutover-reset", EMAIL, "Campaign name. A user gets at most one email per campaign, across runs and crashes."
    )
    emails_per_second: float = _field(10.0, EMAIL, "Sending rate (SES's default is 14/s).", gt=0, le=1000)
    preview_count: int = _field(20, EMAIL, "How many sample emails `preview` renders.", ge=1, le=1000)
    reset_link_template: str = _field(
        "{hosted_base_url}/sign-in?recovery=1&email={email_urlencoded}",
        EMAIL,
        "Link in the email. Placeholders: `{hosted_base_url}`, `{email_urlencoded}`, `{avnology_id}`.",
    )
    hosted_base_url: str = _field(
        "https://id.example.com", EMAIL, "Base URL of the tenant's hosted sign-in pages (`/sign-in`)."
    )
    email_subject: str = _field("Set a new password for your account", EMAIL, "Subject line.")
    email_from: str | None = _field(None, EMAIL, "From address (empty: the SMTP connection's `from_email`).")
    email_reply_to: str | None = _field(None, EMAIL, "Reply-To address (optional).")

    avnology_api_domain: str = _field(
        "api-id.avnology.net", CUTOVER, "Your Avnology API domain, for the redirect URL mapping in the cutover kit."
    )
    window_days: int = _field(
        30, CUTOVER, "Days after cutover that the reconciliation DAG sweeps for missed accounts.", ge=1, le=365
    )

    @field_validator("reset_link_template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            value.format(hosted_base_url="", email_urlencoded="", avnology_id="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown placeholder or bad braces in reset_link_template: {exc}") from None
        return value

    def runs(self, stage: str) -> bool:
        """Whether ``stage`` is inside this run's ``stop_after``."""
        return STAGES.index(stage) <= STAGES.index(self.stop_after)


class ParamsError(ValueError):
    """The trigger form holds a value the pipeline cannot use; the message names every bad field."""


def parse_params(raw: dict[str, Any]) -> MigrationParams:
    known = {k: v for k, v in raw.items() if k in MigrationParams.model_fields}
    try:
        params = MigrationParams.model_validate(known)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ParamsError(f"invalid trigger parameters: {problems}") from None
    if not params.user_pool_id:
        raise ParamsError("invalid trigger parameters: user_pool_id is required (e.g. us-east-1_AbCdEf123)")
    return params


def airflow_params(
    model: type[MigrationParams] = MigrationParams, defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``Param`` objects for a DAG's trigger form, built from ``model`` (imported lazily: pure module).

    ``model`` may extend :class:`MigrationParams` (the reconciliation's form does); ``defaults`` replaces field
    defaults, for a deployment that sets its own (the caller validates them).
    """
    from airflow.sdk import Param

    schema = model.model_json_schema()
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        prop = schema["properties"][name]
        kwargs: dict[str, Any] = {
            # The UI renders ``description_md`` as Markdown only when the plain ``description`` is unset.
            "description_md": field.description,
            "section": prop.get("section"),
            "title": name.replace("_", " ").capitalize(),
        }
        nullable = "anyOf" in prop  # an optional field (``int | None``): its own schema, or null
        if nullable:
            prop = {**prop, **next(p for p in prop["anyOf"] if p.get("type") != "null")}
        if "enum" in prop:
            kwargs["enum"] = prop["enum"]
            kwargs["type"] = "integer" if all(isinstance(v, int) for v in prop["enum"]) else "string"
        elif prop.get("type"):
            kwargs["type"] = [prop["type"], "null"] if nullable else prop["type"]
        for key in ("minimum", "maximum", "exclusiveMinimum", "pattern"):
            if key in prop and not (name == "user_pool_id" and key == "pattern"):
                kwargs[key] = prop[key]
        out[name] = Param((defaults or {}).get(name, field.default), **kwargs)
    return out


def skip_unless_stage(params: MigrationParams, stage: str) -> None:
    """A stage outside the form's ``stop_after`` is skipped, visibly, in the Airflow UI."""
    if not params.runs(stage):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"stop_after={params.stop_after}: the {stage} stage does not run")
