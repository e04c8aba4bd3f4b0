"""A local Bitrix24 cloud portal: the REST subset b24app uses, OAuth, events, limits and faults.

It behaves as the Bitrix24 docs say Bitrix24 behaves, inconvenient parts included. It stands
alone: nothing here imports b24app.
"""
