"""b24app: exactly-once Bitrix24 lead conversion and the guided Classic -> Simple mode switch."""

__version__ = "0.1.0"
