"""Drives Unkey's official Python client (unkey.py, pinned in requirements.txt) against a running Sigil
server: the five identity operations and every apis.* and keys.* route, each success and every error status
each can answer, raised as the client's typed error class. The client types an error only when its status and
Content-Type are the ones Unkey's OpenAPI document declares; anything else raises the generic APIError, which
fails here.

Env: SIGIL_URL, SIGIL_ROOT_KEY (all permissions), SIGIL_READ_ONLY_KEY and SIGIL_CREATE_ONLY_KEY (identity
permissions only), SIGIL_API_READER_KEY (only api.*.read_api), SIGIL_KEY_READER_KEY (only api.*.read_key),
SIGIL_VERIFIER_KEY (only api.*.verify_key).
"""

import json
import os
import sys
import time
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


def expect(error_class, status, call, error_type=None, detail_contains=None):
    """`call` must raise `error_class` with `status`; with `error_type` (e.g. "unkey/data/key_not_found"),
    an error.type URL ending in it; with `detail_contains`, an error.detail holding that text."""
    try:
        result = call()
    except error_class as error:
        assert error.status_code == status, f"HTTP {error.status_code}, expected {status}"
        assert error.data.error.status == status, error.data
        assert error.data.meta.request_id.startswith("req_"), error.data
        details = error.data.error
        if error_type is not None:
            assert details.type.endswith("/" + error_type), f"error.type, expected .../{error_type}: {details}"
        if detail_contains is not None:
            assert detail_contains in details.detail, f"error.detail, expected {detail_contains!r}: {details}"
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

# APIs and keys: one block per route, each step named after the client call it makes (apis.create_api,
# keys.create_key, ...), so grepping for an operation finds its success and its error checks. Every error
# step asserts the client's typed class, the HTTP status and the trailing path of error.type.
api_reader = client(os.environ["SIGIL_API_READER_KEY"])  # only api.*.read_api
key_reader = client(os.environ["SIGIL_KEY_READER_KEY"])  # only api.*.read_key

INVALID_INPUT = "unkey/application/invalid_input"
UNKNOWN_ROOT_KEY = "unkey/authentication/key_not_found"
NO_PERMISSION = "unkey/authorization/insufficient_permissions"
API_NOT_FOUND = "unkey/data/api_not_found"
KEY_NOT_FOUND = "unkey/data/key_not_found"
MISSING_API = "api_missing_one"
MISSING_KEY = "key_missing_one"


def ratelimits_of(key):
    return sorted((rl.name, rl.limit, rl.duration, rl.auto_apply) for rl in key.ratelimits or [])


def credits_of(key):
    """A key's credits as plain values: None when unlimited, else (remaining, refill or None)."""
    if key.credits is None:
        return None
    refill = key.credits.refill
    return (key.credits.remaining, refill and (refill.interval, refill.amount, refill.refill_day))


# --- apis.create_api

def create_api():
    created = admin.apis.create_api(name="py-check")
    state["api_id"] = created.data.api_id
    assert state["api_id"].startswith("api_"), created
    assert created.meta.request_id.startswith("req_"), created


step("apis.create_api", create_api)
step("apis.create_api name of 2 characters -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.apis.create_api(name="ab"), INVALID_INPUT))
step("apis.create_api unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.apis.create_api(name="denied"),
                    UNKNOWN_ROOT_KEY))
step("apis.create_api without create_api -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403, lambda: api_reader.apis.create_api(name="denied"),
                    NO_PERMISSION))

# --- apis.get_api

def get_api():
    got = admin.apis.get_api(api_id=state["api_id"])
    assert (got.data.id, got.data.name) == (state["api_id"], "py-check"), got
    assert api_reader.apis.get_api(api_id=state["api_id"]).data.id == state["api_id"]


step("apis.get_api (also with only read_api)", get_api)
step("apis.get_api empty api_id -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.apis.get_api(api_id=""), INVALID_INPUT))
step("apis.get_api unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.apis.get_api(api_id=state["api_id"]),
                    UNKNOWN_ROOT_KEY))
step("apis.get_api without read_api -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403, lambda: key_reader.apis.get_api(api_id=state["api_id"]),
                    NO_PERMISSION))
# The permission is checked before the lookup: a key without it learns nothing of which APIs exist.
step("apis.get_api missing API without read_api -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403, lambda: key_reader.apis.get_api(api_id=MISSING_API),
                    NO_PERMISSION))
step("apis.get_api missing API -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.apis.get_api(api_id=MISSING_API), API_NOT_FOUND))

# --- keys.create_key

def create_key():
    created = admin.keys.create_key(
        api_id=state["api_id"], prefix="py", name="py-check", external_id="py_key_owner", meta={"plan": "pro"},
        credits={"remaining": 10}, ratelimits=[{"name": "requests", "limit": 10, "duration": 1000, "auto_apply": True}])
    state["key_id"], state["key"] = created.data.key_id, created.data.key
    assert state["key_id"].startswith("key_"), created
    assert created.data.key.startswith("py_") and len(created.data.key) > len("py_") + 16, created


def create_key_bare():
    created = admin.keys.create_key(api_id=state["api_id"])
    assert created.data.key_id.startswith("key_") and created.data.key_id != state["key_id"], created
    assert len(created.data.key) >= 16 and "_" not in created.data.key, created


def create_key_with_roles():
    expect(errors.BadRequestErrorResponse, 400,
           lambda: admin.keys.create_key(api_id=state["api_id"], roles=["admin"]), INVALID_INPUT,
           detail_contains="not supported")


step("keys.create_key with prefix, name, a new external_id, meta, credits and ratelimits", create_key)
step("keys.create_key with only api_id (no prefix)", create_key_bare)
step("keys.create_key byte_length 5 -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400,
                    lambda: admin.keys.create_key(api_id=state["api_id"], byte_length=5), INVALID_INPUT))
step("keys.create_key with roles -> 400 BadRequestErrorResponse (not supported)", create_key_with_roles)
step("keys.create_key monthly refill without refill_day -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.create_key(
         api_id=state["api_id"], credits={"remaining": 5, "refill": {"interval": "monthly", "amount": 5}}),
         INVALID_INPUT, detail_contains="`refillDay` must be provided when the refill interval is `monthly`."))
step("keys.create_key unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.keys.create_key(api_id=state["api_id"]),
                    UNKNOWN_ROOT_KEY))
# Without create_key the answer is the 404 of a missing API, as Unkey masks it.
step("keys.create_key without create_key -> 404 NotFoundErrorResponse (masked)",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: api_reader.keys.create_key(api_id=state["api_id"]),
                    API_NOT_FOUND))
step("keys.create_key in a missing API -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.create_key(api_id=MISSING_API),
                    API_NOT_FOUND))

# --- keys.get_key

def get_key():
    key = admin.keys.get_key(key_id=state["key_id"]).data
    assert key.key_id == state["key_id"], key
    assert key.start.startswith("py_") and state["key"].startswith(key.start), key
    assert (key.name, key.enabled, key.meta) == ("py-check", True, {"plan": "pro"}), key
    assert key.created_at > 0 and key.plaintext is None, key
    assert credits_of(key) == (10, None), key
    assert key.identity.external_id == "py_key_owner" and key.identity.id.startswith("id_"), key
    assert ratelimits_of(key) == [("requests", 10, 1000, True)], key
    assert all(rl.id for rl in key.ratelimits), key


step("keys.get_key", get_key)
step("keys.get_key empty key_id -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.get_key(key_id=""), INVALID_INPUT))
step("keys.get_key unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.keys.get_key(key_id=state["key_id"]),
                    UNKNOWN_ROOT_KEY))
step("keys.get_key without read_key -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403, lambda: api_reader.keys.get_key(key_id=state["key_id"]),
                    NO_PERMISSION))
step("keys.get_key missing key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.get_key(key_id=MISSING_KEY), KEY_NOT_FOUND))
# The key is looked up before the permission is checked.
step("keys.get_key missing key without read_key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: api_reader.keys.get_key(key_id=MISSING_KEY),
                    KEY_NOT_FOUND))

# --- keys.whoami

def whoami():
    key = admin.keys.whoami(key=state["key"]).data
    assert (key.key_id, key.name, key.meta) == (state["key_id"], "py-check", {"plan": "pro"}), key
    assert key.identity.external_id == "py_key_owner" and credits_of(key) == (10, None), key
    assert key.plaintext is None, key
    assert key_reader.keys.whoami(key=state["key"]).data.key_id == state["key_id"]


step("keys.whoami by the plaintext key (also with only read_key)", whoami)
step("keys.whoami empty key -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.whoami(key=""), INVALID_INPUT))
step("keys.whoami unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.keys.whoami(key=state["key"]),
                    UNKNOWN_ROOT_KEY))
# Without read_key the answer is the 404 of an unknown key, as Unkey masks it.
step("keys.whoami without read_key -> 404 NotFoundErrorResponse (masked)",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: api_reader.keys.whoami(key=state["key"]),
                    KEY_NOT_FOUND))
step("keys.whoami unknown value -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.whoami(key="py_not_a_key"), KEY_NOT_FOUND))

# --- apis.list_keys (in an API of its own, so the key count is known)

def list_pages(**request):
    """Every page of a listing through the client's next(), each page's body checked."""
    pages, page = [], admin.apis.list_keys(**request)
    while page is not None:
        pages.append(page.result)
        assert len(pages) <= 10, "more than 10 pages: pagination does not terminate"
        page = page.next()
    for index, body in enumerate(pages):
        last = index == len(pages) - 1
        assert body.pagination.has_more == (not last), f"page {index + 1}: {body.pagination}"
        assert last or body.pagination.cursor, f"page {index + 1}: no cursor while has_more"
    return pages


def list_keys_setup():
    state["list_api_id"] = admin.apis.create_api(name="py-check-list").data.api_id
    state["listed"], state["owned"] = [], []
    for external_id in ["py_list_owner", "py_list_owner", None]:
        key_id = admin.keys.create_key(api_id=state["list_api_id"], prefix="lst", external_id=external_id).data.key_id
        state["listed"].append(key_id)
        if external_id:
            state["owned"].append(key_id)


def list_keys_pages():
    pages = list_pages(api_id=state["list_api_id"], limit=1)
    assert [len(body.data) for body in pages] == [1, 1, 1], pages
    keys = [key for body in pages for key in body.data]
    ids = [key.key_id for key in keys]
    assert sorted(ids) == sorted(state["listed"]) and ids == sorted(ids), ids
    for key in keys:
        owner = "py_list_owner" if key.key_id in state["owned"] else None
        assert key.start.startswith("lst_") and (key.identity and key.identity.external_id) == owner, key


def list_keys_by_external_id():
    pages = list_pages(api_id=state["list_api_id"], limit=1, external_id="py_list_owner")
    keys = [key for body in pages for key in body.data]
    assert sorted(key.key_id for key in keys) == sorted(state["owned"]), keys
    assert all(key.identity.external_id == "py_list_owner" for key in keys), keys


def list_keys_of_nobody():
    pages = list_pages(api_id=state["list_api_id"], external_id="py_nobody")
    assert len(pages) == 1 and pages[0].data == [], pages


step("apis.list_keys setup: an API with 3 keys, 2 of one external_id", list_keys_setup)
step("apis.list_keys limit 1, iterate pages", list_keys_pages)
step("apis.list_keys external_id filter, limit 1", list_keys_by_external_id)
step("apis.list_keys external_id of nobody -> empty page", list_keys_of_nobody)
step("apis.list_keys limit 0 -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400,
                    lambda: admin.apis.list_keys(api_id=state["list_api_id"], limit=0), INVALID_INPUT))
step("apis.list_keys unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401,
                    lambda: stranger.apis.list_keys(api_id=state["list_api_id"]), UNKNOWN_ROOT_KEY))
# list_keys needs read_key and read_api; without either the answer is the 404 of a missing API.
step("apis.list_keys without read_key -> 404 NotFoundErrorResponse (masked)",
     lambda: expect(errors.NotFoundErrorResponse, 404,
                    lambda: api_reader.apis.list_keys(api_id=state["list_api_id"]), API_NOT_FOUND))
step("apis.list_keys without read_api -> 404 NotFoundErrorResponse (masked)",
     lambda: expect(errors.NotFoundErrorResponse, 404,
                    lambda: key_reader.apis.list_keys(api_id=state["list_api_id"]), API_NOT_FOUND))
step("apis.list_keys missing API -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.apis.list_keys(api_id=MISSING_API),
                    API_NOT_FOUND))

# --- keys.delete_key

def delete_key_permanently():
    created = admin.keys.create_key(api_id=state["api_id"], prefix="py").data
    state["permanent_id"], state["permanent_key"] = created.key_id, created.key
    assert admin.keys.delete_key(key_id=created.key_id, permanent=True).data is not None


step("keys.delete_key empty key_id -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.delete_key(key_id=""), INVALID_INPUT))
step("keys.delete_key unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.keys.delete_key(key_id=state["key_id"]),
                    UNKNOWN_ROOT_KEY))
step("keys.delete_key without delete_key -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403, lambda: api_reader.keys.delete_key(key_id=state["key_id"]),
                    NO_PERMISSION))
step("keys.delete_key missing key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.delete_key(key_id=MISSING_KEY),
                    KEY_NOT_FOUND))
step("keys.delete_key (soft)", lambda: admin.keys.delete_key(key_id=state["key_id"]))
step("keys.get_key soft-deleted key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.get_key(key_id=state["key_id"]),
                    KEY_NOT_FOUND))
step("keys.whoami soft-deleted key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.whoami(key=state["key"]), KEY_NOT_FOUND))
step("keys.delete_key again -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.delete_key(key_id=state["key_id"]),
                    KEY_NOT_FOUND))
step("keys.delete_key keeps the key's identity",
     lambda: admin.identities.get_identity(identity="py_key_owner"))
step("keys.delete_key permanent", delete_key_permanently)
step("keys.get_key permanently deleted key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.get_key(key_id=state["permanent_id"]),
                    KEY_NOT_FOUND))
step("keys.whoami permanently deleted key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.whoami(key=state["permanent_key"]),
                    KEY_NOT_FOUND))
step("keys.delete_key permanent again -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404,
                    lambda: admin.keys.delete_key(key_id=state["permanent_id"], permanent=True), KEY_NOT_FOUND))

# --- apis.delete_api

def delete_apis():
    for api_id in [state["api_id"], state["list_api_id"]]:
        assert admin.apis.delete_api(api_id=api_id).meta.request_id.startswith("req_")


step("apis.delete_api empty api_id -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.apis.delete_api(api_id=""), INVALID_INPUT))
step("apis.delete_api unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.apis.delete_api(api_id=state["api_id"]),
                    UNKNOWN_ROOT_KEY))
step("apis.delete_api without delete_api -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403, lambda: api_reader.apis.delete_api(api_id=state["api_id"]),
                    NO_PERMISSION))
step("apis.delete_api missing API -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.apis.delete_api(api_id=MISSING_API),
                    API_NOT_FOUND))
step("apis.delete_api", delete_apis)
step("apis.get_api deleted API -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.apis.get_api(api_id=state["api_id"]),
                    API_NOT_FOUND))
step("apis.delete_api again -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.apis.delete_api(api_id=state["api_id"]),
                    API_NOT_FOUND))
step("keys.get_key of a deleted API's key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.get_key(key_id=state["listed"][0]),
                    KEY_NOT_FOUND))

# === keys.update_key and keys.update_credits ===============================================================
# Written from the spec digest (sections 4.2 and 4.5) while Sigil's two routes were being built, so kept apart:
# a Sigil without them fails every step here with 404 sigil/request/route_not_found (the 404 steps too, since
# they assert error.type). Everything they need is set up inside this block, in an API of its own.

def update_key_setup():
    state["update_api_id"] = admin.apis.create_api(name="py-check-update").data.api_id
    state["update_key_id"] = admin.keys.create_key(
        api_id=state["update_api_id"], prefix="upd", name="before", external_id="py_update_a", meta={"plan": "free"},
        credits={"remaining": 5},
        ratelimits=[{"name": "requests", "limit": 10, "duration": 1000, "auto_apply": True}]).data.key_id


def current_key(key_id):
    return admin.keys.get_key(key_id=key_id).data


def update_key_everything():
    before = current_key(state["update_key_id"])
    admin.keys.update_key(
        key_id=state["update_key_id"], name="after", meta={"plan": "pro", "seats": 3}, external_id="py_update_b",
        credits={"remaining": 50, "refill": {"interval": "daily", "amount": 50}},
        ratelimits=[{"name": "requests", "limit": 20, "duration": 1000, "auto_apply": True},
                    {"name": "tokens", "limit": 500, "duration": 60000, "auto_apply": False}],
        enabled=False)
    key = current_key(state["update_key_id"])
    assert (key.name, key.meta, key.enabled) == ("after", {"plan": "pro", "seats": 3}, False), key
    assert key.identity.external_id == "py_update_b", key
    assert credits_of(key) == (50, ("daily", 50, None)), key
    assert ratelimits_of(key) == [("requests", 20, 1000, True), ("tokens", 500, 60000, False)], key
    # A ratelimit kept by name is updated in place: its id stays.
    id_of = lambda k: next(rl.id for rl in k.ratelimits if rl.name == "requests")
    assert id_of(key) == id_of(before), (before, key)


def update_key_absent_unchanged():
    admin.keys.update_key(key_id=state["update_key_id"], enabled=True)
    key = current_key(state["update_key_id"])
    assert (key.name, key.meta, key.enabled) == ("after", {"plan": "pro", "seats": 3}, True), key
    assert key.identity.external_id == "py_update_b" and credits_of(key) == (50, ("daily", 50, None)), key
    assert len(key.ratelimits) == 2, key


def update_key_refill_none():
    admin.keys.update_key(key_id=state["update_key_id"], credits={"refill": None})
    assert credits_of(current_key(state["update_key_id"])) == (50, None)


def update_key_clear():
    admin.keys.update_key(key_id=state["update_key_id"], name=None, meta=None, external_id=None, credits=None,
                          ratelimits=[])
    key = current_key(state["update_key_id"])
    assert (key.name, key.meta, key.identity, key.credits) == (None, None, None, None), key
    assert not key.ratelimits, key
    # Unlinking keeps the identity.
    assert admin.identities.get_identity(identity="py_update_b").data.external_id == "py_update_b"


step("keys.update_key setup: an API and a key with every field", update_key_setup)

# --- keys.update_key

step("keys.update_key name, meta, external_id, credits, ratelimits, enabled", update_key_everything)
step("keys.update_key leaves absent fields unchanged", update_key_absent_unchanged)
step("keys.update_key credits.refill None clears only the refill", update_key_refill_none)
step("keys.update_key None clears name, meta, external_id, credits; [] clears ratelimits", update_key_clear)
step("keys.update_key daily refill with refill_day -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.update_key(
         key_id=state["update_key_id"],
         credits={"remaining": 5, "refill": {"interval": "daily", "amount": 5, "refill_day": 3}}),
         INVALID_INPUT, detail_contains="`refillDay` must not be provided when the refill interval is `daily`."))
step("keys.update_key monthly refill without refill_day -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.update_key(
         key_id=state["update_key_id"], credits={"remaining": 5, "refill": {"interval": "monthly", "amount": 5}}),
         INVALID_INPUT))
# unkey.py types ratelimits as nullable and sends null for None; Unkey's schema refuses null there (digest 4.2).
step("keys.update_key ratelimits None -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400,
                    lambda: admin.keys.update_key(key_id=state["update_key_id"], ratelimits=None), INVALID_INPUT))
step("keys.update_key empty key_id -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.update_key(key_id="", name="x"),
                    INVALID_INPUT))
step("keys.update_key unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401,
                    lambda: stranger.keys.update_key(key_id=state["update_key_id"], name="x"), UNKNOWN_ROOT_KEY))
step("keys.update_key without update_key -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403,
                    lambda: key_reader.keys.update_key(key_id=state["update_key_id"], name="x"), NO_PERMISSION))
step("keys.update_key missing key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.update_key(key_id=MISSING_KEY, name="x"),
                    KEY_NOT_FOUND))

# --- keys.update_credits

def update_credits_set():
    created = admin.keys.create_key(api_id=state["update_api_id"], credits={"remaining": 10})
    state["credits_key_id"] = created.data.key_id
    updated = admin.keys.update_credits(key_id=state["credits_key_id"], operation="set", value=20)
    assert updated.data.remaining == 20 and updated.data.refill is None, updated
    assert credits_of(current_key(state["credits_key_id"])) == (20, None)


def update_credits_step(operation, value, remaining):
    updated = admin.keys.update_credits(key_id=state["credits_key_id"], operation=operation, value=value)
    assert updated.data.remaining == remaining, updated


def update_credits_unlimited():
    update_credits_step("set", None, None)
    assert current_key(state["credits_key_id"]).credits is None


def update_credits_refill():
    key_id = admin.keys.create_key(api_id=state["update_api_id"],
                                   credits={"remaining": 5, "refill": {"interval": "daily", "amount": 5}}).data.key_id
    incremented = admin.keys.update_credits(key_id=key_id, operation="increment", value=1).data
    assert incremented.remaining == 6 and (incremented.refill.interval, incremented.refill.amount) == ("daily", 5), \
        incremented
    unlimited = admin.keys.update_credits(key_id=key_id, operation="set").data
    assert unlimited.remaining is None and unlimited.refill is None, unlimited
    assert current_key(key_id).credits is None


step("keys.update_credits set", update_credits_set)
step("keys.update_credits increment", lambda: update_credits_step("increment", 5, 25))
step("keys.update_credits decrement floors at 0", lambda: update_credits_step("decrement", 100, 0))
step("keys.update_credits set None makes the key unlimited", update_credits_unlimited)
step("keys.update_credits keeps the refill; set without value clears it", update_credits_refill)
step("keys.update_credits increment an unlimited key -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.update_credits(
         key_id=state["credits_key_id"], operation="increment", value=1), INVALID_INPUT,
         detail_contains="You cannot increment or decrement a key with unlimited credits."))
step("keys.update_credits increment without value -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.update_credits(
         key_id=state["credits_key_id"], operation="increment"), INVALID_INPUT,
         detail_contains="When specifying an increment or decrement operation, a value must be provided."))
# `operation` is an open enum in the client, so an unknown one reaches the server.
step("keys.update_credits unknown operation -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.update_credits(
         key_id=state["credits_key_id"], operation="multiply", value=2), INVALID_INPUT))
step("keys.update_credits unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401, lambda: stranger.keys.update_credits(
         key_id=state["credits_key_id"], operation="set", value=1), UNKNOWN_ROOT_KEY))
step("keys.update_credits without update_key -> 403 ForbiddenErrorResponse",
     lambda: expect(errors.ForbiddenErrorResponse, 403, lambda: key_reader.keys.update_credits(
         key_id=state["credits_key_id"], operation="set", value=1), NO_PERMISSION))
step("keys.update_credits missing key -> 404 NotFoundErrorResponse",
     lambda: expect(errors.NotFoundErrorResponse, 404, lambda: admin.keys.update_credits(
         key_id=MISSING_KEY, operation="set", value=1), KEY_NOT_FOUND))

step("apis.delete_api (cleanup of the update checks' API)",
     lambda: admin.apis.delete_api(api_id=state["update_api_id"]))

# === keys.verify_key =======================================================================================
# Every outcome of the key itself is a 200 whose body goes through the client's V2KeysVerifyKeyResponseBody
# model: each step checks `valid`, `code` and the fields that outcome carries. A root key without verify_key
# also gets 200 NOT_FOUND, never an error (spec digest 3.3). 400 and 401 come as the client's typed errors;
# 412 (a ratelimit the key does not have) is not declared for verifyKey, so the client raises its generic
# APIError (digest 7). Everything is set up in an API of its own; each outcome mints its own key.
verifier = client(os.environ["SIGIL_VERIFIER_KEY"])  # only api.*.verify_key
PRECONDITION_FAILED = "unkey/application/precondition_failed"
FAR_FUTURE = 4_102_444_800_000  # 2100-01-01, in unix ms
VERIFY_OWNER_META = {"plan": "pro"}
VERIFY_KEY_META = {"tier": "gold", "seats": 2}
# Every field of a verification but `valid` and `code`; a NOT_FOUND has none of them.
VERIFICATION_FIELDS = ("key_id", "keyspace_id", "name", "meta", "expires", "credits", "enabled", "permissions",
                       "roles", "identity", "ratelimits")


def expect_generic(status, call, error_type=None, detail=None):
    """`call` must raise the client's generic APIError (it declares no typed error for `status` on this
    operation) with `status` and a JSON body of Unkey's error shape; with `error_type`, an error.type URL
    ending in it; with `detail`, exactly that error.detail."""
    try:
        result = call()
    except errors.APIError as error:
        assert error.status_code == status, f"HTTP {error.status_code}, expected {status}: {error}"
        body = json.loads(error.body)
        assert body["error"]["status"] == status, body
        assert all(isinstance(body["error"].get(field), str) and body["error"][field]
                   for field in ("title", "type", "detail")), body
        assert body["meta"]["requestId"].startswith("req_"), body
        if error_type is not None:
            assert body["error"]["type"].endswith("/" + error_type), f"error.type, expected .../{error_type}: {body}"
        if detail is not None:
            assert body["error"]["detail"] == detail, f"error.detail, expected {detail!r}: {body}"
        return
    except Exception as error:
        raise AssertionError(f"expected APIError, got {type(error).__name__}: {error}") from error
    raise AssertionError(f"expected APIError, but the call succeeded: {result}")


def verify_key_for(**body):
    return admin.keys.create_key(api_id=state["verify_api_id"], prefix="vfy", **body).data


def verify(key, sdk=None, **request):
    """A verification's data, through the root key's client unless `sdk` is given."""
    verified = (sdk or admin).keys.verify_key(key=key, **request)
    assert verified.meta.request_id.startswith("req_"), verified
    return verified.data


def checked_limit(data, name, before, after):
    """The checked ratelimit `name`: its reset checked (the end of the current window, in unix ms, made
    between `before` and `after`), the other fields returned as a tuple
    (id, limit, duration, remaining, exceeded, auto_apply)."""
    found = [rl for rl in data.ratelimits or [] if rl.name == name]
    assert len(found) == 1, f"ratelimits named {name}: {data.ratelimits}"
    rl = found[0]
    assert before < rl.reset <= after + rl.duration, f"reset of {name}, expected {before}..{after + rl.duration}: {rl}"
    return (rl.id, rl.limit, rl.duration, rl.remaining, rl.exceeded, rl.auto_apply)


def now_ms():
    return int(time.time() * 1000)


def verify_key_setup():
    state["verify_api_id"] = admin.apis.create_api(name="py-check-verify").data.api_id
    state["verify_identity_id"] = admin.identities.create_identity(
        external_id="py_verify_owner", meta=VERIFY_OWNER_META,
        ratelimits=[{"name": "requests", "limit": 10, "duration": 60000, "auto_apply": True}]).data.identity_id
    state["verify_full"] = verify_key_for(
        name="py-check-verify", external_id="py_verify_owner", meta=VERIFY_KEY_META, credits={"remaining": 3},
        expires=FAR_FUTURE, ratelimits=[{"name": "tokens", "limit": 7, "duration": 60000, "auto_apply": True}])
    state["verify_plain"] = verify_key_for(credits={"remaining": 5})


def verify_key_valid():
    full = state["verify_full"]
    before = now_ms()
    data = verify(full.key)
    after = now_ms()
    assert (data.valid, data.code, data.key_id) == (True, "VALID", full.key_id), data
    assert (data.name, data.meta, data.enabled, data.expires) == ("py-check-verify", VERIFY_KEY_META, True,
                                                                  FAR_FUTURE), data
    assert data.credits == 2, f"credits, expected 3 less the default cost of 1: {data}"
    assert (data.permissions, data.roles) == (None, None), data
    identity = data.identity
    assert (identity.id, identity.external_id, identity.meta) == (
        state["verify_identity_id"], "py_verify_owner", VERIFY_OWNER_META), identity
    assert ratelimits_of(identity) == [("requests", 10, 60000, True)], identity
    # The identity's limit, counted on the identity, and the key's own.
    requests = checked_limit(data, "requests", before, after)
    assert requests == (identity.ratelimits[0].id, 10, 60000, 9, False, True), requests
    assert requests[0].startswith("rl_"), requests
    tokens = checked_limit(data, "tokens", before, after)
    assert tokens[0].startswith("rl_") and tokens[1:] == (7, 60000, 6, False, True), tokens
    assert len(data.ratelimits) == 2, data


def verify_key_verifier():
    data = verify(state["verify_full"].key, sdk=verifier)
    assert (data.valid, data.code, data.key_id, data.credits) == (True, "VALID", state["verify_full"].key_id, 1), data


def expect_not_found(data):
    assert (data.valid, data.code) == (False, "NOT_FOUND"), data
    assert all(getattr(data, field) is None for field in VERIFICATION_FIELDS), f"a NOT_FOUND shows nothing else: {data}"


def verify_key_deleted():
    created = verify_key_for()
    admin.keys.delete_key(key_id=created.key_id)
    expect_not_found(verify(created.key))


def verify_key_disabled():
    created = verify_key_for(enabled=False, credits={"remaining": 1})
    data = verify(created.key)
    assert (data.valid, data.code, data.key_id, data.enabled, data.credits) == (
        False, "DISABLED", created.key_id, False, 1), data


def verify_key_expired():
    created = verify_key_for(expires=1000)
    data = verify(created.key)
    assert (data.valid, data.code, data.key_id, data.expires, data.enabled) == (
        False, "EXPIRED", created.key_id, 1000, True), data


def verify_key_inline_limit():
    key = verify_key_for().key
    inline = [{"name": "burst", "limit": 1, "duration": 1000}]
    before = now_ms()
    first = verify(key, ratelimits=inline)
    assert (first.valid, first.code) == (True, "VALID"), first
    # An inline limit reports id "" and auto_apply False (digest 3.6).
    assert checked_limit(first, "burst", before, now_ms()) == ("", 1, 1000, 0, False, False), first
    second = verify(key, ratelimits=inline)
    # The 1 s window may have rolled over between the two calls: then the next call is in the new window.
    if second.code == "VALID" and second.ratelimits[0].reset != first.ratelimits[0].reset:
        second = verify(key, ratelimits=inline)
    assert (second.valid, second.code) == (False, "RATE_LIMITED"), second
    assert (second.ratelimits[0].exceeded, second.ratelimits[0].remaining) == (True, 0), second


def verify_key_named_limit():
    created = verify_key_for(ratelimits=[{"name": "tokens", "limit": 10, "duration": 60000, "auto_apply": False}])
    plain = verify(created.key)
    assert (plain.code, plain.ratelimits) == ("VALID", None), f"a limit that is not auto_apply is not checked: {plain}"
    named = verify(created.key, ratelimits=[{"name": "tokens", "cost": 8}])
    assert (named.valid, named.code) == (True, "VALID"), named
    assert [(rl.name, rl.remaining, rl.exceeded) for rl in named.ratelimits] == [("tokens", 2, False)], named
    over = verify(created.key, ratelimits=[{"name": "tokens", "cost": 3}])
    assert (over.valid, over.code, over.key_id) == (False, "RATE_LIMITED", created.key_id), over
    assert [(rl.name, rl.remaining, rl.exceeded) for rl in over.ratelimits] == [("tokens", 2, True)], over


def verify_key_usage_exceeded():
    created = verify_key_for(credits={"remaining": 1})
    first = verify(created.key)
    assert (first.valid, first.code, first.credits) == (True, "VALID", 0), first
    second = verify(created.key)
    assert (second.valid, second.code, second.key_id, second.credits) == (
        False, "USAGE_EXCEEDED", created.key_id, 0), second
    free = verify(created.key, credits={"cost": 0})
    assert (free.valid, free.code, free.credits) == (True, "VALID", 0), f"a cost of 0 still passes: {free}"


def verify_key_errors_spent_nothing():
    data = verify(state["verify_plain"].key)
    assert (data.code, data.credits) == ("VALID", 4), data


def verify_key_cleanup():
    admin.apis.delete_api(api_id=state["verify_api_id"])
    admin.identities.delete_identity(identity="py_verify_owner")


step("keys.verify_key setup: an API, an identity with an auto_apply limit, a key with every field", verify_key_setup)

# --- keys.verify_key: VALID

step("keys.verify_key VALID: key fields, credits after spend, identity, the key's and the identity's checked "
     "ratelimits", verify_key_valid)
step("keys.verify_key VALID with only api.*.verify_key", verify_key_verifier)

# --- keys.verify_key: NOT_FOUND, with no other field

step("keys.verify_key unknown key -> 200 NOT_FOUND", lambda: expect_not_found(verify("vfy_not_a_key")))
step("keys.verify_key without verify_key (only read_key) -> 200 NOT_FOUND, not an error",
     lambda: expect_not_found(verify(state["verify_full"].key, sdk=key_reader)))
step("keys.verify_key soft-deleted key -> 200 NOT_FOUND", verify_key_deleted)

# --- keys.verify_key: DISABLED and EXPIRED

step("keys.verify_key DISABLED (created with enabled False), spends nothing", verify_key_disabled)
step("keys.verify_key EXPIRED (created with expires 1000, in 1970)", verify_key_expired)

# --- keys.verify_key: RATE_LIMITED and USAGE_EXCEEDED

step("keys.verify_key RATE_LIMITED by an inline limit {name: burst, limit: 1, duration: 1000}",
     verify_key_inline_limit)
step("keys.verify_key RATE_LIMITED by a named limit at its cost", verify_key_named_limit)
step("keys.verify_key USAGE_EXCEEDED (1 credit, verified twice; cost 0 still passes)", verify_key_usage_exceeded)

# --- keys.verify_key: errors

step("keys.verify_key permissions query -> 400 BadRequestErrorResponse (not supported)",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.verify_key(
         key=state["verify_plain"].key, permissions="documents.read"), INVALID_INPUT, detail_contains="not supported"))
step("keys.verify_key credits cost -1 -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.verify_key(
         key=state["verify_plain"].key, credits={"cost": -1}), INVALID_INPUT))
step("keys.verify_key empty key -> 400 BadRequestErrorResponse",
     lambda: expect(errors.BadRequestErrorResponse, 400, lambda: admin.keys.verify_key(key=""), INVALID_INPUT))
step("keys.verify_key unknown root key -> 401 UnauthorizedErrorResponse",
     lambda: expect(errors.UnauthorizedErrorResponse, 401,
                    lambda: stranger.keys.verify_key(key=state["verify_plain"].key), UNKNOWN_ROOT_KEY))
step("keys.verify_key ratelimit the key does not have -> 412 APIError (the client has no typed 412)",
     lambda: expect_generic(
         412, lambda: admin.keys.verify_key(key=state["verify_plain"].key, ratelimits=[{"name": "nope"}]),
         PRECONDITION_FAILED,
         detail=f"ratelimit 'nope' was requested but does not exist for key '{state['verify_plain'].key_id}' "
                "and there is no identity connected."))
step("keys.verify_key after the errors: none of them spent a credit", verify_key_errors_spent_nothing)

step("apis.delete_api (cleanup of the verify_key checks' API and identity)", verify_key_cleanup)

print(f"{passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
