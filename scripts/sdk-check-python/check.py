"""Drives Unkey's official Python client (unkey.py, pinned in requirements.txt) against a running Sigil
server: the five identity operations and every error status each can answer, and the APIs and keys routes, each raised as the client's
typed error class. The client types an error only when its status and Content-Type are the ones Unkey's
OpenAPI document declares; anything else raises the generic APIError, which fails here.

Env: SIGIL_URL, SIGIL_ROOT_KEY (all permissions), SIGIL_READ_ONLY_KEY, SIGIL_CREATE_ONLY_KEY.
"""

import os
import sys
import traceback

from unkey.py import Unkey, errors

server_url = os.environ["SIGIL_URL"].rstrip("/")
passed = failed = 0


def client(key):
    return Unkey(root_key=key, server_url=server_url, retry_config=None)


def step(name, run):
    global passed, failed
    try:
        run()
        passed += 1
        print(f"ok  {name}")
    except Exception:  # a check reports every failure and goes on
        failed += 1
        print(f"FAIL {name}\n{traceback.format_exc()}")


def expect(error_class, status, call):
    try:
        result = call()
    except error_class as error:
        assert error.status_code == status, f"HTTP {error.status_code}, expected {status}"
        assert error.data.error.status == status, error.data
        assert error.data.meta.request_id.startswith("req_"), error.data
        return
    except Exception as error:
        raise AssertionError(f"expected {error_class.__name__}, got {type(error).__name__}: {error}") from error
    raise AssertionError(f"expected {error_class.__name__}, but the call succeeded: {result}")


admin = client(os.environ["SIGIL_ROOT_KEY"])
read_only = client(os.environ["SIGIL_READ_ONLY_KEY"])
create_only = client(os.environ["SIGIL_CREATE_ONLY_KEY"])
stranger = client("not_a_root_key")
state = {}


def create():
    created = admin.identities.create_identity(external_id="py_user", meta={"plan": "pro"})
    state["id"] = created.data.identity_id
    assert state["id"].startswith("id_")


def get():
    got = admin.identities.get_identity(identity="py_user")
    assert got.data.id == state["id"] and got.data.meta == {"plan": "pro"}, got


def update():
    updated = admin.identities.update_identity(identity=state["id"], meta={"plan": "team"})
    assert updated.data.meta == {"plan": "team"}, updated


def listed():
    page = admin.identities.list_identities(limit=10)
    assert state["id"] in [identity.id for identity in page.result.data], page


step("createIdentity", create)
step("createIdentity duplicate -> 409 ConflictErrorResponse",
     lambda: expect(errors.ConflictErrorResponse, 409, lambda: admin.identities.create_identity(external_id="py_user")))
step("getIdentity", get)
step("updateIdentity", update)
step("listIdentities", listed)

operations = {
    "create_identity": ({"external_id": "py_other"}, {"external_id": ""}, read_only),
    "get_identity": ({"identity": "py_user"}, {"identity": ""}, create_only),
    "list_identities": ({"limit": 10}, {"limit": 0}, create_only),
    "update_identity": ({"identity": "py_user", "meta": {}}, {"identity": ""}, read_only),
    "delete_identity": ({"identity": "py_user"}, {"identity": ""}, read_only),
}
for operation, (valid, invalid, denied_to) in operations.items():
    call = lambda sdk, arguments, operation=operation: getattr(sdk.identities, operation)(**arguments)
    step(f"{operation} invalid -> 400 BadRequestErrorResponse",
         lambda call=call, invalid=invalid: expect(errors.BadRequestErrorResponse, 400, lambda: call(admin, invalid)))
    step(f"{operation} unknown key -> 401 UnauthorizedErrorResponse",
         lambda call=call, valid=valid: expect(errors.UnauthorizedErrorResponse, 401, lambda: call(stranger, valid)))
    step(f"{operation} without permission -> 403 ForbiddenErrorResponse",
         lambda call=call, valid=valid, denied_to=denied_to: expect(
             errors.ForbiddenErrorResponse, 403, lambda: call(denied_to, valid)))

step("deleteIdentity", lambda: admin.identities.delete_identity(identity=state["id"]))
for operation in ["get_identity", "update_identity", "delete_identity"]:
    step(f"{operation} missing -> 404 NotFoundErrorResponse",
         lambda operation=operation: expect(errors.NotFoundErrorResponse, 404,
                                            lambda: getattr(admin.identities, operation)(**operations[operation][0])))

# APIs and keys.
def create_api_and_key():
    state["api_id"] = admin.apis.create_api(name="py-check").data.api_id
    created = admin.keys.create_key(api_id=state["api_id"], prefix="py", external_id="py_key_owner",
                                    meta={"plan": "pro"}, credits={"remaining": 10})
    state["key_id"] = created.data.key_id
    assert created.data.key.startswith("py_"), created


def get_key():
    got = admin.keys.get_key(key_id=state["key_id"])
    assert got.data.identity.external_id == "py_key_owner" and got.data.credits.remaining == 10, got


step("apis.create_api and keys.create_key", create_api_and_key)
step("keys.get_key", get_key)
step("apis.get_api unknown key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.apis.get_api(api_id=state["api_id"])))
step("keys.get_key without read_key -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403, lambda: create_only.keys.get_key(key_id=state["key_id"])))
step("keys.create_key in a missing API -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.create_key(api_id="api_missing_one")))
step("keys.delete_key", lambda: admin.keys.delete_key(key_id=state["key_id"]))
step("keys.get_key deleted -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.get_key(key_id=state["key_id"])))
step("apis.delete_api", lambda: admin.apis.delete_api(api_id=state["api_id"]))

print(f"{passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
