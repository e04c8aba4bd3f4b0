"""Journal.purge forgets one portal's jobs, outcomes and lead states, and nothing of another's."""

from __future__ import annotations

from sqlalchemy import func, select

from b24app.store.journal import Journal, LeadEntry, job_leads, jobs, lead_states


def _fill(journal: Journal) -> int:
    job = journal.start_job(kind="convert", policy={}, lead_ids=[1, 2])
    journal.save(
        job.id,
        [
            LeadEntry(lead_id=1, status="converted", deal_id=7),
            LeadEntry(lead_id=2, status="failed"),
        ],
        taken=True,
    )
    return job.id


def _count(engine, table, where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()


def test_purge_deletes_only_that_portals_rows(tmp_path) -> None:
    mine = Journal.open(f"sqlite:///{tmp_path / 'j.db'}", portal="mine")
    theirs = Journal(mine.engine, portal="theirs")
    _fill(mine)
    their_job = _fill(theirs)

    assert mine.purge() == 1

    assert mine.jobs() == [] and mine.states([1, 2]) == {}
    assert _count(mine.engine, lead_states, lead_states.c.portal == "mine") == 0
    assert _count(mine.engine, jobs, jobs.c.portal == "mine") == 0
    assert [j.id for j in theirs.jobs()] == [their_job]
    assert set(theirs.states([1, 2])) == {1, 2}
    assert _count(mine.engine, job_leads, job_leads.c.job_id == their_job) == 2
    assert mine.purge() == 0  # a second purge (a duplicate delivery) is harmless
