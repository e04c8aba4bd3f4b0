"""The core's user-facing texts: skip reasons, lead failures, why a job stopped, install refusals.

The journal stores them in English, as the terminal prints them. Each is marked with `N_` so the
message extractor puts it into the gettext catalogs (handlers/translations); the app page matches a
stored text back to its template here and shows it in the reader's language. A text the core
shows to people must therefore be built from a template of this module, never from an f-string.
Values are what the template names in braces; a value that is itself one of these texts is
translated too.
"""

from __future__ import annotations


def N_(text: str) -> str:
    """Mark `text` for the catalogs; it stays English here."""
    return text


# -- why a lead was skipped ----------------------------------------------------------------------
SKIP_CONVERTED = N_("already converted")
SKIP_CONVERTED_BY_JOB = N_("already converted by job {job}")
SKIP_NOT_ACTIVE = N_("stage {stage} is not an active lead stage")
SKIP_NOT_FOUND = N_("lead not found")
SKIP_NOT_SELECTED = N_("not picked by the policy's lead selection")

# -- why a lead failed ---------------------------------------------------------------------------
FAIL_UNPLANNABLE = N_("cannot be planned: {error}")
FAIL_STEP = N_("step {step} ({method}) failed: {error}")
FAIL_CHECK = N_("checking step {step} ({method}) failed: {error}")
FAIL_GAVE_UP = N_("step {step} gave up after {tries} transient errors")
FAIL_DUPLICATE = N_(
    "Bitrix24 converted this lead too, but b24app could not remove its own duplicate: {reason}"
)
NO_ANSWER = N_("no answer")

# -- what settling found (parts joined by "; ") --------------------------------------------------
SETTLED = N_("another b24app run converted this lead at the same time")
SETTLED_KEPT = N_("deal {deal} (the lowest id) was kept")
SETTLED_REMOVED = N_("duplicates removed: {entities}")
SETTLED_SHARED = N_("duplicates kept (another lead uses them): {entities}")

# -- why a job stopped ---------------------------------------------------------------------------
JOB_STOPPED_BY = N_("the run was interrupted ({cause})")
JOB_PORTAL_FAILED = N_("the portal failed: {error}")
JOB_BATCH_REFUSED = N_("the portal refused the batch: {error}")
JOB_EVERY_CALL_REFUSED = N_("the portal refused every call: {error}")
JOB_PORTAL_LOST = N_(
    "the portal lost the answers of {count} batches in a row; it looks unreachable"
)
JOB_ABANDONED = N_("its process ({owner}) stopped before the job finished")
JOB_SWITCHED = N_(
    "the CRM was switched to Simple mode during this job, so Bitrix24 converted the leads still "
    "in work itself ({count} of this job's leads are reported with Bitrix24's deal, any "
    "duplicate b24app had begun removed); b24app took no new leads after the switch"
)
JOB_BUSY = N_(
    "conversion job {job} is running for this portal (process {owner}); wait for it to finish"
)

# -- why a policy cannot run on the portal -------------------------------------------------------
POLICY_NO_PIPELINE = N_("pipeline {pipeline} does not exist or is not visible (pipelines: {known})")
POLICY_NO_STAGE = N_("{where}: lead stage {stage} does not exist")
POLICY_CLOSED_STAGE = N_("{where}: lead stage {stage} is closed; only active leads are converted")
POLICY_BAD_JSON = N_("not valid JSON ({error})")
POLICY_NOT_OBJECT = N_("the policy must be a JSON object")
POLICY_DATES_ORDER = N_("leads.created_after must be earlier than leads.created_before")
POLICY_UNKNOWN = N_("unknown setting {name}")
POLICY_SECTION = N_("{where} must be an object")
POLICY_CHOICE = N_("{where} must be {allowed} (got {value})")
POLICY_WHOLE = N_("{where} must be a whole number >= 0 (got {value})")
POLICY_POSITIVE = N_("{where} must hold positive whole numbers (got {value})")
POLICY_TEXTS = N_("{where} must hold non-empty strings (got {value})")
POLICY_FLAG = N_("{where} must be true or false (got {value})")
POLICY_DAY = N_("{where} must be a date YYYY-MM-DD (got {value})")
POLICY_LIST = N_("{where} must be a list")
NONE = N_("none")

# -- why an installation was refused -------------------------------------------------------------
INSTALL_MALFORMED = N_("missing or malformed {field}")
INSTALL_ACCESS_TOKEN = N_("access token")
INSTALL_REFRESH_TOKEN = N_("refresh token")
INSTALL_APPLICATION_TOKEN = N_("application token")
INSTALL_MALFORMED_DOMAIN = N_("malformed DOMAIN")
INSTALL_TOKENS_REFUSED = N_("the OAuth server did not accept these tokens")
INSTALL_OAUTH_DOWN = N_("the Bitrix24 OAuth server could not be reached")
INSTALL_NO_ENDPOINT = N_("the OAuth server named no portal endpoint")
INSTALL_PORTAL_DOWN = N_("the portal could not be asked ({code})")
INSTALL_OTHER_PORTAL = N_("the tokens do not belong to this portal")
INSTALL_OTHER_DOMAIN = N_("the tokens do not belong to this domain")
INSTALL_TOKEN_REFUSED = N_("the portal refused the proven token ({code})")
INSTALL_UNBOUND = N_(
    "the app was installed but its event handlers could not be bound ({code}); "
    "reinstall the app to retry"
)

# -- undoing a conversion job (b24app.undo): why a lead is kept, notes, failures ----------
# {item} is an entity and its id ("deal 12"); {users} a list of them ("deal 5, lead 7").
UNDO_LEAD_GONE = N_("the lead no longer exists")
UNDO_LEAD_MOVED = N_("the lead moved to stage {stage} after the conversion")
UNDO_DEAL_MOVED = N_("{item} moved to stage {stage}")
UNDO_EDITED = N_("{item} was edited after the conversion")
UNDO_NEW_ACTIVITIES = N_("{item} has new activities: {ids}")
UNDO_ROWS_CHANGED = N_("{item} has other product rows ({now} now, {then} at the conversion)")
UNDO_USED = N_("{item} is used by {users}")
UNDO_NO_RECORD = N_(
    "converted before b24app kept undo records, so what the conversion created is not known"
)
UNDO_NO_BEFORE = N_("the stage the lead had before the conversion is not recorded")
UNDO_UNREADABLE = N_("the record of this lead's conversion cannot be read: {error}")
UNDO_FORCED = N_("forced: reverted although changed after the conversion")
UNDO_KEPT_CLIENT = N_("{item} was not deleted: it is used by {users}")
UNDO_GONE_ALREADY = N_("{item} was already deleted")
UNDO_STEP_FAILED = N_("{method} failed: {error}")
UNDO_NOTHING = N_("job {job} converted no leads: nothing to undo")
UNDO_UNDONE = N_("job {job} is already undone (undo job {undo}): nothing changed")
UNDO_NOT_CONVERSION = N_("job {job} is an undo, not a conversion")
UNDO_READ_FAILED = N_("the portal could not be read: {error}")
UNDO_SIMPLE = N_(
    "the CRM is in Simple mode, where leads are not used: switch it back to Classic to undo"
)
UNDO_SWITCHED = N_(
    "the CRM was switched to Simple mode during the undo; switch it back to Classic and undo "
    "again to finish (nothing is reverted twice)"
)

ALL: tuple[str, ...] = tuple(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)
