"""`b24app jobs undo`: preview, undo, a second undo, a changed deal kept unless --force, errors."""

from __future__ import annotations

from cli_support import active_leads, assert_one_line_error, core, run_cli

from sandbox.server import Sandbox


def _convert(env: dict[str, str]) -> int:
    ran = run_cli(["convert", "--yes", "--client", "both", "--json"], env)
    assert ran.code == 0, ran.err
    return int(ran.json()["job_id"])


def test_undo_previews_reverts_and_then_changes_nothing(
    env: dict[str, str], portal: Sandbox
) -> None:
    active = active_leads(portal)
    job = _convert(env)
    assert not set(active) & set(active_leads(portal))

    preview = run_cli(["jobs", "undo", str(job), "--dry-run", "--json"], env)
    assert preview.code == 0, preview.err
    planned = preview.json()
    assert planned["dry_run"] is True
    assert planned["counts"] == {"reverted": len(active), "kept": 0, "failed": 0}
    assert {lead["status"] for lead in planned["leads"]} == {"revert"}
    assert all(set(lead["deletes"]) == {"deal", "contact", "company"} for lead in planned["leads"])
    assert not set(active) & set(active_leads(portal))  # a dry run changes nothing

    ran = run_cli(["jobs", "undo", str(job), "--json"], env)
    assert ran.code == 0, ran.err
    report = ran.json()
    assert report["status"] == "done"
    assert report["counts"] == {"reverted": len(active), "kept": 0, "failed": 0}
    assert sorted(lead["lead_id"] for lead in report["leads"]) == active
    assert active_leads(portal) == active

    again = run_cli(["jobs", "undo", str(job)], env)
    assert again.code == 0, again.err
    assert "already undone" in again.out

    listed = run_cli(["jobs", "list", "--json"], env).json()["jobs"]
    assert [j["kind"] for j in listed][:2] == ["undo", "convert"]


def test_a_deal_moved_on_is_kept_unless_forced(env: dict[str, str], portal: Sandbox) -> None:
    job = _convert(env)
    report = run_cli(["jobs", "show", str(job), "--json"], env).json()
    converted = [lead for lead in report["leads"] if lead["status"] == "converted"]
    moved = converted[0]
    core(portal, "crm.deal.update", {"id": moved["deal_id"], "fields": {"STAGE_ID": "WON"}})

    ran = run_cli(["jobs", "undo", str(job), "--json"], env)
    assert ran.code == 0, ran.err
    leads = {lead["lead_id"]: lead for lead in ran.json()["leads"]}
    kept = leads[moved["lead_id"]]
    assert kept["status"] == "kept"
    assert any("moved to stage WON" in why for why in kept["why"])
    assert core(portal, "crm.deal.get", {"id": moved["deal_id"]})["STAGE_ID"] == "WON"
    assert all(lead["status"] == "reverted" for i, lead in leads.items() if i != moved["lead_id"])

    human = run_cli(["jobs", "undo", str(job), "--dry-run"], env)
    assert human.code == 0
    assert "will keep" in human.out and "--force" in human.out

    forced = run_cli(["jobs", "undo", str(job), "--force", "--json"], env)
    assert forced.code == 0, forced.err
    (lead,) = forced.json()["leads"]
    assert lead["status"] == "reverted" and lead["notes"][0].startswith("forced: ")
    assert moved["lead_id"] in active_leads(portal)


def test_undo_errors_are_one_line(env: dict[str, str], portal: Sandbox) -> None:
    missing = run_cli(["jobs", "undo", "99"], env)
    assert_one_line_error(missing, contains="no conversion job 99", code=2)
    job = _convert(env)
    undo = run_cli(["jobs", "undo", str(job), "--json"], env).json()["job_id"]
    of_undo = run_cli(["jobs", "undo", str(undo)], env)
    assert_one_line_error(of_undo, contains="is an undo", code=2)


def test_a_contact_used_elsewhere_is_never_deleted(env: dict[str, str], portal: Sandbox) -> None:
    job = _convert(env)
    report = run_cli(["jobs", "show", str(job), "--json"], env).json()
    lead = next(x for x in report["leads"] if x["status"] == "converted" and x["contact_id"])
    other = core(
        portal, "crm.deal.add", {"fields": {"TITLE": "x", "CONTACT_ID": lead["contact_id"]}}
    )

    kept = run_cli(["jobs", "undo", str(job), "--json"], env).json()
    row = next(x for x in kept["leads"] if x["lead_id"] == lead["lead_id"])
    assert row["status"] == "kept"
    assert f"contact {lead['contact_id']} is used by deal {other}" in row["why"]

    forced = run_cli(["jobs", "undo", str(job), "--force", "--json"], env).json()
    (row,) = forced["leads"]
    assert row["status"] == "reverted"
    assert "contact" not in row["deletes"] and row["deletes"]["deal"] == lead["deal_id"]
    assert (
        f"contact {lead['contact_id']} was not deleted: it is used by deal {other}" in row["notes"]
    )
    assert core(portal, "crm.contact.get", {"id": lead["contact_id"]})["ID"]
    assert lead["lead_id"] in active_leads(portal)


def test_an_undo_job_shows_its_leads_and_is_not_resumed_as_a_conversion(
    env: dict[str, str], portal: Sandbox
) -> None:
    job = _convert(env)
    undo = run_cli(["jobs", "undo", str(job), "--json"], env).json()
    shown = run_cli(["jobs", "show", str(undo["job_id"]), "--json"], env)
    assert shown.code == 0
    assert shown.json()["leads"] == undo["leads"] and shown.json()["undo_of"] == job
    as_csv = run_cli(["jobs", "show", str(undo["job_id"]), "--csv"], env)
    assert as_csv.out.splitlines()[0].startswith("lead_id,status,why")
    assert len(as_csv.out.splitlines()) == 1 + len(undo["leads"])
    resumed = run_cli(["jobs", "resume", str(undo["job_id"])], env)
    assert_one_line_error(resumed, contains=f"continue it with 'b24app jobs undo {job}'", code=2)


def test_in_simple_mode_the_undo_refuses_and_changes_nothing(
    env: dict[str, str], portal: Sandbox
) -> None:
    job = _convert(env)
    converted = run_cli(["jobs", "show", str(job), "--json"], env).json()["converted"]
    portal.set_mode("simple", client="contact", complete_activities=True)
    ran = run_cli(["jobs", "undo", str(job)], env)
    assert_one_line_error(ran, contains="Simple mode", code=2)
    portal.set_mode("classic")
    done = run_cli(["jobs", "undo", str(job), "--json"], env).json()
    assert done["counts"]["reverted"] == converted


def test_the_custom_fields_a_conversion_created_are_previewed_and_removed(
    env: dict[str, str], portal: Sandbox
) -> None:
    core(
        portal,
        "crm.lead.userfield.add",
        {
            "fields": {
                "FIELD_NAME": "SOURCE_NOTE",
                "USER_TYPE_ID": "string",
                "EDIT_FORM_LABEL": "Source note",
            }
        },
    )
    ran = run_cli(["convert", "--yes", "--client", "both", "--create-fields", "--json"], env)
    assert ran.code == 0, ran.err
    job = int(ran.json()["job_id"])
    created = {
        (kind, row["FIELD_NAME"])
        for kind in ("deal", "contact", "company")
        for row in core(portal, f"crm.{kind}.userfield.list", {"filter": {}})
    }
    assert len(created) == 3  # one per target

    preview = run_cli(["jobs", "undo", str(job), "--dry-run", "--json"], env)
    assert preview.code == 0, preview.err
    fields = preview.json()["fields"]
    assert {(f["entity"], f["field"]) for f in fields} == created
    assert {f["status"] for f in fields} == {"remove"}
    shown = run_cli(["jobs", "undo", str(job), "--dry-run"], env)
    assert "custom fields it created" in shown.out and "will delete" in shown.out

    ran = run_cli(["jobs", "undo", str(job), "--yes", "--json"], env)
    assert ran.code == 0, ran.err
    assert {f["status"] for f in ran.json()["fields"]} == {"removed"}
    for kind in ("deal", "contact", "company"):
        assert core(portal, f"crm.{kind}.userfield.list", {"filter": {}}) == []
    stored = run_cli(["jobs", "show", str(ran.json()["job_id"]), "--json"], env).json()
    assert {f["status"] for f in stored["fields"]} == {"removed"}
