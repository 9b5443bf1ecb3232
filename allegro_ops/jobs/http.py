"""The ``http`` job type: each work item's payload is POSTed as JSON to an internal API.

params:
  url (required)        the endpoint; ``{account_id}`` and ``{run_date}`` are filled in
  timeout_s (10)        per-request timeout
  headers ({})          extra request headers
  items                 the work items: a list of {"account_id": ..., "payload": {...}}
  items_url             or a URL answering GET with that list as JSON, queried with ?run_date=

A 2xx answer processes the item. Any other answer is an error whose code is the ``error_code``
of a JSON body when there is one, else ``HTTP_<status>``; the reason is the body's ``reason``
or the first 500 characters of the body. A timeout is ``TIMEOUT``, a refused or broken
connection ``CONNECTION_ERROR``.

The requests wait asynchronously (allegro_ops.aio): a job run's work items share one aiohttp
session on its event loop, whose keep-alive HTTP/1.1 connections are reused from item to item; the
job's ``concurrency`` bounds the requests in flight, hence the connections open. The session is made
by the first work item (it belongs to the loop) and closed when the job run ends. On Dask each
batch runs on a loop of its own, with a session of its own. The listing (``items_url``) is one
blocking GET, made once per job run before the work items start.
"""
from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from ..aio import loop_resource
from ..errors import BadInput, WorkItemError
from .base import ItemInput, JobContext, JobType

if TYPE_CHECKING:
    import aiohttp

__all__ = ["HttpJob"]


class HttpJob(JobType):
    name = "http"

    def list_work_items(self, ctx: JobContext) -> list[tuple[str, Any]]:
        if "items" in ctx.params:
            items = ctx.params["items"]
        elif "items_url" in ctx.params:
            query = urllib.parse.urlencode({"run_date": ctx.run_date.isoformat()})
            sep = "&" if "?" in ctx.params["items_url"] else "?"
            with urllib.request.urlopen(
                ctx.params["items_url"] + sep + query, timeout=float(ctx.params.get("timeout_s", 10))
            ) as resp:
                items = json.loads(resp.read())
        else:
            raise BadInput(f"job {ctx.job}: the http job type needs params.items or params.items_url")
        return [(str(i["account_id"]), i.get("payload", {})) for i in items]

    def prepare(self, ctx: JobContext) -> dict[str, Any]:
        if "url" not in ctx.params:
            raise BadInput(f"job {ctx.job}: the http job type needs params.url")
        return {
            "url": str(ctx.params["url"]),
            "timeout": float(ctx.params.get("timeout_s", 10)),
            "headers": {"Content-Type": "application/json", **dict(ctx.params.get("headers", {}))},
        }

    async def process_item(self, item: ItemInput, state: dict[str, Any], ctx: JobContext) -> None:
        url = state["url"].format(
            account_id=urllib.parse.quote(item.account_id, safe=""), run_date=ctx.run_date.isoformat()
        )
        import aiohttp  # here, not at the top: ~0.2 s that every CLI command would pay

        body = json.dumps(item.payload).encode()
        session = loop_resource(__name__, _new_session)
        try:
            async with session.post(url, data=body, headers=state["headers"],
                                    timeout=aiohttp.ClientTimeout(total=state["timeout"])) as resp:
                answer = await resp.read()
        except TimeoutError:  # aiohttp's timeouts (ServerTimeoutError too) are TimeoutErrors
            raise WorkItemError("TIMEOUT", f"no answer from {url} within {state['timeout']}s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise WorkItemError("CONNECTION_ERROR", f"{url}: {str(exc) or type(exc).__name__}") from None
        if not 200 <= resp.status < 300:
            raise _error_from_response(resp.status, answer)


def _new_session() -> "aiohttp.ClientSession":
    """A session for the running loop. No limit of its own on connections: the job's concurrency
    (the gate of allegro_ops.aio) already bounds the requests in flight, and an idle connection is
    reused before a new one is opened. No cookies, as with urllib: a work item's call never carries
    what the API answered to another's."""
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar())


def _error_from_response(status: int, body: bytes) -> WorkItemError:
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("error_code"):
        return WorkItemError(str(data["error_code"])[:100], str(data.get("reason", ""))[:2000])
    return WorkItemError(f"HTTP_{status}", text[:500] or f"HTTP status {status}")


from . import registry  # noqa: E402

registry.register(HttpJob)
