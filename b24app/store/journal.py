"""The conversion journal: what every job did and where every lead's conversion stands.

Three tables on the shared `metadata` (schema by migration 0003):

* `jobs` - one row per conversion run: portal, kind, policy, explicit lead ids, status
  (pending -> running -> done | failed | interrupted), timestamps, a heartbeat, the requests it
  made, its counts, and `owner` (pid@host) of the process running it.
* `lead_states` - one row per (portal, lead): the scheduler's `LeadState.to_dict()` JSON while the
  lead is underway (kept for failed leads, dropped once converted: the ids columns remain), its
  status, the deal/contact/company ids, the error, how many jobs took it up, the last job.
* `job_leads` - one row per (job, lead): what that job reported for the lead, so a lead converted
  by job 1 and skipped by job 2 reads right in both reports.

Exactly-once rests on two rules kept here: a step's "sent" mark is committed before the batch is
sent (`save` runs one transaction per step), and only one live job per portal runs at a time
(`start_job`/`claim_job` refuse while another job's process is alive; a job whose process died is
marked interrupted and may be taken over).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.expression import Executable

from b24app import messages as msg
from b24app.crm.journal import (  # noqa: F401 (re-exported: the journal's public names)
    AUTO_KINDS,
    DONE,
    FAILED,
    FINISHED,
    INTERRUPTED,
    JOB_STATUSES,
    LEAD_FINAL,
    PENDING,
    RUNNING,
    JobBusy,
    JobCounts,
    JobRow,
    JobStatus,
    JobWaiting,
    LeadEntry,
    LeadRecord,
    LeadStatus,
)
from b24app.errors import ConfigError, UsageError
from b24app.store.db import (
    UtcDateTime,
    is_sqlite,
    make_engine,
    metadata,
    migrate,
    normalize_url,
    utc_now,
    write_lock,
)

log = logging.getLogger("b24app.jobs")

if TYPE_CHECKING:
    from b24app.store.created_fields import CreatedFields

# A job on another machine that has not beaten its heart for this long is taken for dead.
STALE_AFTER = 900.0
# How `_take_portal` explains a job it found abandoned (its process gone, or its lease lapsed):
# the recovery retries such a job at once rather than after a back-off.
ABANDONED = msg.JOB_ABANDONED

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("portal", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("policy", Text, nullable=False),
    Column("lead_ids", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("started_at", UtcDateTime(), nullable=True),
    Column("finished_at", UtcDateTime(), nullable=True),
    Column("heartbeat_at", UtcDateTime(), nullable=True),
    Column("requests", Integer, nullable=False, default=0),
    Column("total", Integer, nullable=True),
    Column("converted", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("owner", String(255), nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_jobs_portal_status", "portal", "status"),
)

lead_states = Table(
    "lead_states",
    metadata,
    Column("portal", String(255), primary_key=True),
    Column("lead_id", BigInteger, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("state", Text, nullable=True),
    Column("deal_id", BigInteger, nullable=True),
    Column("contact_id", BigInteger, nullable=True),
    Column("company_id", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("job_id", Integer, nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_lead_states_portal_status", "portal", "status"),
)

job_leads = Table(
    "job_leads",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("lead_id", BigInteger, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("deal_id", BigInteger, nullable=True),
    Column("contact_id", BigInteger, nullable=True),
    Column("company_id", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# What each lead's conversion did, kept for good (lead_states drops the plan once converted): the
# converted `LeadState.to_dict()` per (job, lead), the record an undo reverts from (migration 0007).
conversion_records = Table(
    "conversion_records",
    metadata,
    Column("portal", String(255), primary_key=True),
    Column("job_id", Integer, primary_key=True),
    Column("lead_id", BigInteger, primary_key=True),
    Column("state", Text, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
)

_IDS = ("deal_id", "contact_id", "company_id")
_IN_CHUNK = 500  # ids per IN (...) clause: far below SQLite's and PostgreSQL's parameter caps


def this_process() -> str:
    """The owner tag of jobs this process runs: `pid@host`."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield list(ids[start : start + _IN_CHUNK])


class Journal:
    """The conversion journal of one portal (jobs + per-lead states) in the app database."""

    def __init__(
        self,
        engine: Engine,
        *,
        portal: str,
        stale_after: float = STALE_AFTER,
        leases: Mapping[str, float] | None = None,
    ) -> None:
        """`leases`: job kind -> seconds; jobs of these kinds are run by processes that `beat`
        while they run them, so such a job is dead once its heartbeat is older than that, even
        if its process lives on (b24app worker judges its own jobs so, under the portal lock)."""
        if not portal:
            raise UsageError("the journal needs a portal key (member_id or webhook host)")
        self.engine = engine
        self.portal = portal
        self.stale_after = stale_after
        self.leases = dict(leases or {})
        self.owner = this_process()

    def __repr__(self) -> str:
        return f"Journal({self.portal!r})"

    @classmethod
    def open(cls, database_url: str, *, portal: str) -> Journal:
        """The journal in the database at `database_url`, migrated first; ConfigError when the
        database cannot be opened."""
        try:
            migrate(database_url)
            return cls(make_engine(database_url), portal=portal)
        except (SQLAlchemyError, OSError) as exc:
            try:
                shown = make_url(normalize_url(database_url)).render_as_string(hide_password=True)
            except (SQLAlchemyError, ValueError):
                shown = "the configured URL"
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            raise ConfigError(f"cannot open the database {shown}: {reason}") from None

    @staticmethod
    def open_jobs(engine: Engine, *, kinds: Sequence[str]) -> list[JobRow]:
        """Every portal's jobs of these kinds that are not finished (pending, running,
        interrupted), oldest first: what a recovery sweep looks at."""
        query = (
            select(jobs)
            .where(
                jobs.c.kind.in_(list(kinds)),
                jobs.c.status.in_([RUNNING, PENDING, INTERRUPTED]),
            )
            .order_by(jobs.c.id)
        )
        with engine.connect() as conn:
            return [_job(row) for row in conn.execute(query)]

    # -- jobs ----------------------------------------------------------------------------------

    def jobs(
        self,
        limit: int = 20,
        *,
        before: int | None = None,
        statuses: Sequence[str] | None = None,
    ) -> list[JobRow]:
        """This portal's jobs, newest first: only ids below `before` and `statuses` when given."""
        query = select(jobs).where(jobs.c.portal == self.portal)
        if before is not None:
            query = query.where(jobs.c.id < before)
        if statuses is not None:
            query = query.where(jobs.c.status.in_(list(statuses)))
        query = query.order_by(jobs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query)]

    def count_jobs(self) -> int:
        """How many jobs this portal has (for a pager)."""
        query = select(func.count()).select_from(jobs).where(jobs.c.portal == self.portal)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def live_jobs(self, kinds: Sequence[str] | None = None) -> list[JobRow]:
        """This portal's jobs not finished (pending, running, interrupted), oldest first;
        only those of `kinds` when given."""
        query = select(jobs).where(
            jobs.c.portal == self.portal, jobs.c.status.in_((PENDING, RUNNING, INTERRUPTED))
        )
        if kinds is not None:
            query = query.where(jobs.c.kind.in_(list(kinds)))
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query.order_by(jobs.c.id))]

    def gather(
        self,
        *,
        kind: str,
        policy: Mapping[str, Any],
        lead_ids: Sequence[int],
        kinds: Sequence[str],
    ) -> tuple[JobRow, tuple[int, ...], bool]:
        """Add leads to the portal's open job: the newest pending job of `kinds` with this
        policy, else a new pending job of `kind`. (the job, the ids it did not have yet, whether
        it was created). A job a process has claimed (running) takes no leads: they wait for the
        next one, so a run never misses a lead added while it ran."""
        wanted = [int(i) for i in dict.fromkeys(lead_ids)]
        stored = json.dumps(dict(policy), sort_keys=True)
        with write_lock(self.engine) as conn:
            self._lock_portal(conn)  # serialized with `claim_job`
            row = conn.execute(
                select(jobs)
                .where(
                    jobs.c.portal == self.portal,
                    jobs.c.status == PENDING,
                    jobs.c.kind.in_(list(kinds)),
                    jobs.c.policy == stored,
                )
                .order_by(jobs.c.id.desc())
                .limit(1)
            ).first()
            # heartbeat_at of a gathering job: when a lead last joined it (`turns.QUIET`)
            if row is None:
                job = self._insert_job(
                    conn, kind=kind, policy=policy, lead_ids=wanted, status=PENDING
                )
                conn.execute(update(jobs).where(jobs.c.id == job.id).values(heartbeat_at=utc_now()))
                return self._job(conn, job.id) or job, tuple(wanted), True
            job = _job(row)
            have = set(job.lead_ids or ())
            added = tuple(i for i in wanted if i not in have)
            if added:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job.id)
                    .values(
                        lead_ids=json.dumps([*(job.lead_ids or ()), *added]),
                        heartbeat_at=utc_now(),
                    )
                )
                job = self._job(conn, job.id) or job
            return job, added, False

    def absorb(self, job_id: int) -> tuple[int, ...]:
        """Merge the portal's gathering automatic jobs (pending, never started, same policy)
        into automatic job `job_id`, which this process runs: their leads are appended to its
        list and their records deleted, in one transaction serialized with `gather` - a lead is
        in exactly one job's list at every moment, so a crash loses none (the running job's
        recovery reads its list). The leads it did not hold yet, in order (issue 16: a lead
        that arrives while its portal is converting joins the running job's next batch)."""
        with write_lock(self.engine) as conn:
            self._lock_portal(conn)  # serialized with `gather` and `claim_job`
            row = conn.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.portal == self.portal)
            ).first()
            if row is None or row.kind not in AUTO_KINDS or row.lead_ids is None:
                return ()
            if row.status != RUNNING or row.owner != self.owner:
                return ()
            gathering = conn.execute(
                select(jobs.c.id, jobs.c.lead_ids)
                .where(
                    jobs.c.portal == self.portal,
                    jobs.c.status == PENDING,
                    jobs.c.started_at.is_(None),
                    jobs.c.kind.in_(list(AUTO_KINDS)),
                    jobs.c.policy == row.policy,
                    jobs.c.id != job_id,
                )
                .order_by(jobs.c.id)
            ).all()
            if not gathering:
                return ()
            have = [int(i) for i in json.loads(row.lead_ids)]
            known = set(have)
            added: list[int] = []
            for other in gathering:
                for lead_id in json.loads(other.lead_ids or "[]"):
                    if int(lead_id) not in known:
                        known.add(int(lead_id))
                        added.append(int(lead_id))
            taken = [other.id for other in gathering]
            conn.execute(delete(job_leads).where(job_leads.c.job_id.in_(taken)))
            conn.execute(delete(jobs).where(jobs.c.id.in_(taken)))
            if added:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(lead_ids=json.dumps([*have, *added]))
                )
            log.info("job %d absorbed job(s) %s: %d lead(s)", job_id, taken, len(added))
            return tuple(added)

    def job(self, job_id: int) -> JobRow | None:
        """The job with this id, if it belongs to this portal."""
        with self.engine.connect() as conn:
            return self._job(conn, job_id)

    def _job(self, conn: Connection, job_id: int) -> JobRow | None:
        row = conn.execute(
            select(jobs).where(jobs.c.id == job_id, jobs.c.portal == self.portal)
        ).first()
        return _job(row) if row else None

    def live_job(self) -> JobRow | None:
        """The portal's oldest pending or running job: the one a new job would wait for."""
        query = (
            select(jobs)
            .where(jobs.c.portal == self.portal, jobs.c.status.in_([PENDING, RUNNING]))
            .order_by(jobs.c.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _job(row) if row else None

    def create_job(
        self,
        *,
        kind: str,
        policy: Mapping[str, Any],
        lead_ids: Sequence[int] | None = None,
        alone: bool = False,
    ) -> JobRow:
        """Record a job to run later (status pending); `claim_job` starts it. `alone`: refuse
        (JobWaiting) while another job of this portal is pending or running, checked in the
        same transaction that records the job."""
        with write_lock(self.engine) as conn:
            if alone:
                live = conn.execute(
                    select(jobs.c.id)
                    .where(jobs.c.portal == self.portal, jobs.c.status.in_([PENDING, RUNNING]))
                    .order_by(jobs.c.id)
                    .limit(1)
                ).scalar()
                if live is not None:
                    raise JobWaiting(f"job {live} of this portal is pending or running", job=live)
            return self._insert_job(
                conn, kind=kind, policy=policy, lead_ids=lead_ids, status=PENDING
            )

    def start_job(
        self, *, kind: str, policy: Mapping[str, Any], lead_ids: Sequence[int] | None = None
    ) -> JobRow:
        """Record a job and start it in this process; JobBusy if another job is live."""
        with write_lock(self.engine) as conn:
            self._take_portal(conn)
            return self._insert_job(
                conn, kind=kind, policy=policy, lead_ids=lead_ids, status=RUNNING
            )

    def claim_job(self, job_id: int) -> JobRow:
        """Make a pending or interrupted job (or one whose process died) run in this process.

        UsageError for an unknown or finished job; JobBusy if another live job holds the portal.
        """
        with write_lock(self.engine) as conn:
            found = self._job(conn, job_id)
            if found is None:
                raise UsageError(f"no conversion job {job_id} for this portal")
            if found.status in FINISHED:
                raise UsageError(f"job {job_id} is already {found.status}; start a new one")
            self._take_portal(conn)
            now = utc_now()
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    status=RUNNING,
                    owner=self.owner,
                    heartbeat_at=now,
                    finished_at=None,
                    started_at=found.started_at or now,
                    error=None,
                )
            )
            claimed = self._job(conn, job_id)
        assert claimed is not None
        return claimed

    def _lock_portal(self, conn: Connection) -> None:
        """Inside a write transaction: serialize with every other job change of this portal.
        BEGIN IMMEDIATE does it on SQLite; PostgreSQL needs a transaction-scoped lock."""
        if not is_sqlite(self.engine):
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"b24app-journal:{self.portal}"},
            )

    def _take_portal(self, conn: Connection) -> None:
        """Inside a write transaction: fail if a live job runs; mark dead ones interrupted."""
        self._lock_portal(conn)
        running = conn.execute(
            select(jobs).where(jobs.c.portal == self.portal, jobs.c.status == RUNNING)
        ).all()
        for row in running:
            job = _job(row)
            if self._alive(job):
                raise JobBusy(msg.JOB_BUSY.format(job=job.id, owner=job.owner))
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id)
                .values(
                    status=INTERRUPTED,
                    finished_at=utc_now(),
                    error=ABANDONED.format(owner=job.owner),
                )
            )

    def _alive(self, job: JobRow) -> bool:
        pid, _, host = (job.owner or "").partition("@")
        lease = self.leases.get(job.kind)
        if host == socket.gethostname() and pid.isdigit():
            if not _pid_alive(int(pid)):
                return False
            if lease is None:
                return True
        beat = job.heartbeat_at or job.started_at or job.created_at
        return (utc_now() - beat).total_seconds() < (self.stale_after if lease is None else lease)

    def beat(self, job_id: int) -> bool:
        """Renew the lease of a job this process runs (its heartbeat); False if it is not ours
        or not running any more."""
        with write_lock(self.engine) as conn:
            return (
                conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == job_id,
                        jobs.c.portal == self.portal,
                        jobs.c.status == RUNNING,
                        jobs.c.owner == self.owner,
                    )
                    .values(heartbeat_at=utc_now())
                ).rowcount
                == 1
            )

    def _insert_job(
        self,
        conn: Connection,
        *,
        kind: str,
        policy: Mapping[str, Any],
        lead_ids: Sequence[int] | None,
        status: str,
    ) -> JobRow:
        now = utc_now()
        running = status == RUNNING
        job_id = conn.execute(
            insert(jobs).values(
                portal=self.portal,
                kind=kind,
                policy=json.dumps(dict(policy), sort_keys=True),
                lead_ids=None if lead_ids is None else json.dumps([int(i) for i in lead_ids]),
                status=status,
                created_at=now,
                started_at=now if running else None,
                heartbeat_at=now if running else None,
                requests=0,
                converted=0,
                failed=0,
                skipped=0,
                owner=self.owner if running else None,
            )
        ).inserted_primary_key[0]
        found = self._job(conn, int(job_id))
        assert found is not None
        return found

    def finish_job(
        self, job_id: int, *, status: str, error: str | None = None, counts: JobCounts | None = None
    ) -> None:
        """Close a job: done | failed | interrupted, with its final counts and error."""
        if status not in JOB_STATUSES:
            raise UsageError(f"unknown job status {status!r}")
        values: dict[str, Any] = {
            "status": status,
            "error": error,
            "finished_at": utc_now(),
            "heartbeat_at": utc_now(),
        }
        if counts is not None:
            values |= _counts(counts)
        with write_lock(self.engine) as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.portal == self.portal)
                .values(**values)
            )

    def created_fields(self) -> CreatedFields:
        """The custom fields b24app created on this portal (b24app.store.created_fields)."""
        from b24app.store.created_fields import CreatedFields

        return CreatedFields(self.engine, self.portal)

    def purge(self) -> int:
        """Delete every job, per-job outcome and lead state of this portal (an uninstall with
        CLEAN=1); how many jobs were deleted."""
        with write_lock(self.engine) as conn:
            ids = select(jobs.c.id).where(jobs.c.portal == self.portal)
            conn.execute(delete(job_leads).where(job_leads.c.job_id.in_(ids)))
            conn.execute(delete(lead_states).where(lead_states.c.portal == self.portal))
            conn.execute(
                delete(conversion_records).where(conversion_records.c.portal == self.portal)
            )
            from b24app.store.undo import undo_leads  # the undo's rows (b24app.store.undo)

            conn.execute(delete(undo_leads).where(undo_leads.c.portal == self.portal))
            return conn.execute(delete(jobs).where(jobs.c.portal == self.portal)).rowcount

    # -- leads ---------------------------------------------------------------------------------

    def states(self, lead_ids: Sequence[int]) -> dict[int, LeadRecord]:
        """The stored states of these leads (those the journal knows), by lead id."""
        found: dict[int, LeadRecord] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(int(i) for i in lead_ids))):
                query = select(lead_states).where(
                    lead_states.c.portal == self.portal, lead_states.c.lead_id.in_(chunk)
                )
                found.update((r.lead_id, _record(r)) for r in conn.execute(query))
        return found

    def unfinished(self, lead_ids: Sequence[int] | None = None) -> list[LeadRecord]:
        """Leads whose conversion is underway (status creating), optionally among `lead_ids`."""
        query = select(lead_states).where(
            lead_states.c.portal == self.portal, lead_states.c.status == LeadStatus.CREATING
        )
        with self.engine.connect() as conn:
            if lead_ids is None:
                return [_record(r) for r in conn.execute(query.order_by(lead_states.c.lead_id))]
            found = []
            for chunk in _chunks(sorted(set(int(i) for i in lead_ids))):
                found += [
                    _record(r)
                    for r in conn.execute(
                        query.where(lead_states.c.lead_id.in_(chunk)).order_by(
                            lead_states.c.lead_id
                        )
                    )
                ]
            return found

    def outcomes(self, job_id: int) -> Iterator[LeadEntry]:
        """What job `job_id` reported for each of its leads, by lead id."""
        query = (
            select(job_leads)
            .join(jobs, jobs.c.id == job_leads.c.job_id)
            .where(job_leads.c.job_id == job_id, jobs.c.portal == self.portal)
            .order_by(job_leads.c.lead_id)
        )
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield LeadEntry(
                    lead_id=row.lead_id,
                    status=row.status,
                    deal_id=row.deal_id,
                    contact_id=row.contact_id,
                    company_id=row.company_id,
                    error=row.error,
                )

    def outcome_statuses(self, job_id: int) -> dict[int, str]:
        """Lead id -> the status job `job_id` last recorded for it."""
        query = select(job_leads.c.lead_id, job_leads.c.status).where(job_leads.c.job_id == job_id)
        with self.engine.connect() as conn:
            return {row.lead_id: row.status for row in conn.execute(query)}

    def status_counts(self, job_id: int) -> dict[str, int]:
        """How many of job `job_id`'s leads are in each status."""
        query = (
            select(job_leads.c.status, func.count())
            .where(job_leads.c.job_id == job_id)
            .group_by(job_leads.c.status)
        )
        with self.engine.connect() as conn:
            return {status: int(count) for status, count in conn.execute(query)}

    def save(
        self,
        job_id: int,
        leads: Sequence[LeadEntry],
        *,
        counts: JobCounts | None = None,
        taken: bool = False,
        outcomes_of: Collection[int] | None = None,
    ) -> None:
        """One transaction: the leads' states and job outcomes, the job's counts and heartbeat.

        Skipped leads get only a job outcome (their conversion state, if any, is left alone).
        `taken`: the job takes these leads up now (their `attempts` go up by one).
        `outcomes_of`: the leads whose job outcome changed (None: every one of `leads`).
        """
        now = utc_now()
        states = [
            {
                "portal": self.portal,
                "lead_id": e.lead_id,
                "status": e.status,
                "state": None if e.state is None else _json(e.state),
                **{name: getattr(e, name) for name in _IDS},
                "error": e.error,
                "attempts": int(taken),
                "job_id": job_id,
                "updated_at": now,
            }
            for e in leads
            if e.status != LeadStatus.SKIPPED
        ]
        outcomes = [
            {
                "job_id": job_id,
                "lead_id": e.lead_id,
                "status": e.status,
                **{name: getattr(e, name) for name in _IDS},
                "error": e.error,
                "updated_at": now,
            }
            for e in leads
            if outcomes_of is None or e.lead_id in outcomes_of
        ]
        records = [
            {
                "portal": self.portal,
                "job_id": job_id,
                "lead_id": e.lead_id,
                "state": _json(e.done),
                "recorded_at": now,
            }
            for e in leads
            if e.done is not None
        ]
        with write_lock(self.engine) as conn:
            if states:
                self._upsert(conn, lead_states, states, ("portal", "lead_id"), increment="attempts")
            if records:
                self._upsert(conn, conversion_records, records, ("portal", "job_id", "lead_id"))
            if outcomes:
                self._upsert(conn, job_leads, outcomes, ("job_id", "lead_id"))
            values: dict[str, Any] = {"heartbeat_at": now}
            if counts is not None:
                values |= _counts(counts)
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    def _upsert(
        self,
        conn: Connection,
        table: Table,
        rows: list[dict[str, Any]],
        keys: tuple[str, ...],
        *,
        increment: str | None = None,
    ) -> None:
        statement = _upsert_statement(
            self.engine.dialect.name, table, tuple(rows[0]), keys, increment
        )
        conn.execute(statement, rows)


@functools.lru_cache(maxsize=32)
def _upsert_statement(
    dialect: str,
    table: Table,
    columns: tuple[str, ...],
    keys: tuple[str, ...],
    increment: str | None,
) -> Executable:
    """INSERT ... ON CONFLICT (keys) DO UPDATE of `columns`, built once per shape.

    A conversion run saves twice per batch; building the statement anew each time made
    SQLAlchemy construct it and work out its cache key again (a few % of a worker's CPU, see
    docs/figures.md). One statement object keeps its memoised cache key.
    """
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    statement = dialect_insert(table)
    changed = {name: statement.excluded[name] for name in columns if name not in keys}
    if increment:
        changed[increment] = table.c[increment] + statement.excluded[increment]
    return statement.on_conflict_do_update(index_elements=list(keys), set_=changed)


def _json(state: Mapping[str, Any] | str) -> str:
    """A lead state as stored: JSON with sorted keys (text a caller encoded is kept as is)."""
    return state if isinstance(state, str) else json.dumps(state, sort_keys=True)


def _counts(counts: JobCounts) -> dict[str, Any]:
    values: dict[str, Any] = {
        "requests": counts.requests,
        "converted": counts.converted,
        "failed": counts.failed,
        "skipped": counts.skipped,
    }
    if counts.total is not None:
        values["total"] = counts.total
    return values


def _job(row: Any) -> JobRow:
    lead_ids = json.loads(row.lead_ids) if row.lead_ids else None
    return JobRow(
        id=row.id,
        portal=row.portal,
        kind=row.kind,
        policy=json.loads(row.policy),
        lead_ids=tuple(int(i) for i in lead_ids) if lead_ids is not None else None,
        status=JobStatus(row.status),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        heartbeat_at=row.heartbeat_at,
        requests=row.requests,
        total=row.total,
        converted=row.converted,
        failed=row.failed,
        skipped=row.skipped,
        owner=row.owner,
        error=row.error,
    )


def _record(row: Any) -> LeadRecord:
    try:
        state = json.loads(row.state) if row.state else None
    except ValueError:
        state = None  # unreadable: treated like a lead the journal does not know
    return LeadRecord(
        lead_id=row.lead_id,
        status=LeadStatus(row.status),
        state=state,
        deal_id=row.deal_id,
        contact_id=row.contact_id,
        company_id=row.company_id,
        error=row.error,
        attempts=row.attempts,
        job_id=row.job_id,
        updated_at=row.updated_at,
    )
