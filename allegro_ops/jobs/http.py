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
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import BadInput, WorkItemError
from .base import ItemInput, JobContext, JobType

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

    def process_item(self, item: ItemInput, state: dict[str, Any], ctx: JobContext) -> None:
        url = state["url"].format(
            account_id=urllib.parse.quote(item.account_id, safe=""), run_date=ctx.run_date.isoformat()
        )
        body = json.dumps(item.payload).encode()
        request = urllib.request.Request(url, data=body, headers=state["headers"], method="POST")
        try:
            with urllib.request.urlopen(request, timeout=state["timeout"]) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raise _error_from_response(exc.code, exc.read()) from None
        except (TimeoutError, socket.timeout):
            raise WorkItemError("TIMEOUT", f"no answer from {url} within {state['timeout']}s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise WorkItemError("TIMEOUT", f"no answer from {url} within {state['timeout']}s") from None
            raise WorkItemError("CONNECTION_ERROR", f"{url}: {exc.reason}") from None
        except (ConnectionError, OSError) as exc:
            raise WorkItemError("CONNECTION_ERROR", f"{url}: {exc}") from None


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
