"""The model side of ctxsync: read, subscribe to and publish shared context (no Flink or Beam needed).

    from ctxsync.client import ContextClient
    client = ContextClient.from_profile("churn-predictor", "local")
    context = client.get("user-00042")
"""
from ctxsync.client.acks import Outcome, OutcomeTimeout
from ctxsync.client.client import ContextClient
from ctxsync.client.endpoints import Credentials, Endpoints, from_profile, from_urls
from ctxsync.client.model import Attribute, Change, Context, View
from ctxsync.client.publish import InvalidEvent, Published, Update

__all__ = ["Attribute", "Change", "Context", "ContextClient", "Credentials", "Endpoints", "InvalidEvent",
           "Outcome", "OutcomeTimeout", "Published", "Update", "View", "from_profile", "from_urls"]
