"""The simulated NetBird's request handlers: decoded body in, account call, JSON out.

Handlers raise `ApiError` for NetBird's error answers; the server's pipeline
(`tunnels.simulated`) has authenticated and validated the request and put
the decoded body and token in the request under `BODY` and `TOKEN`.
"""

from __future__ import annotations

from aiohttp import web

from tunnels.simulated.account import Account, ApiError, Json

BODY = web.RequestKey("netbird_body", object)
TOKEN = web.RequestKey("netbird_token", str)


def add_routes(app: web.Application, account: Account) -> None:
    routes = Routes(account)
    app.router.add_get("/api/users/current", routes.current_user)
    app.router.add_get("/api/peers", routes.list_peers)
    app.router.add_get("/api/peers/{id}", routes.get_peer)
    app.router.add_get("/api/groups", routes.list_groups)
    app.router.add_post("/api/groups", routes.create_group)
    app.router.add_get("/api/groups/{id}", routes.get_group)
    app.router.add_put("/api/groups/{id}", routes.update_group)
    app.router.add_delete("/api/groups/{id}", routes.delete_group)
    app.router.add_get("/api/policies", routes.list_policies)
    app.router.add_post("/api/policies", routes.create_policy)
    app.router.add_get("/api/policies/{id}", routes.get_policy)
    app.router.add_put("/api/policies/{id}", routes.update_policy)
    app.router.add_delete("/api/policies/{id}", routes.delete_policy)
    app.router.add_get("/api/setup-keys", routes.list_setup_keys)
    app.router.add_post("/api/setup-keys", routes.create_setup_key)
    app.router.add_get("/api/setup-keys/{id}", routes.get_setup_key)


def error_response(status: int, message: str) -> web.Response:
    """NetBird's error shape: ``{"message": ..., "code": status}``."""
    return _json({"message": message, "code": status}, status)


class Routes:
    """The handlers: read the decoded body, call the account, answer JSON."""

    def __init__(self, account: Account) -> None:
        self.account = account

    async def current_user(self, request: web.Request) -> web.Response:
        return _json(self.account.user_json(request[TOKEN]))

    async def list_peers(self, request: web.Request) -> web.Response:
        name, ip = request.query.get("name"), request.query.get("ip")
        peers = [
            self.account.peer_json(p, batch=True)
            for p in self.account.peers.values()
            if (name is None or name in p.name) and (ip is None or ip == p.ip)
        ]
        return _json(peers)

    async def get_peer(self, request: web.Request) -> web.Response:
        peer = self.account.peers.get(request.match_info["id"])
        if peer is None:
            raise ApiError(404, f"peer {request.match_info['id']} not found")
        return _json(self.account.peer_json(peer))

    async def list_groups(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        if name is None:
            return _json([self.account.group_json(g) for g in self.account.groups.values()])
        group = self.account.group_named(name)
        if group is None:
            raise ApiError(404, f"group {name} not found")
        return _json([self.account.group_json(group)])

    async def create_group(self, request: web.Request) -> web.Response:
        return _json(self.account.create_group(_object(request)))

    async def get_group(self, request: web.Request) -> web.Response:
        group = self.account.groups.get(request.match_info["id"])
        if group is None:
            raise ApiError(404, f"group {request.match_info['id']} not found")
        return _json(self.account.group_json(group))

    async def update_group(self, request: web.Request) -> web.Response:
        return _json(self.account.update_group(request.match_info["id"], _object(request)))

    async def delete_group(self, request: web.Request) -> web.Response:
        self.account.delete_group(request.match_info["id"])
        return _json({})

    async def list_policies(self, request: web.Request) -> web.Response:
        return _json([self.account.policy_json(p) for p in self.account.policies.values()])

    async def create_policy(self, request: web.Request) -> web.Response:
        return _json(self.account.create_policy(_object(request)))

    async def get_policy(self, request: web.Request) -> web.Response:
        return _json(self.account.policy_json(self.account.policy(request.match_info["id"])))

    async def update_policy(self, request: web.Request) -> web.Response:
        return _json(self.account.update_policy(request.match_info["id"], _object(request)))

    async def delete_policy(self, request: web.Request) -> web.Response:
        self.account.delete_policy(request.match_info["id"])
        return _json({})

    async def list_setup_keys(self, request: web.Request) -> web.Response:
        return _json([self.account.setup_key_json(k) for k in self.account.setup_keys.values()])

    async def create_setup_key(self, request: web.Request) -> web.Response:
        return _json(self.account.create_setup_key(_object(request)))

    async def get_setup_key(self, request: web.Request) -> web.Response:
        key = self.account.setup_keys.get(request.match_info["id"])
        if key is None:
            raise ApiError(404, f"setup key {request.match_info['id']} not found")
        return _json(self.account.setup_key_json(key))


def _object(request: web.Request) -> Json:
    body = request[BODY]
    if not isinstance(body, dict):
        raise ApiError(400, "couldn't parse JSON request")
    return body


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
