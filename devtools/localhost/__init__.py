"""A local stand-in for Azure Functions Core Tools: runs `function_app.app` with HTTP, queue and timer triggers.

    from devtools.localhost import LocalHost
    with LocalHost(port=0) as host:
        requests.get(host.url + "/api/...")

or `python -m devtools.localhost --port 7071`.
"""

from .host import LocalHost
from .ncrontab import next_occurrence, parse_schedule

__all__ = ["LocalHost", "next_occurrence", "parse_schedule"]
