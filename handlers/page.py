"""The app page inside the Bitrix24 iframe: overview, policy, preview, conversion, switch.

Bitrix24 opens `/app` with a POST (form `AUTH_ID`, `REFRESH_ID`, `member_id`, `PLACEMENT`;
query `DOMAIN`, `PROTOCOL`, `LANG`, `APP_SID`; https://apidocs.bitrix24.com/settings/oauth/simple-way.html).
The opening user is asked of the portal (`b24app.rest.user`) at the *stored* endpoint of the
installation, then carried by a signed page token (`b24app.pagetoken`): in the query string of
read-only GETs (`t`), in a form field (`page_token`) or the `X-Page-Token` header of every POST,
never in a cookie (iframes lose third-party cookies), so a cross-site form cannot post here.
Only administrators may save the policy, convert or record the mode; others read.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, render_template, request, url_for

from b24app.crm.conversion import preview_with_fields, read_mode
from b24app.crm.mode import Mode, ModeError, guide_switch
from b24app.crm.overview import read_overview
from b24app.crm.policy import Policy, PolicyError
from b24app.crm.reader import Reader
from b24app.crm.report import load_report
from b24app.crm.summary import JobTotals, PreviewTotals
from b24app.crm.titles import lead_titles
from b24app.doctor import examine, recordable
from b24app.errors import AuthError, B24Error
from b24app.pagetoken import PageTokenError, PageTokens, PageUser
from b24app.rest import PortalClient
from b24app.rest.user import read_viewer, viewer_client
from b24app.store.journal import (
    DONE,
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    JobBusy,
    JobRow,
    JobWaiting,
)
from b24app.store.portal_variants import PortalVariants
from b24app.store.undo import KIND as UNDO_KIND
from b24app.store.undo import UndoStore
from b24app.undo import preview as undo_preview_of
from b24app.waits import why_waiting
from handlers import i18n
from handlers.context import AppContext, app_context
from handlers.i18n import N_
from handlers.links import PortalLinks

log = logging.getLogger(__name__)

blueprint = Blueprint("page", __name__, static_folder="static", static_url_path="/app/static")

# Names of where the page token travels, not secrets.
TOKEN_FIELD = "page_token"  # noqa: S105
TOKEN_HEADER = "X-Page-Token"  # noqa: S105
TOKEN_QUERY = "t"  # noqa: S105
PREVIEW_ROWS = 200
REPORT_ROWS = 200
JOBS_PAGE = 10
LIVE_JOBS = 50
JOB_KINDS = ("app", "switch")
_IDS = re.compile(r"[\s,;]+")
_FINAL = (DONE, FAILED, INTERRUPTED)


class PageRefused(Exception):
    """A request the page answers with an error page: HTTP status, catalog key, values."""

    def __init__(self, status: int, key: str, **values: Any) -> None:
        self.status, self.key, self.values = status, key, values
        super().__init__(key)


@dataclass(frozen=True)
class Page:
    """One request's verified user, its token and the app context."""

    user: PageUser
    token: str
    ctx: AppContext

    @property
    def member_id(self) -> str:
        """The portal the page shows."""
        return self.user.member_id

    def url(self, endpoint: str, **values: Any) -> str:
        """A link carrying the page token."""
        return url_for(endpoint, **{TOKEN_QUERY: self.token}, **values)

    def portal(self) -> PortalClient:
        """The portal's client, with the app's stored tokens: one per request, closed after it."""
        client = g.get("portal_client")
        if client is None:
            client = g.portal_client = self.ctx.client(self.member_id)
        return client


@blueprint.teardown_request
def _close_portal(_exc: BaseException | None) -> None:
    client = g.pop("portal_client", None)
    if client is not None:
        client.close()


# -- authentication ------------------------------------------------------------------------------


def _tokens(ctx: AppContext) -> PageTokens:
    return PageTokens.from_settings(ctx.settings)


def _lang_hint() -> str:
    return i18n.language(request.args.get("LANG"))


def _page(*, write: bool = False) -> Page:
    """The verified page user; POSTs read the token from the form or header only (CSRF)."""
    ctx = app_context()
    if request.method == "POST":
        token = request.form.get(TOKEN_FIELD) or request.headers.get(TOKEN_HEADER)
    else:
        token = request.args.get(TOKEN_QUERY) or request.headers.get(TOKEN_HEADER)
    try:
        user = _tokens(ctx).verify(token)
    except PageTokenError as exc:
        raise PageRefused(403, "err_expired" if exc.expired else "err_token") from None
    installation = ctx.installations.get_installation(user.member_id)
    if installation is None or not installation.active:
        raise PageRefused(403, "err_not_installed")
    if write and not user.is_admin:
        log.info("page: user %s of %s refused a change (not admin)", user.user_id, user.member_id)
        raise PageRefused(403, "err_admin")
    return Page(user=user, token=str(token), ctx=ctx)


@blueprint.post("/app")
def open_page() -> Any:
    """Bitrix24 opens the app: check the user with the portal, issue a page token, render."""
    ctx = app_context()
    lang = _lang_hint()
    member_id = (request.form.get("member_id") or "").strip()
    auth_id = (request.form.get("AUTH_ID") or "").strip()
    if not member_id or not auth_id:
        raise PageRefused(400, "err_no_form")
    installation = ctx.installations.get_installation(member_id)
    if installation is None or not installation.active:
        log.info("page: opened for a portal that is not installed")
        raise PageRefused(403, "err_not_installed")
    client = viewer_client(
        auth_id,
        client_endpoint=installation.client_endpoint,  # the stored one, never DOMAIN
        member_id=member_id,
        settings=ctx.settings,
    )
    try:
        viewer = read_viewer(client)
    except AuthError as exc:
        log.info("page: %s did not accept the opening user's token (%s)", member_id, exc.code)
        raise PageRefused(403, "err_auth") from None
    finally:
        client.close()
    user = PageUser(
        member_id=member_id, user_id=viewer.user_id, is_admin=viewer.is_admin, lang=lang
    )
    page = Page(user=user, token=_tokens(ctx).issue(user), ctx=ctx)
    return _overview_page(page)


@blueprint.get("/app")
def view() -> Any:
    """The overview again (links inside the page carry the token)."""
    page = _page()
    return _overview_page(
        page,
        saved=request.args.get("saved") == "1",
        verified=request.args.get("verified"),
        changed_from=request.args.get("from"),
    )


# -- the overview --------------------------------------------------------------------------------


def _saved_policy(page: Page) -> tuple[Policy, list[str]]:
    try:
        return Policy.from_dict(page.ctx.portal_settings.policy_data(page.member_id)), []
    except PolicyError as exc:
        return Policy(), list(exc.problems)


def _live_jobs(page: Page) -> list[JobRow]:
    """The portal's running and pending jobs, newest first."""
    return page.ctx.journal(page.member_id).jobs(LIVE_JOBS, statuses=(PENDING, RUNNING))


def _waits_for(page: Page, job_id: int) -> Any:
    """The overview refusing a new conversion while job `job_id` is pending or running."""
    busy = _texts(page).gettext("Job {job} is still running; wait for it to finish.", job=job_id)
    return _overview_page(page, status=409, convert_problem=busy)


def _history(page: Page, before: int | None) -> tuple[list[JobRow], int | None]:
    """One page of the job history (newest first) and the id the next, older page starts below."""
    found = page.ctx.journal(page.member_id).jobs(JOBS_PAGE + 1, before=before)
    older = found[JOBS_PAGE - 1].id if len(found) > JOBS_PAGE else None
    return found[:JOBS_PAGE], older


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _overview_page(
    page: Page,
    *,
    status: int = 200,
    form: Mapping[str, Any] | None = None,
    problems: list[str] | None = None,
    convert_problem: str | None = None,
    saved: bool = False,
    verified: str | None = None,
    changed_from: str | None = None,
) -> Any:
    """Render the overview: mode, leads by stage, policy form, conversion, jobs, switch."""
    overview = read_overview(page.portal())
    policy, stored_problems = _saved_policy(page)
    warnings = stored_problems or policy.problems(overview.facts)
    shown = dict(form) if form is not None else _form_values(policy)
    target = Mode.SIMPLE if overview.mode is Mode.CLASSIC else Mode.CLASSIC
    guide = guide_switch(overview.mode, target, active_leads=overview.active_leads)
    by, at = page.ctx.portal_settings.policy_saved_by(page.member_id)
    before = _int_arg("before")
    jobs, older = _history(page, before)
    live = _live_jobs(page)
    html = _render(
        "page.html",
        page,
        overview=overview,
        form=shown,
        problems=problems or [],
        warnings=warnings if problems is None else [],
        convert_problem=convert_problem,
        saved=saved,
        saved_by=by,
        saved_at=at,
        jobs=jobs,
        jobs_before=before,
        jobs_older=older,
        waiting={job.id: why_waiting(job, live) for job in jobs},
        guide=guide,
        target=target,
        verified=_mode_or_none(verified),
        changed_from=_mode_or_none(changed_from),
    )
    return html, status


def _mode_or_none(label: str | None) -> Mode | None:
    try:
        return Mode.from_label(label) if label else None
    except ModeError:
        return None


def _form_values(policy: Policy) -> dict[str, Any]:
    """The policy as the form shows it."""
    return {
        "client": policy.client.value,
        "pipeline": policy.pipeline,
        "activities": policy.activities.value,
        "match_clients": [m.value for m in policy.match_clients],
        "create_fields": policy.create_fields,
        "auto_enabled": policy.auto.enabled,
        "auto_stages": list(policy.auto.stages),
        "auto_sources": list(policy.auto.sources),
    }


# -- policy --------------------------------------------------------------------------------------


def _posted_form() -> dict[str, Any]:
    """The policy fields of the posted form, as the form shows them."""
    return {
        "client": request.form.get("client", ""),
        "pipeline": request.form.get("pipeline", ""),
        "activities": request.form.get("activities", ""),
        "match_clients": request.form.getlist("match_clients"),
        "create_fields": request.form.get("create_fields") in ("on", "1"),
        "auto_enabled": request.form.get("auto_enabled") == "on",
        "auto_stages": request.form.getlist("auto_stages"),
        "auto_sources": request.form.getlist("auto_sources"),
    }


def _policy_data(page: Page, form: Mapping[str, Any]) -> dict[str, Any]:
    """The policy dict of a posted form; the lead selection, which the page does not edit, and
    (when the form has no auto-convert fields) the saved auto-convert settings are kept."""
    stored = page.ctx.portal_settings.policy_data(page.member_id) or {}
    stored = stored if isinstance(stored, Mapping) else {}
    auto = {
        "enabled": form["auto_enabled"],
        "stages": form["auto_stages"],
        "sources": form["auto_sources"],
    }
    if request.form.get("auto_fields") == "kept":
        auto = stored.get("auto") or {}
    return {
        "client": form["client"] or None,
        "pipeline": form["pipeline"] or None,
        "activities": form["activities"] or None,
        "match_clients": form["match_clients"],
        "create_fields": form.get("create_fields", False),
        "auto": auto,
        "leads": stored.get("leads"),
    }


def _checked_policy(page: Page, data: Mapping[str, Any]) -> Policy:
    """The policy of `data`, checked against the portal; PolicyError lists the problems."""
    policy = Policy.from_dict(data)
    return policy.check(Reader(page.portal()).facts((policy.pipeline,)))


@blueprint.post("/app/policy")
def save_policy() -> Any:
    """Save the policy form (admins): checked by Policy.from_dict and against the portal."""
    page = _page(write=True)
    form = _posted_form()
    try:
        policy = _checked_policy(page, _policy_data(page, form))
    except PolicyError as exc:
        return _overview_page(page, status=422, form=form, problems=list(exc.problems))
    page.ctx.portal_settings.save_policy(
        page.member_id, policy.to_dict(), by=str(page.user.user_id)
    )
    log.info("page: user %s saved the policy of %s", page.user.user_id, page.member_id)
    return redirect(page.url("page.view", saved="1") + "#policy", code=303)


# -- preview and conversion ----------------------------------------------------------------------


def _chosen_ids() -> tuple[int, ...] | None:
    """The lead ids the form chose (None: all active leads); ValueError on a bad id."""
    if request.form.get("leads", "all") != "chosen":
        return None
    return parse_lead_ids([*request.form.getlist("lead_id"), request.form.get("lead_ids", "")])


@blueprint.route("/app/preview", methods=["GET", "POST"])
def preview() -> Any:
    """What converting would do (changes nothing): a GET previews the saved policy; an admin's
    POST previews the policy on screen, unsaved, and the chosen leads."""
    page = _page(write=request.method == "POST")
    on_screen = request.method == "POST" and bool(request.form.get("client"))
    lead_ids: tuple[int, ...] | None = None
    kind = request.values.get("kind", "app")
    try:
        if request.method == "POST" and kind != "switch":  # the switch converts every lead
            lead_ids = _chosen_ids()
            if lead_ids == ():
                raise ValueError("")
    except ValueError as exc:
        key = "bad" if str(exc) else "none"
        return _overview_page(page, status=422, convert_problem=_ids_problem(page, key))
    try:
        if on_screen:
            form = _posted_form()
            try:
                policy = _checked_policy(page, _policy_data(page, form))
            except PolicyError as exc:
                return _overview_page(page, status=422, form=form, problems=list(exc.problems))
        else:
            policy, problems = _saved_policy(page)
            if problems:
                raise PolicyError(problems)
        rows, fields = preview_with_fields(
            page.portal(),
            policy,
            lead_ids=lead_ids,
            variants=PortalVariants(page.ctx.engine).of(page.member_id),
        )
    except PolicyError as exc:
        return _overview_page(page, status=422, problems=list(exc.problems))
    shown = rows[:PREVIEW_ROWS]
    return _render(
        "page_preview.html",
        page,
        rows=shown,
        fields=fields,
        total=len(rows),
        totals=PreviewTotals.of(rows),
        policy=policy,
        on_screen=on_screen,
        chosen=lead_ids,
        kind=kind if kind in JOB_KINDS else "app",
        pipeline_name=_pipeline_name(page, policy.pipeline),
        titles=lead_titles(page.portal(), [row.lead_id for row in shown]),
        links=_links(page),
    )


def _pipeline_name(page: Page, pipeline: int) -> str:
    facts = Reader(page.portal()).facts((pipeline,))
    found = next((p for p in facts.pipelines if p.id == pipeline), None)
    return found.name if found is not None else str(pipeline)


def _ids_problem(page: Page, key: str) -> str:
    texts = _texts(page)
    if key == "bad":
        return texts.gettext(
            "Lead ids must be positive whole numbers separated by commas or spaces."
        )
    return texts.gettext("Tick at least one lead, or enter lead ids.")


def parse_lead_ids(values: list[str]) -> tuple[int, ...]:
    """Lead ids from form values (checkboxes and/or one text field); ValueError on a bad one."""
    ids: list[int] = []
    for value in values:
        for part in _IDS.split(value.strip()):
            if not part:
                continue
            if not part.isdigit() or int(part) <= 0:
                raise ValueError(part)
            ids.append(int(part))
    return tuple(dict.fromkeys(ids))


@blueprint.post("/app/convert")
def convert() -> Any:
    """Start a conversion job (admins): all active leads, or the chosen ids, under the policy the
    form carries (the preview's), else the saved one; then show the job."""
    page = _page(write=True)
    kind = request.form.get("kind", "app")
    if kind not in JOB_KINDS:
        kind = "app"
    try:
        lead_ids = _chosen_ids()
    except ValueError:
        return _overview_page(page, status=422, convert_problem=_ids_problem(page, "bad"))
    if lead_ids == ():
        return _overview_page(page, status=422, convert_problem=_ids_problem(page, "none"))
    journal = page.ctx.journal(page.member_id)
    live = journal.live_job()
    if live is not None:
        return _waits_for(page, live.id)
    try:
        if request.form.get("client"):
            policy = _checked_policy(page, _policy_data(page, _posted_form()))
        else:
            policy, problems = _saved_policy(page)
            if problems:
                raise PolicyError(problems)
            policy.check(Reader(page.portal()).facts((policy.pipeline,)))
    except PolicyError as exc:
        return _overview_page(page, status=422, problems=list(exc.problems))
    try:
        job = journal.create_job(kind=kind, policy=policy.to_dict(), lead_ids=lead_ids, alone=True)
    except JobWaiting as exc:  # another request recorded one since the check above
        return _waits_for(page, exc.job)
    log.info(
        "page: user %s started job %s on %s (%s)",
        page.user.user_id,
        job.id,
        page.member_id,
        "all active leads" if lead_ids is None else f"{len(lead_ids)} lead(s)",
    )
    page.ctx.jobs.run_job(page.member_id, job.id)
    return redirect(page.url("page.job", job_id=job.id), code=303)


# -- jobs ----------------------------------------------------------------------------------------


def _job_or_404(page: Page, job_id: int) -> JobRow:
    job = page.ctx.journal(page.member_id).job(job_id)
    if job is None:
        raise PageRefused(404, "err_not_found")
    return job


def progress_of(
    job: JobRow,
    counts: Mapping[str, int],
    texts: i18n.Texts | None = None,
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The progress JSON of a job: counts, status, percent and time left, with the texts the
    page shows (`status_text`, `count_text`, `eta_text`), so the script updates them together.

    The total is fixed from the start for a job of chosen leads (their number); for every active
    lead it is the portal's count, never below what is done; a finished job's total is what it did.
    """
    converted, failed, skipped = (counts.get(k, 0) for k in ("converted", "failed", "skipped"))
    done = converted + failed + skipped
    finished = job.status in _FINAL
    if job.lead_ids:
        total: int | None = len(job.lead_ids)
    elif job.status in (DONE, FAILED):
        total = done
    else:
        total = max(job.total, done) if job.total else None
    if job.status in (DONE, FAILED):
        percent = 100
    elif total:
        percent = min(99, done * 100 // total)
    else:
        percent = 0
    eta = _seconds_left(job, done, total, now=now) if not finished else None
    data: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status,
        "finished": finished,
        "total": total,
        "done": done,
        "converted": converted,
        "failed": failed,
        "skipped": skipped,
        "percent": percent,
        "eta_seconds": eta,
        "error": job.error,
    }
    if texts is not None:
        data["status_text"] = texts.gettext(i18n.JOB_STATUS[job.status])
        data["count_text"] = (
            texts.ngettext("{done} of {n} lead", "{done} of {n} leads", total, done=done)
            if total
            else texts.ngettext("{n} lead so far", "{n} leads so far", done)
        )
        data["eta_text"] = (
            texts.gettext("about {minutes} min left", minutes=max(1, round(eta / 60)))
            if eta is not None
            else ""
        )
    return data


def _seconds_left(
    job: JobRow, done: int, total: int | None, *, now: dt.datetime | None = None
) -> float | None:
    """Time left at the pace so far (None until a lead is done or when the total is unknown)."""
    if not total or not done or job.started_at is None or done >= total:
        return None
    elapsed = ((now or dt.datetime.now(dt.UTC)) - job.started_at).total_seconds()
    return max(0.0, elapsed / done * (total - done))


def _links(page: Page) -> PortalLinks | None:
    installation = page.ctx.installations.get_installation(page.member_id)
    return PortalLinks.from_endpoint(installation.client_endpoint) if installation else None


@blueprint.get("/app/jobs/<int:job_id>")
def job(job_id: int) -> Any:
    """A job's progress, why it waits, and its per-lead report (a page of it) once it stopped."""
    page = _page()
    found = _job_or_404(page, job_id)
    journal = page.ctx.journal(page.member_id)
    progress = progress_of(found, _status_counts(journal, found), _texts(page))
    report = (
        load_report(journal, job_id) if progress["finished"] and found.kind != UNDO_KIND else None
    )
    start = _int_arg("from") or 0
    rows = report.leads[start : start + REPORT_ROWS] if report is not None else ()
    return _render(
        "page_job.html",
        page,
        job=found,
        progress=progress,
        waiting=why_waiting(found, _live_jobs(page)),
        report=report,
        totals=JobTotals.of(report) if report is not None else None,
        rows=rows,
        start=start,
        page_rows=REPORT_ROWS,
        titles=lead_titles(page.portal(), [row.lead_id for row in rows]) if rows else {},
        links=_links(page),
        undoable=_undoable(found),
        undos=_undos(page, found),
    )


@blueprint.get("/app/jobs/<int:job_id>/progress")
def job_progress(job_id: int) -> Any:
    """The job's progress as JSON, for the page's polling script."""
    page = _page()
    found = _job_or_404(page, job_id)
    counts = _status_counts(page.ctx.journal(page.member_id), found)
    return jsonify(progress_of(found, counts, _texts(page)))


def _status_counts(journal: Any, found: JobRow) -> dict[str, int]:
    """A job's leads by status; an undo job's from its row (reverted, failed, kept)."""
    if found.kind == UNDO_KIND:
        return {"converted": found.converted, "failed": found.failed, "skipped": found.skipped}
    return journal.status_counts(found.id)


@blueprint.get("/app/jobs/<int:job_id>/report.csv")
def job_csv(job_id: int) -> Any:
    """The job's per-lead report as CSV."""
    page = _page()
    _job_or_404(page, job_id)
    report = load_report(page.ctx.journal(page.member_id), job_id)
    return Response(
        report.to_csv(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="b24app-job-{job_id}.csv"'},
    )


# -- undo ----------------------------------------------------------------------------------------


def _undoable(job: JobRow) -> bool:
    """Whether the job's page offers "Undo": a finished conversion job."""
    return job.kind != UNDO_KIND and job.status in (DONE, FAILED)


def _undos(page: Page, found: JobRow) -> dict[str, Any]:
    """The undo jobs of a conversion job (or the undo job itself) and the latest one's leads."""
    store = UndoStore(page.ctx.journal(page.member_id))
    source = int(found.policy.get("undo") or 0) if found.kind == UNDO_KIND else found.id
    runs = store.undo_jobs(source) if source else []
    if found.kind == UNDO_KIND:
        runs = [found]
    latest = runs[-1] if runs else None
    leads = []
    if latest is not None:
        for lead_id, row in store.rows(latest.id).items():
            plan = (row.state or {}).get("plan") or {}
            leads.append(
                {
                    "lead_id": lead_id,
                    "status": row.status,
                    "why": [*plan.get("reasons", ()), *plan.get("notes", ())],
                    "error": (row.state or {}).get("error"),
                    "deletes": plan.get("deletes") or {},
                }
            )
    return {"source": source, "runs": runs, "latest": latest, "leads": leads[:REPORT_ROWS]}


@blueprint.get("/app/jobs/<int:job_id>/undo")
def undo_preview(job_id: int) -> Any:
    """What undoing a conversion job would revert and keep (admins; changes nothing)."""
    page = _page(write=True)
    found = _job_or_404(page, job_id)
    if not _undoable(found):
        raise PageRefused(409, "err_not_undoable")
    force = request.args.get("force") == "1"
    planned = undo_preview_of(page.portal(), page.ctx.journal(page.member_id), job_id, force=force)
    rows = planned.leads[:PREVIEW_ROWS]
    return _render(
        "page_undo.html",
        page,
        job=found,
        planned=planned,
        counts=planned.to_dict()["counts"],
        rows=rows,
        force=force,
        titles=lead_titles(page.portal(), [row.lead_id for row in rows]) if rows else {},
        links=_links(page),
    )


@blueprint.post("/app/jobs/<int:job_id>/undo")
def undo_job(job_id: int) -> Any:
    """Start undoing a conversion job (admins, confirmed on the preview); then show the job."""
    page = _page(write=True)
    found = _job_or_404(page, job_id)
    if not _undoable(found):
        raise PageRefused(409, "err_not_undoable")
    if request.form.get("confirm") != "yes":
        return redirect(page.url("page.undo_preview", job_id=job_id), code=303)
    force = request.form.get("force") == "1"
    log.info(
        "page: user %s started the undo of job %s on %s", page.user.user_id, job_id, page.member_id
    )
    page.ctx.jobs.run_undo(page.member_id, job_id, force=force)
    return redirect(page.url("page.job", job_id=job_id) + "#undo", code=303)


# -- the guided switch ---------------------------------------------------------------------------


@blueprint.post("/app/mode/verify")
def verify_mode() -> Any:
    """Re-read the CRM mode (admins) and record it; the overview says what Bitrix24 reports."""
    page = _page(write=True)
    mode = read_mode(page.portal())
    before = page.ctx.portal_settings.record_mode(page.member_id, mode.label)
    values = {"verified": mode.label}
    if before:
        values["from"] = before
    return redirect(page.url("page.view", **values) + "#switch", code=303)


# -- check the portal ----------------------------------------------------------------------------


@blueprint.get("/app/doctor")
def doctor_panel() -> Any:
    """The "Check the portal" panel (admins): `b24app doctor`'s lines for this portal."""
    page = _page(write=True)
    settings = page.ctx.settings
    installation = page.ctx.installations.get_installation(page.member_id)
    report = examine(
        page.portal(),
        display=installation.domain if installation else page.member_id,
        app=True,
        configured_plan=settings.plan,
        public_url=settings.public_url,
        language=page.user.lang,
    )
    PortalVariants(page.ctx.engine).record(page.member_id, recordable(report))
    return _render("page_doctor.html", page, report=report)


# -- rendering and errors ------------------------------------------------------------------------

# What an error page says, by the key a PageRefused carries.
ERRORS = {
    "err_no_form": N_("This page opens from inside Bitrix24."),
    "err_not_installed": N_("b24app is not installed on this portal."),
    "err_auth": N_("Bitrix24 did not confirm who you are."),
    "err_token": N_("Your page session is missing or not valid."),
    "err_expired": N_("Your page session has expired."),
    "err_admin": N_("Only a portal administrator can do this."),
    "err_portal": N_("Bitrix24 did not answer as expected ({code}). Try again in a minute."),
    "err_not_found": N_("There is no such job on this portal."),
    "err_not_undoable": N_("Only a finished conversion job can be undone."),
}


def _texts(page: Page) -> i18n.Texts:
    return i18n.texts(page.user.lang)


def _render(template: str, page: Page, **values: Any) -> str:
    texts = _texts(page)
    return render_template(
        template,
        **_language(texts),
        user=page.user,
        token=page.token,
        token_field=TOKEN_FIELD,
        token_query=TOKEN_QUERY,
        page_url=page.url,
        **values,
    )


def _language(texts: i18n.Texts) -> dict[str, Any]:
    """What every template needs to speak the reader's language."""
    return {
        "_": texts.gettext,
        "_html": texts.html,
        "ngettext": texts.ngettext,
        "core": texts.core,
        "texts": texts,
        "i18n": i18n,
        "html_lang": texts.html_lang,
        "mode_help": texts.help[0],
        "switch_help": texts.help[1],
    }


def _error_page(status: int, key: str, lang: str, **values: Any) -> tuple[str, int]:
    texts = i18n.texts(lang)
    message = texts.core(values.pop("text")) if "text" in values else None
    html = render_template(
        "page_error.html",
        **_language(texts),
        token=None,
        user=None,
        message=message or texts.gettext(ERRORS[key], **values),
        reopen=status in (401, 403),
    )
    return html, status


def _wants_json() -> bool:
    return request.path.endswith("/progress")


def _lang_of_request() -> str:
    token = request.form.get(TOKEN_FIELD) if request.method == "POST" else None
    token = token or request.args.get(TOKEN_QUERY) or request.headers.get(TOKEN_HEADER)
    if token:
        try:
            return _tokens(app_context()).verify(token).lang
        except PageTokenError:
            pass
    return _lang_hint()


@blueprint.errorhandler(PageRefused)
def _refused(exc: PageRefused) -> Any:
    if _wants_json():
        return jsonify(error=exc.key), exc.status
    return _error_page(exc.status, exc.key, _lang_of_request(), **exc.values)


@blueprint.errorhandler(B24Error)
def _portal_failed(exc: B24Error) -> Any:
    log.warning("page: the portal failed (%s %s)", exc.method or "", exc.code or type(exc).__name__)
    if _wants_json():
        return jsonify(error="portal", code=exc.code), 502
    return _error_page(502, "err_portal", _lang_of_request(), code=exc.code or "error")


@blueprint.errorhandler(JobBusy)
def _busy(exc: JobBusy) -> Any:
    return _error_page(409, "err_portal", _lang_of_request(), text=str(exc))


@blueprint.after_request
def _no_leaks(response: Response) -> Response:
    """Pages carry a bearer token in links: never cache them nor send them as a referrer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
