//! What every error page says: one table per error type, in the order `ErrorCode` lists them.

use crate::error::{ApiError, ErrorCode, ValidationError};
use crate::error_docs::{CodeExample, EXAMPLE_IDENTITY_ID, ErrorDocs, Fix, Language};
use crate::middleware::RETRY_AFTER_A_TIMEOUT;
use crate::store::StoreError;
use serde_json::json;

impl ErrorCode {
    pub fn docs(self) -> ErrorDocs {
        match self {
            Self::InvalidInput => invalid_input(),
            Self::Malformed => malformed(),
            Self::KeyNotFound => key_not_found(),
            Self::InsufficientPermissions => insufficient_permissions(),
            Self::IdentityNotFound => identity_not_found(),
            Self::ApiNotFound => api_not_found(),
            Self::ApiKeyNotFound => key_not_found_in_apis(),
            Self::PreconditionFailed => precondition_failed(),
            Self::IdentityAlreadyExists => identity_already_exists(),
            Self::IdempotencyKeyReused => idempotency_key_reused(),
            Self::IdempotencyRequestInProgress => idempotency_request_in_progress(),
            Self::RequestTimeout => request_timeout(),
            Self::RequestBodyTooLarge => request_body_too_large(),
            Self::RouteNotFound => route_not_found(),
            Self::MethodNotAllowed => method_not_allowed(),
            Self::ServiceUnavailable => service_unavailable(),
            Self::Overloaded => overloaded(),
            Self::UnexpectedError => unexpected_error(),
        }
    }
}

fn invalid_input() -> ErrorDocs {
    ErrorDocs {
        summary: "The body, a header or a value breaks the API's rules; nothing ran.",
        example: ApiError::invalid_input(
            "POST request body for '/v2/identities.createIdentity' failed to validate schema",
            vec![ValidationError::new(
                "/properties/externalId/pattern",
                "/externalId: value does not match \"^[a-zA-Z0-9_.-]+$\"",
            )],
        ),
        what_happened: "Sigil rejected the request before it ran anything: the body is not JSON, breaks the \
            operation's schema in `/openapi.json`, breaks a rule the schema cannot express, or a required header \
            is missing or wrong. The body is checked before the root key, as Unkey does, so a 400 says nothing \
            about your key. Each entry of `errors[]` names one problem: its `location` (a JSON-Schema keyword \
            path such as `/properties/externalId/pattern`, or `body`, `header.Content-Type`, `security`), a \
            `message` and often a `fix`. Nothing was written, and an `Idempotency-Key` sent with the request is \
            still unused.",
        common_scenarios: &[
            "An externalId with a character other than letters, digits, `_`, `.` and `-` (an email address, a \
             space, a `/`), or longer than 255 characters.",
            "No `Content-Type: application/json` header, or a body that is not JSON (empty, a trailing comma, \
             single quotes).",
            "An unknown field, e.g. `external_id` instead of `externalId`: Sigil rejects unknown fields on every \
             operation, create included (Unkey ignores them there).",
            "Two ratelimits with the same name, a `duration` under 1000 ms, or `meta` over 1 MiB of JSON or 100 \
             keys.",
            "A `limit` over 100 on listIdentities.",
            "No `Authorization` header at all (`errors[].location` is `security`).",
            "An `Idempotency-Key` that is empty or longer than 255 characters.",
        ],
        triggering_request: curl!("identities.createIdentity", r#"{"externalId":"jane@example.com"}"#),
        how_to_fix: &[
            Fix {
                description: "Correct what `errors[]` names and send the request again. An externalId may hold \
                    letters, digits, `_`, `.` and `-`; keep other identifiers, such as email addresses, in `meta`.",
                request: curl!(
                    "identities.createIdentity",
                    r#"{"externalId":"user_123","meta":{"email":"jane@example.com"}}"#
                ),
            },
            Fix {
                description: "Check the body against the operation's schema: `/openapi.json` gives every field, \
                    limit and pattern.",
                request: "curl -s {base}/openapi.json | jq '.components.schemas.CreateIdentityRequest'",
            },
            Fix {
                description: "Send both headers: `Content-Type: application/json` and \
                    `Authorization: Bearer <root key>`.",
                request: curl!("identities.listIdentities", r#"{"limit":10}"#),
            },
            Fix {
                description: "Give each ratelimit its own name, a `limit` of 1 to 1,000,000 and a `duration` of \
                    1,000 to 2,592,000,000 ms.",
                request: curl!(
                    "identities.createIdentity",
                    r#"{"externalId":"user_123","ratelimits":[{"name":"requests","limit":100,"duration":60000,"autoApply":true},{"name":"tokens","limit":5000,"duration":3600000,"autoApply":false}]}"#
                ),
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import { BadRequestErrorResponse } from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

try {
  await unkey.identities.createIdentity({ externalId: "jane@example.com" });
} catch (err) {
  if (!(err instanceof BadRequestErrorResponse)) throw err;
  // Every problem at once: fix them all before sending again.
  for (const problem of err.error.errors) {
    console.error(problem.location, problem.message, problem.fix ?? "");
  }
}"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        unkey.identities.create_identity(external_id="jane@example.com")
    except errors.BadRequestErrorResponse as e:
        for problem in e.data.error.errors:
            print(problem.location, problem.message, problem.fix or "")"#,
            },
        ],
        common_mistakes: &[
            "Retrying a 400 unchanged: it fails the same way every time. Fix the request first; an \
             `Idempotency-Key` sent with a 400 was not used, so the corrected request may reuse it.",
            "Using an email address or a URL as the externalId. Map it to an id of letters, digits, `_`, `.` and \
             `-` (such as your users table's primary key) and keep the address in `meta`.",
            "Sending snake_case fields (`external_id`) in hand-written HTTP calls: fields are camelCase, and \
             unknown fields are rejected. The clients convert for you.",
            "Reading only `detail`: `errors[]` lists every problem, so one round trip can fix them all.",
        ],
    }
}

fn malformed() -> ErrorDocs {
    ErrorDocs {
        summary: "`Authorization` is not `Bearer <root key>`.",
        example: ApiError::new(
            ErrorCode::Malformed,
            "You must provide a valid root key in the Authorization header in the format 'Bearer ROOT_KEY'.",
        )
        .with_error(
            ValidationError::new("header.Authorization", "The Authorization header is not 'Bearer <root key>'.")
                .with_fix("Send 'Authorization: Bearer <root key>'."),
        ),
        what_happened: "The `Authorization` header is there, but it is not `Bearer <root key>`: it has another \
            scheme, no scheme, or nothing after `Bearer `. Sigil did not look up any key. The scheme is matched \
            case-insensitively, and the key is what follows the first space. The body is checked first, so this \
            error only comes with a valid body.",
        common_scenarios: &[
            "The key sent without a scheme: `Authorization: sigil_…`.",
            "Another scheme: `Basic …` from an HTTP library's auth helper, or `Token …`.",
            "An unset variable: `Bearer $SIGIL_ROOT_KEY` with `SIGIL_ROOT_KEY` empty sends `Bearer` and nothing \
             after it.",
            "A proxy or API gateway in front of Sigil that replaces `Authorization` with its own credentials.",
        ],
        triggering_request: r#"curl -s -X POST {base}/v2/identities.listIdentities \
  -H "Authorization: $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  -d '{}'"#,
        how_to_fix: &[
            Fix {
                description: "Put `Bearer` and one space before the key.",
                request: curl!("identities.listIdentities", r#"{"limit":10}"#),
            },
            Fix {
                description: "Make sure the variable holds a key before calling: an empty one sends an empty \
                    token.",
                request: concat!(
                    "test -n \"$SIGIL_ROOT_KEY\" && \\\n",
                    curl!("identities.listIdentities", r#"{"limit":10}"#)
                ),
            },
            Fix {
                description: "If a proxy sits in front of Sigil, call Sigil directly (as here) to see whether the \
                    proxy rewrites the header, and configure it to pass `Authorization` through.",
                request: curl!("identities.getIdentity", r#"{"identity":"user_123"}"#),
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"// The Unkey clients always send "Bearer <rootKey>"; this error comes from hand-written calls.
const response = await fetch("{base}/v2/identities.listIdentities", {
  method: "POST",
  headers: {
    Authorization: `Bearer ${process.env.SIGIL_ROOT_KEY}`,
    "Content-Type": "application/json",
  },
  body: JSON.stringify({ limit: 10 }),
});
console.log(response.status, await response.json());"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
import httpx

response = httpx.post(
    "{base}/v2/identities.listIdentities",
    headers={"Authorization": f"Bearer {os.environ['SIGIL_ROOT_KEY']}"},
    json={"limit": 10},
)
print(response.status_code, response.json())"#,
            },
        ],
        common_mistakes: &[
            "Passing `Bearer sigil_…` as the clients' `rootKey` / `root_key`: they add `Bearer ` themselves, so \
             the server sees `Bearer Bearer sigil_…` and answers 401 `key_not_found`.",
            "Sending the key in another header (`X-API-Key`) or the query string: only `Authorization` is read, \
             and without it the answer is 400 `invalid_input`.",
            "Retrying: the header is just as wrong on every attempt.",
        ],
    }
}

fn key_not_found() -> ErrorDocs {
    ErrorDocs {
        summary: "The bearer token is not a root key of this server.",
        example: ApiError::new(
            ErrorCode::KeyNotFound,
            "The provided root key is invalid. We could not find the requested key.",
        ),
        what_happened: "The token after `Bearer ` is not a root key of this Sigil. Sigil stores only the SHA-256 \
            hash of each key, so a typo, a revoked key and a key of another installation all get this same \
            answer. Nothing ran.",
        common_scenarios: &[
            "A typo, a truncated key, or whitespace or quotes copied along with it.",
            "A key revoked with `sigil root-key revoke` (refused at once on PostgreSQL, within 5 s on SQLite).",
            "A key of another Sigil database, or an Unkey cloud root key sent to Sigil.",
            "A development key used against the production server, or the other way round.",
            "A new database: `sigil serve` printed a fresh key on its first start, and the key in use belonged \
             to the database it replaced.",
        ],
        triggering_request: r#"curl -s -X POST {base}/v2/identities.listIdentities \
  -H 'Authorization: Bearer sigil_not_a_real_key' \
  -H 'Content-Type: application/json' \
  -d '{}'"#,
        how_to_fix: &[
            Fix {
                description: "Mint a key on the server's host, with the server's `--database`, and use it. The \
                    key is printed once, alone on the last line.",
                request: concat!(
                    "export SIGIL_ROOT_KEY=\"$(sigil root-key create --workspace default | tail -n 1)\"\n",
                    curl!("identities.listIdentities", r#"{"limit":1}"#)
                ),
            },
            Fix {
                description: "Strip whitespace and line breaks from the stored key.",
                request: concat!(
                    "export SIGIL_ROOT_KEY=\"$(printf %s \"$SIGIL_ROOT_KEY\" | tr -d '[:space:]')\"\n",
                    curl!("identities.listIdentities", r#"{"limit":1}"#)
                ),
            },
            Fix {
                description: "Make sure you are calling the server you think you are: liveness answers without a \
                    key.",
                request: "curl -s {base}/v2/liveness",
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import { UnauthorizedErrorResponse } from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

try {
  await unkey.identities.listIdentities({ limit: 1 });
} catch (err) {
  if (!(err instanceof UnauthorizedErrorResponse)) throw err;
  // A wrong key stays wrong: stop and fix the configuration instead of retrying.
  console.error(`Root key rejected (request ${err.meta.requestId}): ${err.error.detail}`);
  process.exit(1);
}"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        unkey.identities.list_identities(limit=1)
    except errors.UnauthorizedErrorResponse as e:
        raise SystemExit(f"Root key rejected (request {e.data.meta.request_id}): {e.data.error.detail}")"#,
            },
        ],
        common_mistakes: &[
            "Retrying a 401 in a loop: a wrong key never becomes right.",
            "Passing `Bearer sigil_…` as `rootKey` / `root_key`: the clients add `Bearer ` themselves.",
            "Revoking a key without first rolling the new one out to every deployment that uses it.",
            "Sharing keys between servers with different databases: each database has its own keys.",
        ],
    }
}

fn insufficient_permissions() -> ErrorDocs {
    ErrorDocs {
        summary: "The root key lacks every permission that allows this operation.",
        example: ApiError::new(
            ErrorCode::InsufficientPermissions,
            "Missing one of these permissions: identity.*.create_identity or \
             unkey:v1:ws_01JZ8WZQ3K5M7N9P1R3T5V7X9Y:projects/*/identities/*#create_identity",
        ),
        what_happened: "The root key is valid, but none of its permissions allows this operation; `detail` lists \
            the permissions that would. Sigil checks permissions before it looks for the identity, so a key that \
            may not read an identity gets this same 403 whether the identity exists or not. Nothing was written. \
            createIdentity needs `identity.*.create_identity`; upsertIdentity needs both \
            `identity.*.create_identity` and `identity.*.update_identity`; getIdentity needs \
            `identity.*.read_identity` or `identity.<id>.read_identity`; updateIdentity and deleteIdentity need \
            `identity.*.update_identity` and `identity.*.delete_identity`.",
        common_scenarios: &[
            "A key minted with `--permission` for other operations, e.g. a read-only key calling createIdentity.",
            "upsertIdentity with a key that may create but not update.",
            "A per-identity grant written with the externalId (`identity.user_123.read_identity`): grants name \
             identity ids (`id_…`).",
            "A key granted one identity reading another, or listing with no grant to read at all.",
        ],
        triggering_request: concat!(
            "# With a key minted by: sigil root-key create --permission 'identity.*.read_identity'\n",
            curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#)
        ),
        how_to_fix: &[
            Fix {
                description: "Mint a key holding a permission named in `detail`, and use it for this operation. \
                    A key's permissions never change: to change them, mint a new key and revoke the old one.",
                request: concat!(
                    "export SIGIL_ROOT_KEY=\"$(sigil root-key create --workspace default \\\n",
                    "  --permission 'identity.*.create_identity' --permission 'identity.*.read_identity' | tail -n 1)\"\n",
                    curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#)
                ),
            },
            Fix {
                description: "For upsertIdentity, grant both create and update.",
                request: concat!(
                    "export SIGIL_ROOT_KEY=\"$(sigil root-key create --workspace default \\\n",
                    "  --permission 'identity.*.create_identity' --permission 'identity.*.update_identity' | tail -n 1)\"\n",
                    curl!("identities.upsertIdentity", r#"{"externalId":"user_123","meta":{"plan":"pro"}}"#)
                ),
            },
            Fix {
                description: "To let a key read one identity only, grant it by the identity's id (`id_…`, as \
                    createIdentity answered it).",
                request: concat!(
                    "export SIGIL_ROOT_KEY=\"$(sigil root-key create --workspace default \\\n",
                    "  --permission 'identity.id_01JZ8X4B7QH2V9N3C5D6E8F0GA.read_identity' | tail -n 1)\"\n",
                    curl!("identities.getIdentity", r#"{"identity":"id_01JZ8X4B7QH2V9N3C5D6E8F0GA"}"#)
                ),
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import { ForbiddenErrorResponse } from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

try {
  await unkey.identities.createIdentity({ externalId: "user_123" });
} catch (err) {
  if (!(err instanceof ForbiddenErrorResponse)) throw err;
  // The detail names the permissions that would allow the call.
  throw new Error(`This service's root key needs another permission: ${err.error.detail}`);
}"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        unkey.identities.create_identity(external_id="user_123")
    except errors.ForbiddenErrorResponse as e:
        raise SystemExit(f"This service's root key needs another permission: {e.data.error.detail}")"#,
            },
        ],
        common_mistakes: &[
            "Granting `identity.<externalId>.read_identity`: per-identity grants name the identity's id (`id_…`).",
            "Retrying a 403: it stays a 403 until the request uses a key with the permission.",
            "Expecting a 404 to tell whether an identity exists: a key that may not read it gets 403 either way, \
             by design.",
            "Working around a 403 with an all-permissions key everywhere: give each service a key with only what \
             it calls, so a leaked key can do less.",
        ],
    }
}

fn identity_not_found() -> ErrorDocs {
    ErrorDocs {
        summary: "No live identity in the workspace has this id or externalId.",
        example: ApiError::identity_not_found(),
        what_happened: "No live identity in the root key's workspace has the id or externalId you sent as \
            `identity`. getIdentity, updateIdentity and deleteIdentity accept either: Sigil looks for an id \
            first, then for an externalId, matched exactly. Deleted identities and identities of other \
            workspaces are never found. Nothing was written.",
        common_scenarios: &[
            "The identity was deleted, by you, by another service, or by an earlier attempt of this same delete.",
            "A case mismatch: externalIds are case-sensitive, so `User_123` does not find `user_123`.",
            "The identity lives in another workspace: a key sees only its own, e.g. a staging key against \
             production data.",
            "A read that overtook the create making the identity, e.g. a worker that got the externalId from a \
             queue before the create finished.",
            "A retried delete whose first attempt succeeded.",
        ],
        triggering_request: curl!("identities.getIdentity", r#"{"identity":"user_does_not_exist"}"#),
        how_to_fix: &[
            Fix {
                description: "Search for it: listIdentities' `search` matches ids and externalIds \
                    case-insensitively, so it also finds `User_123` when you look for `user_123`.",
                request: curl!("identities.listIdentities", r#"{"search":"user_123","limit":10}"#),
            },
            Fix {
                description: "Create it, if it should exist.",
                request: curl!("identities.createIdentity", r#"{"externalId":"user_123","meta":{"plan":"pro"}}"#),
            },
            Fix {
                description: "Get or create it in one call with `upsertIdentity`, a Sigil extension; `created` in \
                    the answer tells which happened.",
                request: curl!("identities.upsertIdentity", r#"{"externalId":"user_123","meta":{"plan":"pro"}}"#),
            },
            Fix {
                description: "Retry deletes with an `Idempotency-Key`: the retry then replays the first attempt's \
                    200 instead of answering 404.",
                request: curl!("identities.deleteIdentity", r#"{"identity":"user_123"}"#, "delete-user_123-1"),
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import { NotFoundErrorResponse } from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

async function findIdentity(identity: string) {
  try {
    return (await unkey.identities.getIdentity({ identity })).data;
  } catch (err) {
    if (err instanceof NotFoundErrorResponse) return undefined;
    throw err;
  }
}

// Two processes can both miss and both create, and one then gets 409: upsertIdentity has no such race.
if (!(await findIdentity("user_123"))) {
  await unkey.identities.createIdentity({ externalId: "user_123", meta: { plan: "pro" } });
}"#,
            },
            CodeExample {
                language: Language::TypeScript,
                code: r#"// upsertIdentity is a Sigil extension, so the Unkey clients have no method for it.
const response = await fetch("{base}/v2/identities.upsertIdentity", {
  method: "POST",
  headers: {
    Authorization: `Bearer ${process.env.SIGIL_ROOT_KEY}`,
    "Content-Type": "application/json",
  },
  body: JSON.stringify({ externalId: "user_123", meta: { plan: "pro" } }),
});
const { data } = await response.json();
console.log(data.id, data.created ? "created" : "already there");"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        identity = unkey.identities.get_identity(identity="user_123").data
    except errors.NotFoundErrorResponse:
        identity = None
    if identity is None:
        unkey.identities.create_identity(external_id="user_123", meta={"plan": "pro"})"#,
            },
        ],
        common_mistakes: &[
            "Normalising case in one code path and not another: `User_123` and `user_123` are different \
             externalIds.",
            "Treating a 404 from a retried delete as a failure: the first attempt may have deleted it. Send an \
             `Idempotency-Key`, or treat 404 on delete as done.",
            "Expecting a 404 with a key that may not read the identity: such a key gets 403 whether it exists \
             or not.",
        ],
    }
}

fn api_not_found() -> ErrorDocs {
    ErrorDocs {
        summary: "No live API with that id in your workspace.",
        example: ApiError::new(ErrorCode::ApiNotFound, "The requested API does not exist or has been deleted."),
        what_happened: "The apiId names no live API of the root key's workspace: it never existed, it was \
            deleted, or it belongs to another workspace. keys.createKey also answers this when the key may not \
            create keys in that API, as Unkey does, so that a key without the permission cannot tell which APIs \
            exist.",
        common_scenarios: &[
            "An apiId copied from another environment's workspace.",
            "The API was deleted with apis.deleteApi; its keys remain but no longer verify.",
            "A root key without api.*.create_key (or api.<apiId>.create_key) creating a key.",
        ],
        triggering_request: curl!("apis.getApi", r#"{"apiId":"api_does_not_exist"}"#),
        how_to_fix: &[
            Fix {
                description: "Create the API, and use the apiId it answers.",
                request: curl!("apis.createApi", r#"{"name":"production"}"#),
            },
            Fix {
                description: "Check the API you meant still exists.",
                request: curl!("apis.getApi", r#"{"apiId":"api_01JZ8X4B7QH2V9N3C5D6E8F0GA"}"#),
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import * as errors from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });
try {
  await unkey.apis.getApi({ apiId: "api_does_not_exist" });
} catch (error) {
  if (error instanceof errors.NotFoundErrorResponse) {
    const { data } = await unkey.apis.createApi({ name: "production" });
    console.log("created", data.apiId);
  } else throw error;
}"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        unkey.apis.get_api(api_id="api_does_not_exist")
    except errors.NotFoundErrorResponse:
        print(unkey.apis.create_api(name="production").data.api_id)"#,
            },
        ],
        common_mistakes: &[
            "Using the API's name where its id is wanted: API names need not be unique.",
            "Reading this 404 from createKey as \"the API is gone\" when the root key lacks create_key.",
        ],
    }
}

fn precondition_failed() -> ErrorDocs {
    ErrorDocs {
        summary: "keys.verifyKey named a ratelimit that neither the key nor its identity has.",
        example: ApiError::new(
            ErrorCode::PreconditionFailed,
            "ratelimit 'tokens' was requested but does not exist for key 'key_01JZ8X4B7QH2V9N3C5D6E8F0GA' and there \
             is no identity connected.",
        ),
        what_happened: "A verification asked for a ratelimit by name alone, without `limit` and `duration`, and \
            no ratelimit of that name is stored on the key or on its identity, so there was nothing to count \
            against. Nothing was counted and no credits were spent. Unkey answers the same 412.",
        common_scenarios: &[
            "A typo in the ratelimit's name, or a name that differs in case (names are case-sensitive).",
            "The limit is stored on the identity, and the key has no identity (or its identity was deleted).",
            "The limit was removed by keys.updateKey, whose `ratelimits` replaces the whole set.",
        ],
        triggering_request: curl!("keys.verifyKey", r#"{"key":"sk_123","ratelimits":[{"name":"tokens"}]}"#),
        how_to_fix: &[
            Fix {
                description: "Store the ratelimit on the key (or on its identity with identities.updateIdentity).",
                request: curl!(
                    "keys.updateKey",
                    r#"{"keyId":"key_01JZ8X4B7QH2V9N3C5D6E8F0GA","ratelimits":[{"name":"tokens","limit":100,"duration":60000,"autoApply":false}]}"#
                ),
            },
            Fix {
                description: "Or send the limit inline, counted on the key for this request.",
                request: curl!(
                    "keys.verifyKey",
                    r#"{"key":"sk_123","ratelimits":[{"name":"tokens","limit":100,"duration":60000}]}"#
                ),
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });
try {
  await unkey.keys.verifyKey({ key: "sk_123", ratelimits: [{ name: "tokens" }] });
} catch (error) {
  // The client types no 412: it raises its generic APIError with the status.
  console.log((error as { statusCode?: number }).statusCode); // 412
}"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        unkey.keys.verify_key(key="sk_123", ratelimits=[{"name": "tokens"}])
    except errors.APIError as error:
        print(error.status_code)  # 412"#,
            },
        ],
        common_mistakes: &[
            "Reading a 412 as an invalid key: the key was found; the request asked for a limit it does not have.",
            "Expecting autoApply limits to need naming: they are checked on every verification anyway.",
        ],
    }
}

fn key_not_found_in_apis() -> ErrorDocs {
    ErrorDocs {
        summary: "No live key with that id in your workspace.",
        example: ApiError::new(ErrorCode::ApiKeyNotFound, "We could not find the requested key."),
        what_happened: "The keyId names no live key of the root key's workspace: it never existed, it was \
            deleted (softly or permanently), its API was deleted, or it belongs to another workspace. Sigil \
            answers all of these alike, so that the answer tells nothing of other workspaces.",
        common_scenarios: &[
            "The key was deleted with keys.deleteKey, or its API with apis.deleteApi.",
            "A keyId from another environment's workspace.",
            "The key's own value sent where its id is wanted: ids start with key_.",
        ],
        triggering_request: curl!("keys.getKey", r#"{"keyId":"key_does_not_exist"}"#),
        how_to_fix: &[
            Fix {
                description: "Create a new key in the API, and keep the keyId it answers.",
                request: curl!(
                    "keys.createKey",
                    r#"{"apiId":"api_01JZ8X4B7QH2V9N3C5D6E8F0GA","externalId":"user_123"}"#
                ),
            },
            Fix {
                description: "Look the key up by the id createKey answered.",
                request: curl!("keys.getKey", r#"{"keyId":"key_01JZ8X4B7QH2V9N3C5D6E8F0GA"}"#),
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import * as errors from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });
try {
  await unkey.keys.getKey({ keyId: "key_does_not_exist" });
} catch (error) {
  if (error instanceof errors.NotFoundErrorResponse) console.log("no such key");
  else throw error;
}"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        unkey.keys.get_key(key_id="key_does_not_exist")
    except errors.NotFoundErrorResponse:
        print("no such key")"#,
            },
        ],
        common_mistakes: &[
            "Treating a deleted key's 404 as a failure of the delete: a second delete answers 404 too.",
            "Sending the key itself as keyId.",
        ],
    }
}

fn identity_already_exists() -> ErrorDocs {
    ErrorDocs {
        summary: "A live identity in the workspace already has this externalId.",
        example: ApiError::new(
            ErrorCode::IdentityAlreadyExists,
            "Identity with externalId 'user_123' already exists in this workspace.",
        )
        .with_extension("conflictingField", json!("externalId"))
        .with_extension("conflictingValue", json!("user_123"))
        .with_extension("existingIdentityId", json!(EXAMPLE_IDENTITY_ID))
        .with_extension(
            "retrieve",
            json!({"method": "POST", "path": "/v2/identities.getIdentity", "body": {"identity": EXAMPLE_IDENTITY_ID}}),
        ),
        what_happened: "A live identity in the root key's workspace already has this externalId, so \
            createIdentity wrote nothing. An externalId is unique among the live identities of a workspace; a \
            deleted identity frees its externalId at once. Besides Unkey's four members, the error says how to go \
            on: `conflictingField` and `conflictingValue` name what collided, and, when your key may read the \
            existing identity, `existingIdentityId` is its id and `retrieve` is the request that fetches it.",
        common_scenarios: &[
            "A retry whose first attempt succeeded: its answer was lost to a timeout, a dropped connection or a \
             crash, and the client sent the create again. The Unkey clients also retry 5xx answers on their own \
             for up to 10 s.",
            "Two clients racing to create the same user: two sign-up requests, or two workers handling one event.",
            "A delete-then-recreate whose delete did not take effect: it failed (403, or 404 for a mistyped id), \
             timed out and was not retried, or the create overtook it. A deleted identity frees its externalId at \
             once, so this 409 means the old one is still live.",
            "A bulk import or backfill re-run after it stopped halfway: every identity it had created answers 409.",
            "Two sources of users mapping to one externalId, e.g. `123` from two sign-in providers.",
        ],
        triggering_request: concat!(
            "# The first run creates the identity; every later run answers 409.\n",
            curl!("identities.createIdentity", r#"{"externalId":"user_123","meta":{"plan":"pro"}}"#)
        ),
        how_to_fix: &[
            Fix {
                description: "Use a different externalId, if this is really another user. Derive externalIds \
                    from a stable, unique id in your system (such as your users table's primary key), and prefix \
                    ids from different sources (`github_123`, `google_123`).",
                request: curl!("identities.createIdentity", r#"{"externalId":"user_124","meta":{"plan":"pro"}}"#),
            },
            Fix {
                description: "Update the existing identity with `POST /v2/identities.updateIdentity`. `identity` \
                    takes the id from `existingIdentityId` or the externalId itself; only the `meta` and \
                    `ratelimits` you send are replaced.",
                request: curl!("identities.updateIdentity", r#"{"identity":"user_123","meta":{"plan":"enterprise"}}"#),
            },
            Fix {
                description: "Get the existing identity with `POST /v2/identities.getIdentity`. `identity` takes \
                    the externalId, or the id in `existingIdentityId`: `error.retrieve` is this request, ready to \
                    send.",
                request: curl!("identities.getIdentity", r#"{"identity":"user_123"}"#),
            },
            Fix {
                description: "Get or create in one call with `POST /v2/identities.upsertIdentity`, a Sigil \
                    extension: it creates the identity when the externalId is free, otherwise replaces the parts \
                    you sent, and answers `created: true|false`. Concurrent upserts of one externalId never \
                    answer 409. It needs both `identity.*.create_identity` and `identity.*.update_identity`.",
                request: curl!("identities.upsertIdentity", r#"{"externalId":"user_123","meta":{"plan":"pro"}}"#),
            },
            Fix {
                description: "Retry safely with an `Idempotency-Key`: make one key per logical create and send it \
                    on every retry. A retry with the same key, root key and body replays the first answer byte \
                    for byte (with `Idempotent-Replayed: true`), so it gets the 200 with the identity's id \
                    instead of a 409. Answers are kept for 24 h.",
                request: curl!(
                    "identities.createIdentity",
                    r#"{"externalId":"user_123","meta":{"plan":"pro"}}"#,
                    "signup-7f3c9a2e-user_123"
                ),
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import { ConflictErrorResponse } from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

async function createOrGet(externalId: string, meta: Record<string, unknown>) {
  try {
    const { data } = await unkey.identities.createIdentity({ externalId, meta });
    return data.identityId;
  } catch (err) {
    // A 409 can also be sigil/idempotency/request_in_progress, which must be retried instead.
    if (!(err instanceof ConflictErrorResponse) || !err.error.type.endsWith("/identity_already_exists")) {
      throw err;
    }
    // The client keeps only Unkey's members in err.error; Sigil's extension members are in the raw body.
    const existingId: string | undefined = JSON.parse(err.body).error.existingIdentityId;
    const { data } = await unkey.identities.getIdentity({ identity: existingId ?? externalId });
    return data.id;
  }
}

console.log(await createOrGet("user_123", { plan: "pro" }));"#,
            },
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { randomUUID } from "node:crypto";
import { Unkey } from "@unkey/api";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

// One key per logical create, stored with the job so that a retry, even after a crash, reuses it.
// The client's own retries of 5xx answers send the same header.
const idempotencyKey = randomUUID();
const { data } = await unkey.identities.createIdentity(
  { externalId: "user_123", meta: { plan: "pro" } },
  { headers: { "Idempotency-Key": idempotencyKey } },
);
console.log(data.identityId);"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import json
import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        res = unkey.identities.create_identity(
            external_id="user_123",
            meta={"plan": "pro"},
            http_headers={"Idempotency-Key": "signup-7f3c9a2e-user_123"},
        )
        identity_id = res.data.identity_id
    except errors.ConflictErrorResponse as e:
        if not e.data.error.type.endswith("/identity_already_exists"):
            raise
        # Sigil's extension members are in the raw body.
        existing_id = json.loads(e.body)["error"].get("existingIdentityId", "user_123")
        identity_id = unkey.identities.get_identity(identity=existing_id).data.id
    print(identity_id)"#,
            },
        ],
        common_mistakes: &[
            "A retry loop that re-creates on 409: the identity exists, so every retry answers 409 again. Treat \
             `identity_already_exists` as \"it is there\": get it, update it, or use upsertIdentity.",
            "Case sensitivity: `User_123` and `user_123` are different externalIds. Normalising case in one code \
             path and not another makes two identities for one user. Pick one form, e.g. lowercase, and apply it \
             everywhere before calling Sigil.",
            "One externalId across environments: development, staging and production writing to one workspace \
             collide on the same externalIds and overwrite each other's meta. Use one workspace per environment \
             (`sigil root-key create --workspace staging`), each with its own root key.",
            "Treating every `ConflictErrorResponse` as this error: `sigil/idempotency/request_in_progress` is a \
             409 too, and must be retried. Match on `error.type`.",
            "Relying on `existingIdentityId`: it is there only when the key may read the existing identity. Fall \
             back to the externalId.",
            "Get-then-create (getIdentity, then create on 404): two processes can both miss and both create, and \
             one gets 409. Use upsertIdentity, or treat that 409 as success.",
        ],
    }
}

fn idempotency_key_reused() -> ErrorDocs {
    ErrorDocs {
        summary: "This `Idempotency-Key` was first used for a different request.",
        example: ApiError::idempotency_key_reused(),
        what_happened: "This `Idempotency-Key` already belongs to a different request: another operation, \
            another body (compared byte for byte), or another root key of the workspace. Sigil did not run this \
            request, so a key can never make one request return another's answer. Keys are scoped to the \
            workspace and kept for 24 h after their first answer (`--idempotency-retention-secs`).",
        common_scenarios: &[
            "A constant key (`Idempotency-Key: create-user`) sent with every request.",
            "A key derived from too little, e.g. only the user's id, used for a create and later for an update of \
             that user.",
            "A retry that serialised the body again, differently: other key order, whitespace or number format, \
             or a timestamp regenerated on each attempt.",
            "Two services with different root keys of one workspace using the same key scheme.",
        ],
        triggering_request: concat!(
            "# One key, two different bodies: the second request answers 422.\n",
            curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#, "signup-42"),
            "\n",
            curl!("identities.createIdentity", r#"{"externalId":"user_124"}"#, "signup-42")
        ),
        how_to_fix: &[
            Fix {
                description: "Use a fresh key for each distinct request: a random UUID made when the request is \
                    first built, and stored with it.",
                request: concat!(
                    "KEY=\"$(uuidgen)\"\n",
                    curl!("identities.createIdentity", r#"{"externalId":"user_124"}"#, "$KEY")
                ),
            },
            Fix {
                description: "When retrying, resend the exact bytes of the first attempt: keep the serialised \
                    body, not the object you built it from.",
                request: r#"BODY='{"externalId":"user_123","meta":{"plan":"pro"}}'
curl -s -X POST {base}/v2/identities.createIdentity \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  -H "Idempotency-Key: $KEY" \
  -d "$BODY""#,
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { randomUUID } from "node:crypto";
import { Unkey } from "@unkey/api";
import { APIError } from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

// One key per logical operation, made once; only retries of this same call reuse it.
const idempotencyKey = randomUUID();
try {
  await unkey.identities.createIdentity(
    { externalId: "user_123", meta: { plan: "pro" } },
    { headers: { "Idempotency-Key": idempotencyKey } },
  );
} catch (err) {
  // createIdentity declares no 422, so the client throws its generic APIError.
  if (err instanceof APIError && err.statusCode === 422) {
    throw new Error(`Idempotency-Key ${idempotencyKey} was already used for another request`);
  }
  throw err;
}"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
import uuid
from unkey.py import Unkey, errors

# One key per logical operation, made once; only retries of this same call reuse it.
idempotency_key = str(uuid.uuid4())
with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        unkey.identities.create_identity(
            external_id="user_123", meta={"plan": "pro"}, http_headers={"Idempotency-Key": idempotency_key}
        )
    except errors.APIError as e:
        if e.status_code != 422:
            raise
        raise RuntimeError(f"Idempotency-Key {idempotency_key} was already used for another request") from e"#,
            },
        ],
        common_mistakes: &[
            "One key for a whole batch or session: each request needs its own.",
            "Rebuilding the body for a retry with a new timestamp or another key order: the bytes differ, so it \
             is a different request.",
            "A new key for every retry: then retries are not deduplicated at all, and a retried create may \
             answer 409 `identity_already_exists`.",
            "Retrying a 422 as is: it answers 422 for as long as the key is kept (24 h).",
        ],
    }
}

fn idempotency_request_in_progress() -> ErrorDocs {
    ErrorDocs {
        summary: "The first request with this `Idempotency-Key` is still running; retry after `Retry-After`.",
        example: ApiError::idempotency_request_in_progress(),
        what_happened: "The first request with this `Idempotency-Key` is still running, so this retry did not \
            run. A retry waits for the first request to end, up to 5 s (`--idempotency-wait-ms`), and then \
            replays its answer; this 409 means the first request outlasted that wait. The response carries \
            `Retry-After: 1`. This request wrote nothing, and the first request runs to its end whatever becomes \
            of its client, so a later retry with the same key gets its answer.",
        common_scenarios: &[
            "A client timeout shorter than the request: the client gave up and retried while its first attempt \
             was still running on the server.",
            "Many concurrent retries of one key, e.g. a burst of duplicate webhook deliveries: past 64 waiting on \
             one node, more answer 409 at once.",
            "A slow database, which keeps the first request, and so its key, busy for longer.",
            "A retry sent to another node behind a load balancer while the first request still runs.",
        ],
        triggering_request: concat!(
            "# Two requests with one key at once: the second waits for the first, and answers 409 if the first\n",
            "# is still running after 5 s (e.g. on a slow database).\n",
            curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#, "signup-43"),
            " &\n",
            curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#, "signup-43"),
            "\nwait"
        ),
        how_to_fix: &[
            Fix {
                description: "Wait the seconds in `Retry-After`, then retry with the same key and the same body: \
                    you get the first request's answer, replayed.",
                request: concat!(
                    "sleep 1\n",
                    curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#, "signup-43")
                ),
            },
            Fix {
                description: "Give the client a timeout longer than the server's (30 s by default, \
                    `--request-timeout-ms`), so that it does not retry requests that are still running.",
                request: r#"curl -s --max-time 35 -X POST {base}/v2/identities.createIdentity \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  -H "Idempotency-Key: signup-44" \
  -d '{"externalId":"user_125"}'"#,
            },
            Fix {
                description: "If it happens often, look at the database: long waits for a connection mean \
                    requests hold their keys longer.",
                request: "curl -s {base}/metrics | grep sigil_database_connection_wait_seconds",
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import { ConflictErrorResponse } from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function createOnce(externalId: string, idempotencyKey: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await unkey.identities.createIdentity(
        { externalId },
        { headers: { "Idempotency-Key": idempotencyKey } },
      );
    } catch (err) {
      const inProgress =
        err instanceof ConflictErrorResponse && err.error.type.endsWith("/request_in_progress");
      if (!inProgress || attempt === 5) throw err;
      // Same key, same body: once the first request is done, the retry gets its answer.
      const seconds = Number(err.headers.get("retry-after") ?? "1");
      await sleep(seconds * 1000 * attempt);
    }
  }
}

console.log(await createOnce("user_123", "signup-7f3c9a2e-user_123"));"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
import time
from unkey.py import Unkey, errors


def create_once(unkey, external_id, idempotency_key, attempts=5):
    for attempt in range(1, attempts + 1):
        try:
            return unkey.identities.create_identity(
                external_id=external_id, http_headers={"Idempotency-Key": idempotency_key}
            )
        except errors.ConflictErrorResponse as e:
            if not e.data.error.type.endswith("/request_in_progress") or attempt == attempts:
                raise
            time.sleep(int(e.headers.get("retry-after", "1")) * attempt)


with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    print(create_once(unkey, "user_123", "signup-7f3c9a2e-user_123"))"#,
            },
        ],
        common_mistakes: &[
            "Retrying with a new key: the retry then runs as a new request, and a create answers 409 \
             `identity_already_exists`.",
            "Handling it like `identity_already_exists`: both are 409 Conflict, and only `error.type` tells them \
             apart. This one must be retried.",
            "On updateIdentity and deleteIdentity the clients declare no 409, so this error arrives as their \
             generic `APIError`: check the status code and the body's `error.type`.",
            "Retrying at once in a tight loop: honour `Retry-After`.",
            "Changing the body between attempts: the same key with another body answers 422 `key_reused`.",
        ],
    }
}

fn request_timeout() -> ErrorDocs {
    ErrorDocs {
        summary: "The request did not complete within the server's timeout.",
        example: ApiError::new(ErrorCode::RequestTimeout, "The request did not complete within 30000 ms.")
            .with_error(ValidationError::new("request", "Timed out").with_fix(RETRY_AFTER_A_TIMEOUT)),
        what_happened: "The request did not finish within the server's timeout (`--request-timeout-ms`, 30 s by \
            default), or its body did not arrive within the read timeout (`--read-timeout-ms`, 10 s). Sigil \
            answered instead of waiting longer. A write that had started runs to its end anyway and records its \
            answer under its `Idempotency-Key`, so whether it took effect is unknown until you retry with that \
            key.",
        common_scenarios: &[
            "A slow or overloaded database, or a PostgreSQL lock held by a long transaction.",
            "A client sending its body slowly: a poor network, or a proxy trickling the body through.",
            "A server run with a short `--request-timeout-ms`.",
            "Bodies close to the size limit on a slow link.",
        ],
        triggering_request: concat!(
            "# Against a server started with `sigil serve --request-timeout-ms 1`, any write slower than 1 ms:\n",
            curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#)
        ),
        how_to_fix: &[
            Fix {
                description: "Retry writes with the same `Idempotency-Key` and body: if the first attempt \
                    committed, the retry replays its answer; if not, the retry runs the write.",
                request: curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#, "signup-45"),
            },
            Fix {
                description: "Retry reads as they are: they change nothing.",
                request: curl!("identities.getIdentity", r#"{"identity":"user_123"}"#),
            },
            Fix {
                description: "Find out what is slow: request durations, and how long work waits for a database \
                    connection.",
                request: "curl -s {base}/metrics | grep -E 'sigil_http_request_duration_seconds|sigil_database_connection_wait_seconds'",
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { randomUUID } from "node:crypto";
import { Unkey } from "@unkey/api";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

// The client retries 5xx with backoff on its own; add 408, and send one Idempotency-Key so that every
// retry is the same request and the write applies at most once.
const { data } = await unkey.identities.createIdentity(
  { externalId: "user_123", meta: { plan: "pro" } },
  { retryCodes: ["408", "5XX"], headers: { "Idempotency-Key": randomUUID() } },
);
console.log(data.identityId);"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
import time
import uuid
from unkey.py import Unkey, errors

idempotency_key = str(uuid.uuid4())
with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    for attempt in range(1, 6):
        try:
            res = unkey.identities.create_identity(
                external_id="user_123", meta={"plan": "pro"}, http_headers={"Idempotency-Key": idempotency_key}
            )
            break
        except errors.APIError as e:
            # createIdentity declares no 408, so it arrives as the generic APIError.
            if e.status_code != 408 or attempt == 5:
                raise
            time.sleep(attempt)
    print(res.data.identity_id)"#,
            },
        ],
        common_mistakes: &[
            "Retrying a write without an `Idempotency-Key`: the first attempt may have committed, so a retried \
             create answers 409 and you cannot tell it from a real duplicate.",
            "Assuming a 408 means nothing happened: a write that started finishes and is recorded.",
            "A client timeout shorter than the server's: the client gives up first, never sees the 408, and its \
             retries race the first attempt (409 `request_in_progress`).",
        ],
    }
}

fn request_body_too_large() -> ErrorDocs {
    ErrorDocs {
        summary: "The body is larger than the server accepts.",
        example: ApiError::body_too_large(4 * 1024 * 1024),
        what_happened: "The body is larger than the server accepts (`--max-body-bytes`, 4 MiB by default), or \
            holds more than 100,000 JSON values. Sigil stopped reading it and ran nothing. No useful body is that \
            large: `meta` may hold at most 1 MiB of JSON and 100 keys.",
        common_scenarios: &[
            "Documents, images or logs stored in `meta` (base64 makes them a third larger).",
            "Huge arrays in `meta`, such as every event of a user, which also pass the 100,000-value limit.",
            "A bulk import packing many identities into one request: each operation takes one identity.",
            "A client or proxy that repeats or pads the body.",
        ],
        triggering_request: r#"# A 5 MB body, over the default limit of 4 MiB:
head -c 5000000 /dev/zero | tr '\0' a | curl -s -X POST {base}/v2/identities.createIdentity \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  --data-binary @-"#,
        how_to_fix: &[
            Fix {
                description: "Keep `meta` small: store large documents elsewhere (object storage, your database) \
                    and keep a reference in `meta`.",
                request: curl!(
                    "identities.createIdentity",
                    r#"{"externalId":"user_123","meta":{"plan":"pro","profile":"https://files.example.com/users/user_123.json"}}"#
                ),
            },
            Fix {
                description: "Send one identity per request. For bulk imports, loop, with one `Idempotency-Key` \
                    per identity so that the import can be re-run.",
                request: r#"for id in user_1 user_2 user_3; do
  curl -s -X POST {base}/v2/identities.createIdentity \
    -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
    -H 'Content-Type: application/json' \
    -H "Idempotency-Key: import-1-$id" \
    -d "{\"externalId\":\"$id\"}"
done"#,
            },
            Fix {
                description: "Check a body's size before sending it; if you run the server and need larger \
                    bodies, raise `--max-body-bytes` (meta stays capped at 1 MiB).",
                request: r#"wc -c < body.json   # at most 4194304 bytes by default
curl -s -X POST {base}/v2/identities.createIdentity \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  --data-binary @body.json"#,
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

const meta = { plan: "pro", profile: "https://files.example.com/users/user_123.json" };
// meta may hold at most 1 MiB of JSON: check before sending instead of handling a 413 or 400.
if (new TextEncoder().encode(JSON.stringify(meta)).length > 1024 * 1024) {
  throw new Error("meta is too large: store the document elsewhere and keep a reference");
}
await unkey.identities.createIdentity({ externalId: "user_123", meta });"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import json
import os
from unkey.py import Unkey

meta = {"plan": "pro", "profile": "https://files.example.com/users/user_123.json"}
# meta may hold at most 1 MiB of JSON: check before sending instead of handling a 413 or 400.
if len(json.dumps(meta).encode()) > 1024 * 1024:
    raise ValueError("meta is too large: store the document elsewhere and keep a reference")
with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    unkey.identities.create_identity(external_id="user_123", meta=meta)"#,
            },
        ],
        common_mistakes: &[
            "Retrying a 413 unchanged: it is refused every time.",
            "Storing secrets or large blobs in `meta`: it is returned to every key that may read the identity.",
            "Pretty-printing large bodies: whitespace counts toward the limit.",
        ],
    }
}

fn route_not_found() -> ErrorDocs {
    ErrorDocs {
        summary: "There is no operation at this path.",
        example: ApiError::new(ErrorCode::RouteNotFound, "There is no route POST /v2/identities.createIdentty."),
        what_happened: "No operation lives at this path. Every API operation is `POST \
            /v2/identities.<operation>` at the server's root: createIdentity, getIdentity, listIdentities, \
            updateIdentity, deleteIdentity and upsertIdentity. Unkey's other operations (keys, APIs, ratelimits) \
            are not part of Sigil.",
        common_scenarios: &[
            "A typo or another case in the operation name (`identities.createidentity`, \
             `identity.createIdentity`).",
            "A client server URL with a path, e.g. `{base}/v2`, so that requests go to `/v2/v2/…`.",
            "An Unkey operation Sigil does not have, such as `keys.createKey` or `ratelimit.limit`.",
            "A link to an error type this server does not emit (`/docs/errors/…`).",
        ],
        triggering_request: curl!("identities.createIdentty", r#"{"externalId":"user_123"}"#),
        how_to_fix: &[
            Fix {
                description: "Use the exact operation name; names are case-sensitive.",
                request: curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#),
            },
            Fix {
                description: "List the routes the server has: `/openapi.json` documents each one.",
                request: "curl -s {base}/openapi.json | jq -r '.paths | keys[]'",
            },
            Fix {
                description: "Point the client's server URL at the origin, without `/v2`: the clients add the \
                    path themselves. Liveness answers at the origin's `/v2/liveness`.",
                request: "curl -s {base}/v2/liveness",
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";

// The origin only: the client adds /v2/identities.… itself.
const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });
const { data } = await unkey.identities.getIdentity({ identity: "user_123" });
console.log(data);"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey

# The origin only: the client adds /v2/identities.… itself.
with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    print(unkey.identities.get_identity(identity="user_123").data)"#,
            },
        ],
        common_mistakes: &[
            "Adding `/v2` to the clients' server URL.",
            "Calling Unkey operations Sigil does not serve: only identities are implemented.",
            "Changing case: `identities.CreateIdentity` is not `identities.createIdentity`.",
        ],
    }
}

fn method_not_allowed() -> ErrorDocs {
    ErrorDocs {
        summary: "The operation exists, but only for `POST`.",
        example: ApiError::new(
            ErrorCode::MethodNotAllowed,
            "/v2/identities.getIdentity does not accept GET; the API uses POST.",
        ),
        what_happened: "The operation exists, but not for this HTTP method. Every API operation is a `POST` with \
            a JSON body, reads included, as in Unkey's v2 API. Only `/`, `/v2/liveness`, `/openapi.json`, \
            `/metrics` and `/docs/errors` answer `GET`.",
        common_scenarios: &[
            "Opening an operation's URL in a browser, which sends `GET`.",
            "A REST habit: `GET /v2/identities.getIdentity?identity=user_123`, or `DELETE` for deleteIdentity.",
            "A redirect that turned a `POST` into a `GET`, e.g. from `http` to `https` at a proxy.",
            "A health check pointed at an operation instead of `/v2/liveness`.",
        ],
        triggering_request: r#"curl -s {base}/v2/identities.getIdentity \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY""#,
        how_to_fix: &[
            Fix {
                description: "Send a `POST`, with the parameters in a JSON body.",
                request: curl!("identities.getIdentity", r#"{"identity":"user_123"}"#),
            },
            Fix { description: "For health checks, `GET /v2/liveness`.", request: "curl -s {base}/v2/liveness" },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"// The Unkey clients always POST; this error comes from hand-written calls.
// Reads are POSTs too: the parameters go in the JSON body, not the query string.
const response = await fetch("{base}/v2/identities.getIdentity", {
  method: "POST",
  headers: {
    Authorization: `Bearer ${process.env.SIGIL_ROOT_KEY}`,
    "Content-Type": "application/json",
  },
  body: JSON.stringify({ identity: "user_123" }),
});
console.log(response.status, await response.json());"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
import httpx

response = httpx.post(
    "{base}/v2/identities.getIdentity",
    headers={"Authorization": f"Bearer {os.environ['SIGIL_ROOT_KEY']}"},
    json={"identity": "user_123"},
)
print(response.status_code, response.json())"#,
            },
        ],
        common_mistakes: &[
            "Putting parameters in the query string: only the JSON body is read.",
            "Following redirects that change `POST` to `GET`: call the server's own URL.",
            "Health checks on an API operation: use `GET /v2/liveness`.",
        ],
    }
}

fn service_unavailable() -> ErrorDocs {
    ErrorDocs {
        summary: "The database did not answer in time; a write may have been stored all the same.",
        example: ApiError::from(StoreError::TimedOut),
        what_happened: "The database did not answer within 5 s, its connection broke, it kept aborting the \
            operation, or (SQLite) its disk is full. Sigil stopped waiting; a write the database was still running \
            may commit after this answer (a full disk or a connection that could not be made stores nothing). \
            Unkey answers 500 here; Sigil answers 503, so clients know a retry can succeed. A write and its \
            `Idempotency-Key` record either both commit or neither does: a retry with the same key replays the \
            first answer or runs the write.",
        common_scenarios: &[
            "PostgreSQL restarting, failing over, or out of reach over the network.",
            "The database out of connections, or overloaded by another workload.",
            "A full disk under the SQLite file (`The database has no room for this write`).",
            "Heavy contention on one row that the database aborted three times in a row.",
        ],
        triggering_request: concat!(
            "# With the database stopped (here PostgreSQL), any operation:\n",
            "sudo systemctl stop postgresql\n",
            curl!("identities.listIdentities", r#"{}"#)
        ),
        how_to_fix: &[
            Fix {
                description: "Retry after a short wait, with exponential backoff; retry writes with the same \
                    `Idempotency-Key` and body, so that a write that did commit is replayed, not repeated.",
                request: concat!(
                    "sleep 2\n",
                    curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#, "signup-46")
                ),
            },
            Fix {
                description: "See what failed: `sigil_database_errors_total` counts failures by kind (`timeout`, \
                    `unavailable`, `storage_full`, `transient`).",
                request: "curl -s {base}/metrics | grep sigil_database_errors",
            },
            Fix {
                description: "Note the request id and find it in the server's log, which has the database's own \
                    error.",
                request: r#"curl -si -X POST {base}/v2/identities.listIdentities \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  -d '{}' | grep -i '^x-request-id'"#,
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { randomUUID } from "node:crypto";
import { Unkey } from "@unkey/api";

// The client retries 5xx with backoff on its own (for up to 10 s by default). Widen that window for
// outages, and send an Idempotency-Key so that a retried write is replayed, never applied twice.
const unkey = new Unkey({
  rootKey: process.env.SIGIL_ROOT_KEY!,
  serverURL: "{base}",
  retryConfig: {
    strategy: "backoff",
    backoff: { initialInterval: 500, maxInterval: 5000, exponent: 1.5, maxElapsedTime: 60000 },
    retryConnectionErrors: true,
  },
});

await unkey.identities.createIdentity(
  { externalId: "user_123", meta: { plan: "pro" } },
  { headers: { "Idempotency-Key": randomUUID() } },
);"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
import uuid
from unkey.py import Unkey
from unkey.py.utils import BackoffStrategy, RetryConfig

# The client retries 5xx with backoff on its own; widen the window (milliseconds) for outages.
retry = RetryConfig("backoff", BackoffStrategy(500, 5000, 1.5, 60000), True)
with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}", retry_config=retry) as unkey:
    unkey.identities.create_identity(
        external_id="user_123", meta={"plan": "pro"}, http_headers={"Idempotency-Key": str(uuid.uuid4())}
    )"#,
            },
        ],
        common_mistakes: &[
            "Retrying writes without an `Idempotency-Key`: the clients' automatic 5xx retries can then repeat a \
             create whose first attempt committed, which answers 409.",
            "Retrying at once and forever: back off, and give up after a bound.",
            "Catching `ServiceUnavailableErrorResponse`: the identities operations declare no 503, so the clients \
             throw their generic `APIError`; check the status code.",
        ],
    }
}

fn overloaded() -> ErrorDocs {
    ErrorDocs {
        summary: "The server was at capacity and refused the request at once.",
        example: ApiError::new(
            ErrorCode::Overloaded,
            "The server is at capacity. Retry after the time in Retry-After.",
        ),
        what_happened: "The server was already working on as many requests as it is configured to \
            (`--max-in-flight`, 1,024 by default), so it refused this one at once instead of queueing it. Nothing \
            ran and nothing was written. The response carries `Retry-After: 1`. Refusing at once keeps answers \
            fast for the requests the server does take, and tells clients to slow down.",
        common_scenarios: &[
            "A traffic burst far above normal: a batch job, migration or backfill without a concurrency limit.",
            "Clients retrying without backoff, which multiplies the load they react to.",
            "A slow database: requests take longer, so more of them are in flight at once.",
            "A `--max-in-flight` set low for the machine.",
            "On SQLite, verifyKey only: the server already counts 500,000 live ratelimit windows (inline limits \
            with invented names and long windows), so a verification that needs a new one is refused until \
            windows end; live ones go on counting.",
        ],
        triggering_request: r#"# 2,000 requests at once; past the server's --max-in-flight (1,024 by default), some answer 503:
seq 2000 | xargs -P 2000 -I{} curl -s -o /dev/null -w '%{http_code}\n' \
  -X POST {base}/v2/identities.listIdentities \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  -d '{"limit":1}' | sort | uniq -c"#,
        how_to_fix: &[
            Fix {
                description: "Wait the seconds in `Retry-After`, then retry; retry writes with the same \
                    `Idempotency-Key`.",
                request: concat!(
                    "sleep 1\n",
                    curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#, "signup-47")
                ),
            },
            Fix {
                description: "Bound your client's concurrency, e.g. 20 workers for a bulk job instead of one \
                    request per item at once.",
                request: r#"printf '%s\n' user_1 user_2 user_3 | xargs -P 20 -I % curl -s -X POST {base}/v2/identities.createIdentity \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: import-1-%' \
  -d '{"externalId":"%"}'"#,
            },
            Fix {
                description: "Watch how many requests are refused; if the machine has room, the operator can \
                    raise `--max-in-flight`.",
                request: r#"curl -s {base}/metrics | grep sigil_http_requests_total | grep 'status="503"'"#,
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";

// The client retries 5xx with backoff on its own (for up to 10 s by default).
const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

// A fixed number of workers, not one request per item at once: a burst past the server's
// capacity is refused with 503.
const queue = ["user_1", "user_2", "user_3"];
async function worker() {
  for (let externalId = queue.shift(); externalId; externalId = queue.shift()) {
    await unkey.identities.createIdentity(
      { externalId },
      { headers: { "Idempotency-Key": `import-1-${externalId}` } },
    );
  }
}
await Promise.all(Array.from({ length: 20 }, worker));"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from concurrent.futures import ThreadPoolExecutor
from unkey.py import Unkey
from unkey.py.utils import BackoffStrategy, RetryConfig

# Retries 5xx with backoff (milliseconds), and at most 20 requests at once.
retry = RetryConfig("backoff", BackoffStrategy(1000, 8000, 2.0, 60000), True)
with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}", retry_config=retry) as unkey:

    def create(external_id):
        return unkey.identities.create_identity(
            external_id=external_id, http_headers={"Idempotency-Key": f"import-1-{external_id}"}
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(create, ["user_1", "user_2", "user_3"]))"#,
            },
        ],
        common_mistakes: &[
            "Retrying at once, without backoff: retries arriving together keep the server at capacity.",
            "Unbounded concurrency in batch jobs.",
            "Assuming every 503 is this one: after `service_unavailable` a write may have committed. Match on \
             `error.type`, or simply always send an `Idempotency-Key` with writes.",
        ],
    }
}

fn unexpected_error() -> ErrorDocs {
    ErrorDocs {
        summary: "Sigil failed unexpectedly (a bug); the log has the details under the request id.",
        example: ApiError::unexpected(anyhow::anyhow!("an example failure")),
        what_happened: "Sigil failed in a way it did not expect: a bug, including a panic in a handler, or data \
            in the database it cannot read. The server keeps serving other requests. The body never holds \
            internal details; the server's log has them under this `requestId`. A write either committed with \
            its answer recorded under its `Idempotency-Key`, or left nothing.",
        common_scenarios: &[
            "A bug in Sigil, such as a panic in a handler.",
            "A database edited by hand, holding rows Sigil cannot read.",
        ],
        triggering_request: concat!(
            "# No request is meant to trigger it: it marks a bug, and can surface on any call, such as:\n",
            curl!("identities.getIdentity", r#"{"identity":"user_123"}"#)
        ),
        how_to_fix: &[
            Fix {
                description: "Retry once, with the same `Idempotency-Key` for writes: a passing failure may not \
                    repeat.",
                request: curl!("identities.createIdentity", r#"{"externalId":"user_123"}"#, "signup-48"),
            },
            Fix {
                description: "Capture the request id, in the body's `meta.requestId` and the `X-Request-Id` \
                    header, and report it with the server's log line for it.",
                request: r#"curl -si -X POST {base}/v2/identities.getIdentity \
  -H "Authorization: Bearer $SIGIL_ROOT_KEY" \
  -H 'Content-Type: application/json' \
  -d '{"identity":"user_123"}' | grep -i '^x-request-id'"#,
            },
            Fix {
                description: "See how often it happens, and on which operation.",
                request: r#"curl -s {base}/metrics | grep sigil_http_requests_total | grep 'status="500"'"#,
            },
        ],
        code_examples: &[
            CodeExample {
                language: Language::TypeScript,
                code: r#"import { Unkey } from "@unkey/api";
import { InternalServerErrorResponse } from "@unkey/api/models/errors";

const unkey = new Unkey({ rootKey: process.env.SIGIL_ROOT_KEY!, serverURL: "{base}" });

try {
  await unkey.identities.getIdentity({ identity: "user_123" });
} catch (err) {
  // Thrown after the client's own retries of 5xx answers.
  if (err instanceof InternalServerErrorResponse) {
    console.error(`Sigil failed; report request ${err.meta.requestId}`);
  }
  throw err;
}"#,
            },
            CodeExample {
                language: Language::Python,
                code: r#"import os
from unkey.py import Unkey, errors

with Unkey(root_key=os.environ["SIGIL_ROOT_KEY"], server_url="{base}") as unkey:
    try:
        unkey.identities.get_identity(identity="user_123")
    except errors.InternalServerErrorResponse as e:
        print(f"Sigil failed; report request {e.data.meta.request_id}")
        raise"#,
            },
        ],
        common_mistakes: &[
            "Retrying forever: a bug usually fails the same way every time.",
            "Reporting without the request id: it is the only link to the server's log line.",
            "Editing the database by hand.",
        ],
    }
}
