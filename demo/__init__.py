"""`make demo`: b24app against a local sandbox portal, narrated step by step.

A sandbox portal with ~500 varied leads starts in-process; b24app shows the CRM mode and the
active leads, previews the conversion, converts under a policy with a progress bar, reports the
cost against the platform floor, checks the portal's state, and runs the guided switch to Simple
mode (the sandbox's admin flips the toggle, as an admin would in the Bitrix24 UI).
Run it as `python -m demo [--realistic] [--leads N]` from the repository root.
"""
