"""CRM mode: read it, name it, and guide an admin through the switch REST cannot make.

Bitrix24 REST can only *read* the mode (`crm.settings.mode.get`: 1 = Classic, 2 = Simple,
https://apidocs.bitrix24.com/api-reference/crm/crm-settings-mode-get.html); there is no setter
in the docs, the official SDKs or the server's REST method table. So the switch itself is always
a person flipping the toggle in the Bitrix24 UI; b24app converts the active leads first (what
Bitrix24 would do on the way to Simple mode) and then tells the admin where the toggle is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from b24app.errors import B24AppError
from b24app.rest.command import Command
from b24app.rest.portal import Portal
from b24app.vocabulary import MODE_CLASSIC, MODE_METHOD, MODE_SIMPLE

MODE_KEY = "mode"  # the key of the mode check riding in a batch (reader, overview, conversion)
# "CRM modes" (EN) and "Change CRM mode" (PL, the one describing the conversion options).
MODE_HELP_URL = "https://helpdesk.bitrix24.com/open/17627868/"
# The English helpdesk's article on what the switch does to leads in work (the Polish one,
# helpdesk.bitrix24.pl/open/17645664, says the same for Polish readers).
SWITCH_HELP_URL = "https://helpdesk.bitrix24.com/open/1478503/"


class ModeError(B24AppError):
    """A CRM mode value b24app cannot understand (a portal answer or a user's word)."""


class Mode(IntEnum):
    """Bitrix24's CRM mode as `crm.settings.mode.get` reports it.

    https://apidocs.bitrix24.com/api-reference/crm/auxiliary/enum/crm-enum-settings-mode.html
    """

    CLASSIC = MODE_CLASSIC
    SIMPLE = MODE_SIMPLE

    @property
    def label(self) -> str:
        """The lower-case name used by the CLI and the app page: "classic" or "simple"."""
        return self.name.lower()

    @property
    def title(self) -> str:
        """The name Bitrix24 shows in its UI: "Classic CRM" or "Simple CRM"."""
        return f"{self.name.capitalize()} CRM"

    @classmethod
    def from_label(cls, text: str) -> Mode:
        """ "classic"/"simple" (any case, or "1"/"2") -> Mode; ModeError otherwise."""
        word = str(text).strip().lower()
        for mode in cls:
            if word in (mode.label, str(mode.value)):
                return mode
        raise ModeError(f"unknown CRM mode {text!r}: expected 'classic' or 'simple'")


def mode_command(key: str = MODE_KEY) -> Command:
    """The command that reads the CRM mode (no parameters, any user may call it)."""
    return Command(key, MODE_METHOD, {})


def parse_mode(result: object) -> Mode:
    """Decode the `result` of `crm.settings.mode.get` (an int, or a numeric string) into a Mode."""
    value = 0  # no mode: Mode(0) fails below
    if isinstance(result, int) and not isinstance(result, bool):
        value = result
    elif isinstance(result, str) and result.strip().isdigit():
        value = int(result.strip())
    try:
        return Mode(value)
    except ValueError:
        raise ModeError(
            f"crm.settings.mode.get returned {result!r}; expected 1 (Classic) or 2 (Simple)"
        ) from None


def read_mode(portal: Portal) -> Mode:
    """The portal's CRM mode (`crm.settings.mode.get`).

    https://apidocs.bitrix24.com/api-reference/crm/crm-settings-mode-get.html
    """
    return parse_mode(portal.call(MODE_METHOD).result)


@dataclass(frozen=True)
class SwitchGuide:
    """What the admin must do to go from `current` to `target`, as numbered steps."""

    current: Mode
    target: Mode
    convert_first: bool
    steps: tuple[str, ...]

    @property
    def needed(self) -> bool:
        """False when the portal is already in the target mode."""
        return self.current != self.target

    def text(self) -> str:
        """The guide as plain text: a headline, then one numbered line per step."""
        if not self.needed:
            return f"The portal already uses {self.target.title}; nothing to switch."
        head = (
            f"Switch from {self.current.title} to {self.target.title}. "
            "Bitrix24 REST cannot change the CRM mode (it only offers crm.settings.mode.get), "
            "so b24app cannot flip it for you: an administrator flips it in the Bitrix24 UI."
        )
        lines = [head, *(f"{n}. {step}" for n, step in enumerate(self.steps, 1))]
        return "\n".join(lines)


def guide_switch(current: Mode, target: Mode, *, active_leads: int | None = None) -> SwitchGuide:
    """The steps that take a portal from `current` to `target` mode.

    To Simple: b24app converts the active leads first (Bitrix24 would convert "all the leads that
    are in work" itself, https://helpdesk.bitrix24.com/open/1478503/), then the admin flips the
    toggle, which is instant when no open leads remain. To Classic: nothing is converted.
    """
    toggle = (
        "Open CRM > Leads (or CRM > Deals), click the settings (gear) icon, choose "
        f'"CRM mode", select "{target.title}" and save. This needs the CRM '
        'settings permission; other users see "Please contact your administrator to '
        'change CRM mode".'
    )
    check = (
        f"Check the mode again in b24app to confirm the portal reports {target.title}. "
        f"Help: {MODE_HELP_URL}"
    )
    if current == target:
        return SwitchGuide(current, target, convert_first=False, steps=())
    if target is Mode.SIMPLE:
        count = "the active leads" if active_leads is None else f"the {active_leads} active lead(s)"
        convert = (
            f"Let b24app convert {count} into deals, contacts and companies first "
            "with the client, pipeline and activity options you "
            f"chose, so none is left open. See {SWITCH_HELP_URL}"
        )
        return SwitchGuide(current, target, convert_first=True, steps=(convert, toggle, check))
    keep = (
        "Switching to Classic CRM converts nothing: existing deals, contacts and companies "
        "stay as they are, and new leads stay leads from now on."
    )
    return SwitchGuide(current, target, convert_first=False, steps=(keep, toggle, check))
