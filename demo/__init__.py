"""`make demo`: b24app against a local sandbox portal, narrated step by step.

A sandbox portal with ~500 varied leads starts in-process; b24app shows the CRM mode and the
active leads, previews the conversion, converts under a policy with a progress bar, reports the
cost against the platform floor, checks the portal's state, and runs the guided switch to Simple
mode (the sandbox's admin flips the toggle, as an admin would in the Bitrix24 UI). Then a second
portal installs the Market app (served on a loopback port, with a `b24app worker` process), an
admin turns auto-convert on through the app page, and arriving leads are converted from their
events; `--serve` keeps that portal, app and worker running to open the page in a browser.
Run it as `python -m demo [--realistic] [--leads N]` from the repository root.
"""
