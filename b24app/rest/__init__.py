"""Transport to Bitrix24: wire format, auth, batch, keyset lists, throttle, retries.

Everything the rest of b24app needs is importable from here.
"""

from b24app.rest.adaptive import Slot
from b24app.rest.auth import OAuthAuth, WebhookAuth
from b24app.rest.client import PortalClient
from b24app.rest.clock import SYSTEM_CLOCK, Clock, SystemClock
from b24app.rest.command import Command
from b24app.rest.listing import ListShape
from b24app.rest.oauth import OAuthServer, TokenGrant
from b24app.rest.portal import Portal
from b24app.rest.response import BatchResult, Response, Time
from b24app.rest.retry import RetryPolicy, is_read
from b24app.rest.throttle import LocalBucket, OperatingBudget, RateBucket, RedisBucket, make_bucket
from b24app.rest.tokens import MemoryTokens, Tokens, TokenSource

__all__ = [
    "SYSTEM_CLOCK",
    "BatchResult",
    "Clock",
    "Command",
    "ListShape",
    "LocalBucket",
    "MemoryTokens",
    "OAuthAuth",
    "OAuthServer",
    "OperatingBudget",
    "Portal",
    "PortalClient",
    "RateBucket",
    "RedisBucket",
    "Response",
    "RetryPolicy",
    "Slot",
    "SystemClock",
    "Time",
    "TokenGrant",
    "TokenSource",
    "Tokens",
    "WebhookAuth",
    "is_read",
    "make_bucket",
]
