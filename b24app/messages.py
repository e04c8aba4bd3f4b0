"""The core's user-facing texts: skip reasons, lead failures, why a job stopped, install refusals,
what `b24app doctor` finds.

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

# -- custom-field values left behind (b24app/crm/customfields.py) ------------------------------
# {field} is the lead field's label (or its code); {target} an entity ("contact").
FIELD_OPTION_UNKNOWN = N_("{field}: option #{option} is not in the lead field's list; not copied")
FIELD_OPTION_MISSING = N_("{field}: the {target} field has no option '{option}'; not copied")
FIELD_FILE_FAILED = N_("{field}: a file could not be copied ({error})")
FIELD_FILE_NOT_DOWNLOADED = N_("not downloaded")

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
UNDO_FIELD_USED = N_("kept: used by {users}")
UNDO_FIELD_UNCHECKED = N_("kept: its use could not be checked: {error}")
UNDO_FIELD_GONE = N_("already deleted")
UNDO_FIELD_FAILED = N_("crm.userfield.delete failed: {error}")
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
# -- what `b24app doctor` finds (b24app/doctor.py, b24app/crm/checkup.py) ------------------------
DOCTOR_REACHED = N_("the portal answered ({portal})")
DOCTOR_UNREACHABLE = N_("cannot reach the portal ({reason})")
DOCTOR_UNREACHABLE_FIX = N_(
    "check the portal address (B24_WEBHOOK_URL, or the installation's domain), the network and "
    "any proxy"
)
DOCTOR_DELETED = N_("the portal was deleted")
DOCTOR_DELETED_FIX = N_("nothing to convert there")
DOCTOR_UNPAID = N_("the portal refused the app: its payment has expired")
DOCTOR_UNPAID_FIX = N_("renew the app's subscription in the Bitrix24 Market")
DOCTOR_REFUSED_TOKEN = N_("the portal refused the app's token ({code})")
DOCTOR_REFUSED_WEBHOOK = N_("the portal refused the webhook ({code})")
DOCTOR_REINSTALL = N_("reinstall the app from the Bitrix24 Market")
DOCTOR_NEW_WEBHOOK = N_(
    "create an inbound webhook with the CRM (crm) permission and set B24_WEBHOOK_URL to its URL"
)
DOCTOR_PORTAL_FAILED = N_("the portal failed ({code})")
DOCTOR_PORTAL_FAILED_STATUS = N_("the portal failed ({code}, HTTP {status})")
DOCTOR_TRY_AGAIN = N_("try again in a minute; if it persists, the portal is having trouble")
DOCTOR_TOKEN_USER = N_("accepted: the app's token acts as user #{user}")
DOCTOR_TOKEN_USER_NAMED = N_("accepted: the app's token acts as user #{user} ({name})")
DOCTOR_WEBHOOK_USER = N_("accepted: the webhook acts as user #{user}")
DOCTOR_WEBHOOK_USER_NAMED = N_("accepted: the webhook acts as user #{user} ({name})")
DOCTOR_SCOPES_UNLISTED = N_(
    "the portal did not list the scopes (`scope` failed); CRM calls answered"
)
DOCTOR_APP_LACKS = N_("the app lacks the {scopes} scope")
DOCTOR_WEBHOOK_LACKS = N_("the webhook lacks the {scopes} scope")
DOCTOR_APP_SCOPES_FIX = N_(
    "reinstall the app with these scopes (the Market registration's permissions)"
)
DOCTOR_WEBHOOK_SCOPES_FIX = N_(
    "edit the inbound webhook (Developer resources > Other > Inbound webhook), tick {scopes} and "
    "save"
)
DOCTOR_GRANTED = N_("granted: {scopes}")
DOCTOR_ADMIN = N_("the acting user is a portal administrator")
DOCTOR_NOT_ADMIN = N_(
    "the acting user is not a portal administrator: b24app cannot read custom fields, and "
    "conversion runs with that user's CRM rights"
)
DOCTOR_NOT_ADMIN_FIX = N_(
    "create the inbound webhook as a portal administrator (or make this user one)"
)
DOCTOR_MODE_FAILED = N_("crm.settings.mode.get failed: {error}")
DOCTOR_CLASSIC = N_("Classic CRM: leads exist and can be converted")
DOCTOR_CLASSIC_PLAN = N_("Classic CRM: leads exist and can be converted (plan {plan})")
DOCTOR_SIMPLE = N_("Simple CRM: the portal has no leads to convert")
DOCTOR_SIMPLE_PLAN = N_("Simple CRM: the portal has no leads to convert (plan {plan})")
DOCTOR_SIMPLE_FIX = N_(
    "switch back in CRM > Leads or Deals > gear > CRM mode > Classic ({url}); if Classic is not "
    "offered, the plan does not include leads"
)
DOCTOR_METHODS_MISSING = N_("{count} method(s) conversion calls are missing: {methods}")
DOCTOR_METHODS_FIX = N_(
    "check the portal's plan and the scopes; a box portal may need a module update"
)
DOCTOR_METHODS_UNKNOWN = N_("the portal does not answer `method.get`; not checked")
DOCTOR_METHODS_OK = N_("all {count} methods conversion calls exist")
DOCTOR_NO_STAGES = N_("could not read the lead stages (crm.status.list)")
DOCTOR_STAGES_FIX = N_("give one lead stage success semantics in CRM > Leads > stages")
DOCTOR_STAGES = N_("{count} lead stages, {active} in work; converted leads go to {stage}")
DOCTOR_NO_PIPELINE = N_("no deal pipeline is visible to the acting user (crm.category.list)")
DOCTOR_NO_PIPELINE_FIX = N_("give the user read access to deals")
DOCTOR_PIPELINES = N_("{count} deal pipeline(s): {names}")
DOCTOR_FIELDS_UNREAD = N_("could not read custom fields of {entities}: {error}")
DOCTOR_NO_FIELDS = N_("no custom lead fields: nothing to carry over")
DOCTOR_FIELDS_OK = N_("{count} custom lead fields, each has a twin")
DOCTOR_FIELDS_GAPS = N_(
    "{count} custom lead fields; without a twin (values not carried over): {gaps}"
)
DOCTOR_FIELDS_GAPS_NAMED = N_(
    "{count} custom lead fields; without a twin (values not carried over): {gaps} (deal: {fields})"
)
DOCTOR_GAP_DEAL = N_("{count} on deal")
DOCTOR_GAP_CONTACT = N_("{count} on contact")
DOCTOR_GAP_COMPANY = N_("{count} on company")
DOCTOR_FIELDS_FIX = N_(
    "add a field with the same label, type and multiple to the entity, if its value should "
    "follow the lead (--json lists every field)"
)
DOCTOR_PLAN_UNKNOWN = N_(
    "the portal did not name its plan; b24app paces itself as B24APP_PLAN={configured}"
)
DOCTOR_PLAN_UNKNOWN_FIX = N_("if the portal is on Enterprise, set B24APP_PLAN=enterprise")
DOCTOR_PLAN_STANDARD = N_("standard plan (2 requests/s, burst 50), as B24APP_PLAN says")
DOCTOR_PLAN_ENTERPRISE = N_("enterprise plan (5 requests/s, burst 250), as B24APP_PLAN says")
DOCTOR_PLAN_FAST_STANDARD = N_("standard plan; B24APP_PLAN=fast is the sandbox's time-scaled plan")
DOCTOR_PLAN_FAST_ENTERPRISE = N_(
    "enterprise plan; B24APP_PLAN=fast is the sandbox's time-scaled plan"
)
DOCTOR_PLAN_SLOW = N_(
    "Enterprise plan, but B24APP_PLAN=standard: b24app runs 2.5x slower than allowed"
)
DOCTOR_PLAN_FAST = N_("standard plan, but B24APP_PLAN=enterprise: b24app would exceed 2 requests/s")
DOCTOR_PLAN_FIX = N_("set B24APP_PLAN={plan}")
DOCTOR_BLOCKED = N_("blocked by the operating-time limit: {methods}")
DOCTOR_BLOCKED_FIX = N_("another app or run is using these methods heavily; wait up to 10 minutes")
DOCTOR_NO_OPERATING = N_("no operating time reported for the probed methods (none used recently)")
DOCTOR_OPERATING = N_("most used: {method}, {used} s of {limit} s in 10 min")
DOCTOR_OPERATING_HIGH = N_(
    "most used: {method}, {used} s of {limit} s in 10 min: a long conversion may be paused by "
    "the limit"
)
DOCTOR_OPERATING_FIX = N_("run the conversion when other integrations are quiet")
DOCTOR_EVENTS_FAILED = N_("event.get failed: {error}")
DOCTOR_NOT_BOUND = N_("not bound to {handler}: {events}")
DOCTOR_NOT_BOUND_FIX = N_(
    "open the app page once or reinstall the app: its installer binds them again"
)
DOCTOR_BOUND = N_("{events} bound to {handler}")
DOCTOR_NO_PUBLIC_URL = N_("B24APP_PUBLIC_URL is not set: Bitrix24 has nowhere to send events")
DOCTOR_NO_PUBLIC_URL_FIX = N_(
    "set B24APP_PUBLIC_URL to the https address where Bitrix24 reaches the app"
)
DOCTOR_URL_SILENT = N_("{url} does not answer ({error})")
DOCTOR_URL_SILENT_FIX = N_(
    "start the web app (gunicorn 'handlers:create_app()') and open its address to the internet"
)
DOCTOR_URL_STATUS = N_("{url} answered HTTP {status}, not 200")
DOCTOR_URL_STATUS_FIX = N_("B24APP_PUBLIC_URL must point at this app (its /healthz answers 200)")
DOCTOR_URL_LOCAL = N_(
    "{url} answers here, but it is a loopback or private address Bitrix24's servers cannot reach"
)
DOCTOR_URL_LOCAL_FIX = N_("use a public https address (a tunnel while developing)")
DOCTOR_URL_OK = N_("{url} answers ({path} 200)")

ALL: tuple[str, ...] = tuple(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)
