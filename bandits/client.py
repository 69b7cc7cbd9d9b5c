"""A small Python client for the HTTP api (``requests``); no imports of the service's own code.

>>> client = Client("http://127.0.0.1:8080", "bk_...", loop="home-hero")  # doctest: +SKIP
>>> offers = [{"id": "offer-1", "features": {"offer": {"vertical": "loans"}}}]
>>> decision = client.choose({"user": {"country": "AR"}}, offers)  # doctest: +SKIP
>>> client.reward(decision["event_id"], {"click": 1, "revenue": 12.5})  # doctest: +SKIP
{'event_id': '...', 'accepted': 2, 'duplicate': False}

Keys are per loop but routes name the loop, so a client that calls loop routes is given ``loop``.
One :class:`Client` may be shared by threads: each thread gets its own ``requests.Session``
(sessions are not documented as thread-safe), all keeping connections alive.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import requests


class ServiceError(Exception):
    """The service answered with a non-2xx status.

    ``code``, ``message`` and ``target`` are the service's ``{"error": {...}}``; a reply that is not
    in that shape (a proxy's HTML page, say) gets the code ``HttpError`` and the start of its body.
    """

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    @classmethod
    def from_reply(cls, reply: requests.Response) -> ServiceError:
        try:
            error = reply.json()["error"]
            code, message = str(error["code"]), str(error["message"])
            return cls(reply.status_code, code, message, error.get("target"))
        except (ValueError, KeyError, TypeError):
            text = reply.text.strip().replace("\n", " ")
            return cls(reply.status_code, "HttpError", text[:200] or reply.reason or "no body")


class Client:
    """Calls the api at ``url`` with ``key`` (a loop key, or an admin key).

    Parameters
    ----------
    url : the service's base URL, e.g. ``http://127.0.0.1:8080``.
    key : an API key, sent as ``Authorization: Bearer <key>``.
    loop : the loop that :meth:`choose`, :meth:`reward`, :meth:`event` and :meth:`loop_config` use.
    timeout : seconds to wait for a reply.
    """

    def __init__(self, url: str, key: str, loop: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.loop = loop
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {key}"}
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    # -- decisions ---------------------------------------------------------------------------
    def choose(self, context: dict[str, Any], actions: list[dict[str, Any]],
               event_id: str | None = None, slots: list[dict[str, Any]] | None = None,
               **kw: Any) -> dict[str, Any]:
        """A decision: ``POST /v1/loops/{loop}/choose``. ``kw``: ``excluded``, ``baseline``, ``defer``.

        Returns the reply (``event_id``, ``action``, ``probability``, ``model_version``, ``ranking``).
        A ``ccb`` or ``slates`` loop fills ``slots`` (``[{"id", "features", "baseline",
        "excluded"}]``, in order) and replies ``event_id``, ``model_version`` and ``slots``.
        """
        body: dict[str, Any] = {"context": context, "actions": actions, **kw}
        if event_id is not None:
            body["event_id"] = event_id
        if slots is not None:
            body["slots"] = slots
        return self._request("POST", f"{self._loop_path()}/choose", body)

    def reward(self, event_id: str, rewards: dict[str, float], reward_id: str | None = None,
               slot: str | None = None) -> dict[str, Any]:
        """Outcomes for a decision: ``POST /v1/loops/{loop}/events/{event_id}/rewards``.

        ``slot``: the slot of a ``ccb`` decision they are for (required there, refused elsewhere).
        A repeated ``reward_id`` is accepted once, so a call retried with the same id is safe.
        """
        body: dict[str, Any] = {"rewards": rewards}
        if reward_id is not None:
            body["reward_id"] = reward_id
        if slot is not None:
            body["slot"] = slot
        return self._request("POST", f"{self._event_path(event_id)}/rewards", body)

    def event(self, event_id: str) -> dict[str, Any]:
        """The logged decision and its outcomes."""
        return self._request("GET", self._event_path(event_id))

    # -- configuration -----------------------------------------------------------------------
    def loop_config(self) -> dict[str, Any]:
        """``GET /v1/loops/{loop}``: name, kind, config (defaults filled in), versions."""
        return self._request("GET", self._loop_path())

    def create_loop(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /v1/loops`` (admin key): the loop plus its first key (``"key"``, shown once)."""
        return self._request("POST", "/v1/loops", {"name": name, "config": config or {}})

    # -- plumbing ----------------------------------------------------------------------------
    def close(self) -> None:
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _loop_path(self) -> str:
        if self.loop is None:
            raise ValueError("this client has no loop; create it with Client(url, key, loop=NAME)")
        return f"/v1/loops/{quote(self.loop, safe='')}"

    def _event_path(self, event_id: str) -> str:
        return f"{self._loop_path()}/events/{quote(event_id, safe='')}"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self._session().request(method, self.url + path, json=body, timeout=self.timeout)
        if not 200 <= reply.status_code < 300:
            raise ServiceError.from_reply(reply)
        return reply.json()
