"""The guard-post page: a live view of every door, alarm and picture, served by the collector.

The collector owns a `LiveState` (broker.web.state) and calls its `on_*` methods as messages
arrive; `broker.web.server.serve()` runs the page on a thread; `broker.web.config.WebConfig` is
collector.toml's `[web]` section. This module stays light (no web stack imported) so that
loading the collector's config does not pull in the server.
"""

from broker.web.config import Account, Role, WebConfig, WebTls
from broker.web.state import LiveState

__all__ = ["Account", "LiveState", "Role", "WebConfig", "WebTls"]
