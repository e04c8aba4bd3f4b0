"""Everything a conversion run reads from the portal, in as few requests as the platform allows.

* Facts (lead stages, pipelines, the target pipeline's stages): one `batch`.
* Leads: keyset pages (`order ID ASC`, `>ID` = the last id seen, `start=-1`, no COUNT except on
  the very first page, whose total feeds the progress bar) chained fifty to a request through
  `$result[prev][49][ID]`, about 2,500 leads per request; handed out in chunks of 500, so memory
  stays flat however many leads the portal holds.
  https://apidocs.bitrix24.com/settings/performance/huge-data.html
* Per chunk, in one request as a rule: the chunk's activities, open and closed, found through
  their bindings (`crm.activity.list` `filter[BINDINGS]`, which finds an activity bound to a lead
  whatever its primary owner: `crm/classes/mysql/crm_activity.php:176-230`; `OWNER_ID` matches
  the primary owner only, `crm_activity.php:1720-1723`), its product rows
  (`crm.item.productrow.list`), and the deals, contacts and companies b24app already created for
  leads the journal does not know (`@ORIGIN_ID`, the idempotency key).
* Then, per lead, what native conversion carries over and no listing can read for many leads at
  once: its timeline comments (`crm.timeline.comment.list` takes one ENTITY_ID:
  `restservice.php:16038-16060`) and a repeat lead's contacts (`crm.lead.contact.items.get`);
  per chunk, the requisites of the clients a conversion reuses (`crm.requisite.list`) and a linked
  company's address (`crm.company.list`).
* Several keyset listings share one batch: each gets pages in proportion to its expected size,
  and whatever did not fit continues in the next request. Id lists stay at 500 per filter, well
  under PHP's `max_input_vars` (1,000 by default), which caps how many values one parsed query
  string may carry.
* Client matches (`crm.duplicate.findbycomm`, when the policy asks for them): `batch_many`.
* A run whose leads are known by id (an automatic job: the events named them) sends their first
  chunk's lead pages, and the chunk's listings that need only the ids (activities, product rows,
  the `@ORIGIN_ID` lookups) when they fit, in the facts request (`Listings.step_with`): a read of
  leads needs nothing the facts return. What was read that way serves the next read of ids it
  covers, once; anything else is read as before (issue 16: 200 leads read in 5 requests, not 7).

Product rows of many leads at once: the docs disagree. The 2024 page of `crm.item.productrow.list`
says `=` "works with arrays as well"; the current one says only `@id` takes an array and other
keys ignore one. So a chunk is asked with `=ownerId: [ids]` first; if the portal refuses that, the
reader asks one lead per command from then on (always valid, ~10 requests per 500 leads more).
When `b24app doctor` recorded which reading the portal follows (`variants`, passed in by the
entry points as a plain mapping), the reader takes that path at once: `docs` sends no list of
owners at all; `code` (or nothing recorded) asks with the list first, as above.
https://apidocs.bitrix24.com/api-reference/crm/universal/product-rows/crm-item-productrow-list.html

An activity whose primary owner is not one of the chunk's leads (bound to a lead *and* to
something else first) has its bindings read (`crm.activity.binding.list`) to learn its leads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from b24app.crm import mapping, neighbours
from b24app.crm.customfields import CustomFields, fill_files, list_commands, pending_files
from b24app.crm.facts import OPTIONAL_KEYS, PortalFacts, facts_commands
from b24app.crm.fieldpairs import label_of
from b24app.crm.matching import ClientMatch, match_commands, read_match
from b24app.crm.mode import MODE_KEY, Mode, ModeError, mode_command, parse_mode
from b24app.crm.planner import LeadPlan
from b24app.crm.policy import LeadSelection, Policy
from b24app.errors import (
    B24AppError,
    B24Error,
    ListingError,
)
from b24app.rest.command import Command
from b24app.rest.listing import Listing, Listings
from b24app.rest.portal import Portal
from b24app.rest.response import BatchResult
from b24app.vocabulary import COMPANY, CONTACT, DEAL, LEAD_TYPE_ID, PAGE_SIZE, TYPE_ID
from b24app.vocabulary import IDS_PER_FILTER as CHUNK
from b24app.vocabulary import LIST_METHOD as _LISTS
from b24app.vocabulary import MAX_BATCH as MAX_COMMANDS

log = logging.getLogger("b24app.crm")

# The doctor's name for the product-row disagreement, and the reading that refuses owner lists
# (b24app/crm/checkup.py `productrow_owner_arrays`).
OWNER_ARRAYS, OWNER_ARRAYS_REFUSED = "productrow_owner_arrays", "docs"
# The portal's facts are read in one batch (lead stages, pipelines and their stages, the
# custom-field definitions, the CRM mode) and kept here, the one cache of them, this long per
# portal: a preview followed by its conversion, a worker's next slice or the next automatic
# batch of an import read them once (issue 16). A conversion run drops them when its batches'
# mode check sees the mode change (`b24app.crm.watch`), when b24app created a field, or when a
# policy does not fit the cached facts (read again before refusing). Every batch still carries
# its own mode check, so a cached mode is never trusted across a switch.
FACTS_TTL = 60.0
_custom_cache: dict[str, tuple[float, CustomFields]] = {}
# portal -> pipelines -> (when read, the facts batch's results, the mode command's among them)
_facts_cache: dict[str, dict[tuple[int, ...], tuple[float, dict[str, Any]]]] = {}
_cache_lock = threading.Lock()


def clear_facts_cache() -> None:
    """Forget every portal's cached facts and definitions (tests reuse sandbox ports)."""
    with _cache_lock:
        _custom_cache.clear()
        _facts_cache.clear()


def forget_facts(portal: Portal) -> None:
    """Drop everything cached for this portal: its facts and custom-field definitions (after
    b24app created a field on it, or a run saw its CRM mode change)."""
    key = getattr(portal, "cache_key", None)
    with _cache_lock:
        _custom_cache.pop(str(key), None)
        _facts_cache.pop(str(key), None)


_ORIGIN_SELECT = ("ID", "ORIGINATOR_ID", "ORIGIN_ID")
_ACTIVITY_SELECT = ("ID", "OWNER_ID", "OWNER_TYPE_ID", "COMPLETED")
# Leads per `filter[BINDINGS]` listing: two query variables each, far below max_input_vars.
BINDING_GROUP = 100


def _row_listings(ids: Sequence[int]) -> list[Listing]:
    """Product rows one lead per command (`=ownerId` takes one id on every portal)."""
    return [
        Listing(f"r{i}", "crm.item.productrow.list", {"=ownerType": "L", "=ownerId": i})
        for i in ids
    ]


def _row_listing(name: str) -> bool:
    return name[:1] == "r" and name[1:].isdigit()


def _estimate(count: int, per_lead: float) -> int:
    """Pages to ask for first: the expected rows with half again as much room, plus one."""
    return min(MAX_COMMANDS, math.ceil(count * per_lead * 1.5 / PAGE_SIZE) + 1)


@dataclass(frozen=True)
class Extras:
    """What planning needs besides the leads: per lead id, its activities (`{"ID", "COMPLETED"}`
    rows, open and closed), product rows, matched clients, entities b24app already created from
    it ({"deal": id, ...}), its timeline comments (ids) and a repeat lead's contacts (ids,
    primary first); per client ("company"|"contact", id), its default requisite and, for linked
    companies, its fields (ADDRESS*, TITLE)."""

    activities: Mapping[int, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    product_rows: Mapping[int, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    matches: Mapping[int, ClientMatch] = field(default_factory=dict)
    created: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    comments: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    contacts: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    requisites: Mapping[tuple[str, int], int] = field(default_factory=dict)
    clients: Mapping[tuple[str, int], Mapping[str, Any]] = field(default_factory=dict)


class LeadStream:
    """The selected leads, read lazily in keyset pages and handed out in chunks."""

    def __init__(
        self,
        portal: Portal,
        listings: Iterator[Listing],
        *,
        chunk_size: int = CHUNK,
        total: int | None = None,
        first: Sequence[dict[str, Any]] = (),
    ) -> None:
        self._portal = portal
        self._listings = listings
        self._chunk_size = chunk_size
        self.total = total
        self._first = list(first)  # leads read already (`Reader.facts_and_mode` `leads`)

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        """Lists of at most `chunk_size` leads, in id order."""
        buffer: list[dict[str, Any]] = self._first
        self._first = []
        for listing in self._listings:
            lists = Listings(self._portal, [listing])
            while not lists.done:
                buffer.extend(lists.step().get(listing.name, ()))
                if self.total is None and listing.count:
                    self.total = lists.totals.get(listing.name)
                if lists.errors:
                    raise lists.errors[listing.name]
                while len(buffer) >= self._chunk_size:
                    yield buffer[: self._chunk_size]
                    buffer = buffer[self._chunk_size :]
        if buffer:
            yield buffer


class Reader:
    """Bulk reads for a conversion run (see the module doc)."""

    def __init__(
        self,
        portal: Portal,
        *,
        chunk_size: int = CHUNK,
        variants: Mapping[str, str] | None = None,
    ) -> None:
        self.portal = portal
        self.chunk_size = chunk_size
        # the portal refused `=ownerId` with a list (this run, or when the doctor asked it)
        self.rows_per_lead = (variants or {}).get(OWNER_ARRAYS) == OWNER_ARRAYS_REFUSED
        # the custom-field definitions, read with the facts (b24app.crm.customfields)
        self.custom_fields = CustomFields()
        self.field_notes: list[str] = []  # custom fields the job could not create
        self.file_requests = 0  # custom-field file downloads (not batchable: one request each)
        self.reused = False  # whether the last facts came from the cache (`facts_and_mode`)
        # leads read with the facts (`facts_and_mode` `leads`): their ids, and the rows found
        self._prefetched: tuple[frozenset[int], list[dict[str, Any]]] | None = None
        # and the listings of `extras` that need only their ids: the ids, (rows per lead, the
        # entities looked up), the rows by listing name
        self._prefetched_extras: (
            tuple[frozenset[int], tuple[bool, tuple[str, ...]], dict[str, list[dict[str, Any]]]]
            | None
        ) = None

    def facts(self, pipelines: Collection[int] = (0,)) -> PortalFacts:
        """Lead stages, deal pipelines and the stages of `pipelines`, in one request (with the
        custom-field definitions, unless cached)."""
        facts, _ = self._facts(facts_commands(pipelines))
        return facts

    def facts_and_mode(
        self,
        pipelines: Collection[int] = (0,),
        *,
        reuse: bool = False,
        leads: Sequence[int] = (),
        policy: Policy | None = None,
    ) -> tuple[PortalFacts, Mode | None]:
        """The facts and the CRM mode (`crm.settings.mode.get`), in one request; the mode is
        None when that one command failed. `reuse`: the ones cached for this portal if younger
        than FACTS_TTL (no request; `self.reused` says so). `leads`: ids the run will read
        (`leads_by_id`) - their first chunk rides in the facts request when one is sent (a
        lead read needs only the ids: issue 16, a request less per automatic batch), and with
        `policy` the listings of `extras` that need only the ids too, when they fit."""
        wanted = tuple(sorted(set(pipelines)))
        cached = self._cached_facts(wanted) if reuse else None
        custom = self._cached_custom_fields() if cached is not None else None
        if cached is not None and custom is not None:
            self.custom_fields, self.reused = custom, True
            return PortalFacts.from_batch(cached), read_mode_result(cached)
        facts, results = self._facts(
            (*facts_commands(pipelines), mode_command(MODE_KEY)), leads=leads, policy=policy
        )
        mode = read_mode_result(results)
        if mode is not None and not self.custom_fields.error:
            key = getattr(self.portal, "cache_key", None)
            if key is not None:
                with _cache_lock:
                    _facts_cache.setdefault(str(key), {})[wanted] = (
                        time.monotonic(),
                        dict(results),
                    )
        self.reused = False
        return facts, mode

    def _cached_facts(self, pipelines: tuple[int, ...]) -> dict[str, Any] | None:
        key = getattr(self.portal, "cache_key", None)
        if key is None:
            return None
        with _cache_lock:
            found = _facts_cache.get(str(key), {}).get(pipelines)
        if found is None or time.monotonic() - found[0] > FACTS_TTL:
            return None
        return found[1]

    def _facts(
        self,
        commands: tuple[Command, ...],
        *,
        leads: Sequence[int] = (),
        policy: Policy | None = None,
    ) -> tuple[PortalFacts, Mapping[str, Any]]:
        cached = self._cached_custom_fields()
        extra = () if cached is not None else list_commands()
        self._prefetched = self._prefetched_extras = None
        if leads:
            # the portal's newest leads: what an import just spent of its bucket (neighbours)
            extra = (*extra, neighbours.newest_command())
            ids = sorted(set(int(i) for i in leads))[: self.chunk_size]
            listings = [self._by_id_listing(ids)]
            more = self._id_listings(ids, policy, ids) if policy is not None else []
            room = MAX_COMMANDS - len(commands) - len(extra)
            if sum(listing.pages for listing in (*listings, *more)) <= room:
                listings += more  # planning reads them next: ride along if they fit (issue 16)
            lists = Listings(self.portal, listings)
            found, result = lists.step_with((*commands, *extra))
            self._count_neighbours(result, found.get("l", []))
            if lists.done and not lists.errors:  # else read again where they are needed
                self._prefetched = (frozenset(ids), found.pop("l", []))
                if more and len(listings) > 1:
                    key = (self.rows_per_lead, tuple(_wanted(policy)) if policy else ())
                    self._prefetched_extras = (frozenset(ids), key, found)
        else:
            result = self.portal.batch((*commands, *extra), halt=False, idempotent=True)
        for command in commands:
            if command.key == MODE_KEY:
                continue
            if command.key in result.errors and command.key not in OPTIONAL_KEYS:
                raise result.errors[command.key]
        if cached is None:
            cached = CustomFields.from_results(result.results, result.errors)
            self._cache_custom_fields(cached)
        self.custom_fields = cached
        return PortalFacts.from_batch(result.results), result.results

    def _count_neighbours(self, result: BatchResult, known: Sequence[Mapping[str, Any]]) -> None:
        """Raise the client's mirror of the portal's bucket to what the leads added just before
        this request left in it (`b24app.crm.neighbours`); nothing when the portal's clock or
        the newest leads are missing, or the client keeps no bucket."""
        bucket = getattr(self.portal, "bucket", None)
        newest = result.results.get(neighbours.NEWEST_KEY)
        portal_now = result.time.finish if result.time is not None else None
        if bucket is None or portal_now is None or not isinstance(newest, list):
            return
        found = neighbours.evidence(newest, known, portal_now)
        if found:
            bucket.at_least(found)

    def fill_files(self, plan: LeadPlan) -> LeadPlan:
        """The plan with the files of its custom fields downloaded from the lead (one request
        per file, the app's auth) and ready to upload with the entity that gets them; a file the
        portal will not serve becomes a warning of the lead, never a failed conversion."""
        download = getattr(self.portal, "download", None)
        changed: dict[str, Any] = {}
        warnings = list(plan.warnings)
        got: dict[str, tuple[str, bytes] | str] = {}
        for name in (COMPANY, CONTACT, DEAL):
            entity = plan.entity(name)
            if entity is None or not entity.created:
                continue
            urls = pending_files(entity.fields)
            if not urls:
                continue
            for url in urls:
                if url in got:
                    continue
                if download is None:
                    got[url] = "this portal client cannot download files"
                    continue
                self.file_requests += 1
                try:
                    got[url] = download(url)
                except B24Error as exc:
                    got[url] = f"{exc.code or 'error'}: {exc.description or exc}"
                except B24AppError as exc:  # a URL that names no REST method
                    got[url] = str(exc)
            fields, more = fill_files(entity.fields, got, label=self._labels(name))
            changed[name] = replace(entity, fields=fields)
            warnings.extend(more)
        if not changed:
            return plan
        return replace(plan, **changed, warnings=tuple(dict.fromkeys(warnings)))

    def _labels(self, target: str) -> dict[str, str]:
        """Target field -> the label of the lead field it takes (for warnings)."""
        found = self.custom_fields
        return {
            made: label_of(found.row("lead", lead) or {}, found.language) or lead
            for lead, made in found.pairs(target).items()
        }

    def _cached_custom_fields(self) -> CustomFields | None:
        key = getattr(self.portal, "cache_key", None)
        if key is None:
            return None
        with _cache_lock:
            found = _custom_cache.get(str(key))
        if found is None or time.monotonic() - found[0] > FACTS_TTL:
            return None
        return found[1]

    def _cache_custom_fields(self, found: CustomFields) -> None:
        key = getattr(self.portal, "cache_key", None)
        if key is None or found.error:
            return
        with _cache_lock:
            _custom_cache[str(key)] = (time.monotonic(), found)

    def active_leads(self, facts: PortalFacts, selection: LeadSelection) -> LeadStream:
        """Every active lead the selection picks (ids in the selection are ignored here)."""
        selection_filter = selection.lead_filter(facts)
        selection_filter.pop("@ID", None)
        listing = Listing(
            "l",
            "crm.lead.list",
            selection_filter,
            tuple(mapping.LEAD_SELECT),
            pages=MAX_COMMANDS,
            count=True,
        )
        return LeadStream(self.portal, iter([listing]), chunk_size=self.chunk_size)

    def leads_by_id(self, lead_ids: Sequence[int]) -> LeadStream:
        """These leads, whatever their stage (ids that do not exist are simply not returned)."""
        ids = sorted(set(int(i) for i in lead_ids))
        first: list[dict[str, Any]] = []
        rest = ids
        prefetched, self._prefetched = self._prefetched, None  # good for one read
        if prefetched is not None:  # the ids it covers come from it, the others are read
            wanted = set(ids) & prefetched[0]
            first = [lead for lead in prefetched[1] if mapping.link_id(lead.get("ID")) in wanted]
            rest = [i for i in ids if i not in wanted]
        listings = (
            self._by_id_listing(rest[start : start + self.chunk_size])
            for start in range(0, len(rest), self.chunk_size)
        )
        return LeadStream(
            self.portal, listings, chunk_size=self.chunk_size, total=len(ids), first=first
        )

    @staticmethod
    def _by_id_listing(ids: Sequence[int]) -> Listing:
        """One chunk of leads by id (at most `chunk_size` ids)."""
        return Listing(
            "l",
            "crm.lead.list",
            {"@ID": list(ids)},
            tuple(mapping.LEAD_SELECT),
            pages=_estimate(len(ids), 1 / 1.5),
        )

    def extras(
        self, leads: Sequence[Mapping[str, Any]], policy: Policy, *, origins: Collection[int] = ()
    ) -> Extras:
        """Activities, product rows and matches of `leads`; created entities of `origins`."""
        ids = [i for i in (mapping.link_id(lead.get("ID")) for lead in leads) if i]
        if not ids:
            return Extras()
        origin_ids = sorted(set(origins) & set(ids))
        per_lead = self.rows_per_lead  # known before asking: one command per lead, same batch
        linked = _reused(leads, {})  # a repeat lead's clients: their requisites and address
        prefetched, self._prefetched_extras = self._prefetched_extras, None  # good for one read
        if (
            prefetched is not None
            and prefetched[0].issuperset(ids)
            and prefetched[1]
            == (
                per_lead,
                tuple(_wanted(policy)),
            )
        ):
            lists = Listings(self.portal, _client_listings(linked))
            found = {**_only(prefetched[2], set(ids), prefetched[0]), **lists.read()}
        else:
            lists = Listings(
                self.portal,
                [*self._id_listings(ids, policy, origin_ids), *_client_listings(linked)],
            )
            found = lists.read()
        return self._extras(leads, ids, policy, origin_ids, lists, found)

    def _id_listings(
        self, ids: Sequence[int], policy: Policy, origin_ids: Sequence[int]
    ) -> list[Listing]:
        """The listings of `extras` that need only lead ids: activities, product rows, and what
        b24app created from `origin_ids`."""
        listings = [
            Listing(
                f"a{start}",
                "crm.activity.list",
                {
                    "BINDINGS": [
                        {"OWNER_TYPE_ID": LEAD_TYPE_ID, "OWNER_ID": i}
                        for i in ids[start : start + BINDING_GROUP]
                    ]
                },
                _ACTIVITY_SELECT,
                pages=_estimate(len(ids[start : start + BINDING_GROUP]), 1.5),
                repeats=True,
            )
            for start in range(0, len(ids), BINDING_GROUP)
        ]
        if self.rows_per_lead:
            listings += _row_listings(ids)
        else:
            listings.append(
                Listing(
                    "r",
                    "crm.item.productrow.list",
                    {"=ownerType": "L", "=ownerId": ids},
                    pages=_estimate(len(ids), 0.5),
                )
            )
        if origin_ids:
            for name in _wanted(policy):
                listings.append(
                    Listing(
                        f"o{name}",
                        _LISTS[name],
                        {
                            "ORIGINATOR_ID": mapping.ORIGINATOR_ID,
                            "@ORIGIN_ID": [mapping.origin_id(i) for i in origin_ids],
                        },
                        _ORIGIN_SELECT,
                    )
                )
        return listings

    def _extras(
        self,
        leads: Sequence[Mapping[str, Any]],
        ids: Sequence[int],
        policy: Policy,
        origin_ids: Sequence[int],
        lists: Listings,
        found: dict[str, list[dict[str, Any]]],
    ) -> Extras:
        per_lead = self.rows_per_lead
        linked = _reused(leads, {})
        errors = lists.errors
        # refusals of the listings below are planned around; a listing that could not advance
        # (the portal ignored its `>ID` filter) or passed its page cap is raised, as before
        for error in errors.values():
            if isinstance(error, ListingError):
                raise error
        if "r" in errors:
            log.info(
                "crm.item.productrow.list refused a list of owners (%s); reading product "
                "rows one lead per command",
                errors.pop("r").code or "error",
            )
            self.rows_per_lead = True
        for name in [n for n in errors if n in ("qcompany", "qcontact", "z")]:
            # requisites unreadable (rights, plan): planned without them; a requisite step the
            # portal then refuses fails its lead with the portal's text
            log.info("%s refused (%s); planning without it", name, errors.pop(name).code)
        if errors:
            raise next(iter(errors.values()))
        if per_lead:
            rows = [row for name, got in found.items() if _row_listing(name) for row in got]
        elif "r" in found and not self.rows_per_lead:
            rows = found["r"]
        else:
            rows = self._rows_one_by_one(ids)
        activity_rows = [row for name, got in found.items() if name[:1] == "a" for row in got]
        matches = self._matches(leads, policy)
        matched = _reused(leads, matches) - linked
        if matched:  # clients found by phone/e-mail: their requisites, read now
            lists = Listings(self.portal, _client_listings(matched, "m"))
            for name, got in lists.read().items():
                found.setdefault(name[1:], []).extend(got)
            if lists.errors:
                raise next(iter(lists.errors.values()))
        more = self._around(leads, ids, found)
        return Extras(
            activities=self._activities(activity_rows, ids),
            product_rows=_product_rows(rows, ids),
            matches=matches,
            created=_created(found, origin_ids),
            comments=more.comments,
            contacts=more.contacts,
            requisites=more.requisites,
            clients=more.clients,
        )

    def _activities(
        self, rows: Sequence[Mapping[str, Any]], ids: Sequence[int]
    ) -> dict[int, tuple[Mapping[str, Any], ...]]:
        """Activity rows per lead: by primary owner, else by reading the activity's bindings."""
        wanted = set(ids)
        found: dict[int, dict[int, Mapping[str, Any]]] = {}
        foreign: dict[int, Mapping[str, Any]] = {}
        for row in rows:
            activity = mapping.link_id(row.get("ID"))
            if activity is None:
                continue
            owner = mapping.link_id(row.get("OWNER_ID"))
            entry = {"ID": activity, "COMPLETED": str(row.get("COMPLETED") or "N").upper()}
            if str(row.get("OWNER_TYPE_ID")) == str(LEAD_TYPE_ID) and owner in wanted:
                found.setdefault(owner, {})[activity] = entry
            else:
                foreign[activity] = entry
        if foreign:
            commands = [
                Command(f"ab{a}", "crm.activity.binding.list", {"activityId": a}) for a in foreign
            ]
            result = self.portal.batch_many(commands, halt=False, idempotent=True)
            result.raise_first()
            for activity, entry in foreign.items():
                for binding in result.results.get(f"ab{activity}") or ():
                    lead = mapping.link_id(binding.get("entityId"))
                    if str(binding.get("entityTypeId")) == str(LEAD_TYPE_ID) and (lead in wanted):
                        found.setdefault(lead, {})[activity] = entry
        return {
            lead: tuple(entry for _, entry in sorted(by_id.items()))
            for lead, by_id in found.items()
        }

    def _around(
        self,
        leads: Sequence[Mapping[str, Any]],
        ids: Sequence[int],
        found: Mapping[str, Sequence[Mapping[str, Any]]],
    ) -> Extras:
        """Comments, a repeat lead's contacts, reused clients' requisites and a linked
        company's address, in as few requests as their shapes allow."""
        comments: dict[int, list[int]] = {}
        contacts: dict[int, tuple[int, ...]] = {}
        pages: dict[str, int] = {f"t{i}": 0 for i in ids}  # comment listing key -> start
        commands = [
            Command(
                f"k{lead_id}",
                "crm.lead.contact.items.get",
                {"id": lead_id},
            )
            for lead in leads
            if (lead_id := mapping.link_id(lead.get("ID")))
            and mapping.link_id(lead.get("CONTACT_ID"))
        ]
        while pages or commands:
            batch = [*commands]
            batch += [
                Command(
                    key,
                    "crm.timeline.comment.list",
                    {
                        "filter": {"ENTITY_ID": int(key[1:]), "ENTITY_TYPE": "lead"},
                        "order": {"ID": "ASC"},
                        "select": ["ID"],
                        "start": start,
                    },
                )
                for key, start in pages.items()
            ]
            result = self.portal.batch_many(batch, halt=False, idempotent=True)
            result.raise_first()
            for command in commands:
                items = result.results.get(command.key) or ()
                ordered = sorted(
                    (i for i in items if isinstance(i, Mapping)),
                    key=lambda i: (
                        str(i.get("IS_PRIMARY")) != "Y",
                        mapping.link_id(i.get("SORT")) or 0,
                    ),
                )
                contacts[int(command.key[1:])] = tuple(
                    c for i in ordered if (c := mapping.link_id(i.get("CONTACT_ID")))
                )
            commands = []
            following = {}
            for key, start in pages.items():
                rows = result.results.get(key) or ()
                comments.setdefault(int(key[1:]), []).extend(
                    c
                    for r in rows
                    if isinstance(r, Mapping) and (c := mapping.link_id(r.get("ID")))
                )
                if len(rows) >= PAGE_SIZE:
                    following[key] = start + PAGE_SIZE
            pages = following
        requisites: dict[tuple[str, int], int] = {}
        for name in (COMPANY, CONTACT):
            rows = sorted(
                found.get(f"q{name}", ()),
                key=lambda r: (mapping.link_id(r.get("SORT")) or 0, mapping.link_id(r.get("ID"))),
            )
            for row in rows:  # the first by SORT, ID is the client's default (EntityRequisite)
                owner = mapping.link_id(row.get("ENTITY_ID"))
                if owner and (name, owner) not in requisites:
                    requisites[(name, owner)] = mapping.link_id(row.get("ID")) or 0
        clients = {
            (COMPANY, row_id): dict(row)
            for row in found.get("z", ())
            if (row_id := mapping.link_id(row.get("ID")))
        }
        return Extras(
            comments={lead: tuple(dict.fromkeys(c)) for lead, c in comments.items() if c},
            contacts=contacts,
            requisites=requisites,
            clients=clients,
        )

    def _rows_one_by_one(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        lists = Listings(self.portal, _row_listings(ids))
        found = lists.read()
        if lists.errors:
            raise next(iter(lists.errors.values()))
        return [row for rows in found.values() for row in rows]

    def _matches(
        self, leads: Sequence[Mapping[str, Any]], policy: Policy
    ) -> dict[int, ClientMatch]:
        commands = [command for lead in leads for command in match_commands(lead, policy)]
        if not commands:
            return {}
        result = self.portal.batch_many(commands, halt=False, idempotent=True)
        result.raise_first()
        matches = {}
        for lead in leads:
            lead_id = mapping.link_id(lead.get("ID"))
            if lead_id:
                match = read_match(lead_id, result.results)
                if match != ClientMatch():
                    matches[lead_id] = match
        return matches


def read_mode_result(results: Mapping[str, Any], key: str = MODE_KEY) -> Mode | None:
    """The mode a batch's `mode_command(key)` returned, or None (no answer, or not a mode)."""
    if key not in results:
        return None
    try:
        return parse_mode(results[key])
    except ModeError:
        return None


def _wanted(policy: Policy) -> list[str]:
    names = [DEAL]
    if policy.client.wants_contact:
        names.append(CONTACT)
    if policy.client.wants_company:
        names.append(COMPANY)
    return names


def _client_listings(reused: set[tuple[str, int]], prefix: str = "") -> list[Listing]:
    """Listings of the requisites of these clients and of the companies' address fields."""
    listings = []
    for name in (COMPANY, CONTACT):
        owners = sorted(i for kind, i in reused if kind == name)
        if owners:
            listings.append(
                Listing(
                    f"{prefix}q{name}",
                    "crm.requisite.list",
                    {"ENTITY_TYPE_ID": TYPE_ID[name], "@ENTITY_ID": owners},
                    ("ID", "ENTITY_TYPE_ID", "ENTITY_ID", "SORT"),
                )
            )
    companies = sorted(i for kind, i in reused if kind == COMPANY)
    if companies:
        listings.append(
            Listing(
                f"{prefix}z",
                "crm.company.list",
                {"@ID": companies},
                ("ID", "TITLE", *mapping.ADDRESS_FIELDS),
            )
        )
    return listings


def _reused(
    leads: Sequence[Mapping[str, Any]], matches: Mapping[int, ClientMatch]
) -> set[tuple[str, int]]:
    """The clients conversions of these leads reuse: a repeat lead's own, matched ones."""
    found: set[tuple[str, int]] = set()
    for lead in leads:
        lead_id = mapping.link_id(lead.get("ID")) or 0
        match = matches.get(lead_id) or ClientMatch()
        for name, matched in ((COMPANY, match.company_id), (CONTACT, match.contact_id)):
            client = mapping.link_id(lead.get(f"{name.upper()}_ID")) or matched
            if client:
                found.add((name, client))
    return found


def _product_rows(
    rows: Sequence[Mapping[str, Any]], ids: Collection[int]
) -> dict[int, tuple[Mapping[str, Any], ...]]:
    wanted = set(ids)
    found: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        owner = mapping.link_id(row.get("ownerId", row.get("OWNER_ID")))
        if owner in wanted:
            found.setdefault(owner, []).append(row)
    return {owner: tuple(sorted(rows, key=_row_order)) for owner, rows in found.items()}


def _row_order(row: Mapping[str, Any]) -> tuple[int, int]:
    return (mapping.link_id(row.get("sort")) or 0, mapping.link_id(row.get("id")) or 0)


def _only(
    found: Mapping[str, list[dict[str, Any]]], ids: Collection[int], covered: Collection[int]
) -> dict[str, list[dict[str, Any]]]:
    """Rows read for the `covered` leads, without the activities owned by covered leads other
    than `ids` (they would look foreign: `_activities` reads a foreign one's bindings)."""
    others = set(covered) - set(ids)
    return {
        name: [
            row
            for row in rows
            if name[:1] != "a"
            or str(row.get("OWNER_TYPE_ID")) != str(LEAD_TYPE_ID)
            or mapping.link_id(row.get("OWNER_ID")) not in others
        ]
        for name, rows in found.items()
    }


def _created(
    found: Mapping[str, Sequence[Mapping[str, Any]]], ids: Collection[int]
) -> dict[int, dict[str, int]]:
    wanted = set(ids)
    created: dict[int, dict[str, int]] = {}
    for name in (DEAL, CONTACT, COMPANY):
        for row in found.get(f"o{name}", ()):
            lead_id = mapping.lead_id_of(row.get("ORIGIN_ID"))
            entity_id = mapping.link_id(row.get("ID"))
            if (
                lead_id not in wanted
                or not entity_id
                or str(row.get("ORIGINATOR_ID")) != mapping.ORIGINATOR_ID
            ):
                continue
            known = created.setdefault(lead_id, {})
            known[name] = min(entity_id, known.get(name, entity_id))  # the oldest one wins
    return created
