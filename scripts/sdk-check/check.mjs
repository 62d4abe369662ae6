// Compatibility check: drives a running Sigil server through the official
// Unkey TypeScript SDK (@unkey/api, pinned in package.json) for all five
// identity operations and every apis.* and keys.* route Sigil serves, each
// success and each error status it can answer. Every response goes through
// the SDK's own zod schemas, so a shape mismatch surfaces as a
// ResponseValidationError (or a generic APIError when status/content-type
// don't match what the SDK declares).
//
// Env: SIGIL_URL (e.g. http://127.0.0.1:7090), SIGIL_ROOT_KEY (all
// permissions), SIGIL_READ_ONLY_KEY and SIGIL_CREATE_ONLY_KEY (identity
// permissions only), SIGIL_API_READER_KEY (only api.*.read_api),
// SIGIL_KEY_READER_KEY (only api.*.read_key) and SIGIL_VERIFIER_KEY (only
// api.*.verify_key).
// Output: one "ok  <step>" line per passing step, failure details otherwise,
// and a final "N passed, M failed" line. Exit status 1 if anything failed.

import { Unkey } from "@unkey/api";
import * as errors from "@unkey/api/models/errors";

const serverURL = (process.env.SIGIL_URL ?? "").replace(/\/+$/, "");
const rootKey = process.env.SIGIL_ROOT_KEY ?? "";
if (!serverURL || !rootKey) {
  console.error("check.mjs: set SIGIL_URL and SIGIL_ROOT_KEY");
  process.exit(2);
}

const unkey = new Unkey({
  rootKey,
  serverURL,
  // Fail fast: a compatibility check must not hide 5XX answers behind retries.
  retryConfig: { strategy: "none" },
  timeoutMs: 10_000,
});

// --- tiny harness -----------------------------------------------------------

let passed = 0;
let failed = 0;

class CheckFailure extends Error {
  constructor(message, cause) {
    super(message);
    this.name = "CheckFailure";
    if (cause !== undefined) this.cause = cause;
  }
}

function assert(condition, message) {
  if (!condition) throw new CheckFailure(message);
}

function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  assert(a === e, `${what}: expected ${e}, got ${a}`);
}

function className(err) {
  return err?.constructor?.name ?? err?.name ?? typeof err;
}

function describeError(err, indent = "    ") {
  const lines = [];
  const push = (label, value) => {
    if (value === undefined || value === null || value === "") return;
    const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    lines.push(`${indent}${label}: ${text.replace(/\n/g, `\n${indent}  `)}`);
  };
  push("class", className(err));
  push("message", err?.message ?? String(err));
  if (err instanceof errors.UnkeyError) {
    push("http status", String(err.statusCode));
    push("content-type", err.contentType);
    push("raw body", err.body);
  }
  if (err instanceof errors.ResponseValidationError || err instanceof errors.SDKValidationError) {
    push("validation", err.pretty());
    push("raw value", err.rawValue);
  }
  if (err?.cause !== undefined) {
    const cause = err.cause;
    if (cause instanceof Error) {
      lines.push(`${indent}cause:`);
      lines.push(describeError(cause, `${indent}  `));
    } else {
      push("cause", cause);
    }
  }
  return lines.join("\n");
}

// `fn` may return a short note, printed indented under the "ok" line.
async function step(name, fn) {
  try {
    const note = await fn();
    passed += 1;
    console.log(`ok  ${name}`);
    if (note) console.log(`    (${note})`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}`);
    console.log(describeError(err));
  }
}

// Runs `call`, which must throw an instance of `ErrorClass` with `status`,
// and, when `type` is given, an error.type URL ending in `/<type>` (e.g.
// "unkey/data/key_not_found"). Anything else (success, a validation error,
// a generic APIError) fails.
async function expectTypedError(call, ErrorClass, status, type) {
  let result;
  try {
    result = await call();
  } catch (err) {
    if (!(err instanceof ErrorClass)) {
      throw new CheckFailure(
        `expected the SDK's typed ${ErrorClass.name} (HTTP ${status}), got ${className(err)}`,
        err,
      );
    }
    assertEqual(err.statusCode, status, "HTTP status");
    assertEqual(err.error?.status, status, "error.status");
    for (const field of ["title", "type", "detail"]) {
      assert(typeof err.error?.[field] === "string" && err.error[field] !== "", `error.${field} must be a non-empty string`);
    }
    assert(typeof err.meta?.requestId === "string" && err.meta.requestId !== "", "meta.requestId must be a non-empty string");
    if (type !== undefined) {
      const got = `${err.error.type} (${err.error.detail})`;
      assert(err.error.type.endsWith(`/${type}`), `error.type: expected .../${type}, got ${got}`);
    }
    return err;
  }
  throw new CheckFailure(`expected ${ErrorClass.name} (HTTP ${status}), but the call succeeded: ${JSON.stringify(result)}`);
}

function assertMeta(res) {
  assert(typeof res?.meta?.requestId === "string" && res.meta.requestId !== "", "meta.requestId must be a non-empty string");
}

// Ratelimits come back with server-assigned ids; compare the rest, order-insensitively.
function assertRatelimits(actual, expected, what) {
  assert(Array.isArray(actual), `${what}: ratelimits must be an array, got ${JSON.stringify(actual)}`);
  for (const rl of actual) {
    assert(typeof rl.id === "string" && rl.id !== "", `${what}: every ratelimit needs a non-empty id`);
  }
  const strip = (list) =>
    list
      .map(({ name, limit, duration, autoApply }) => ({ name, limit, duration, autoApply }))
      .sort((a, b) => a.name.localeCompare(b.name));
  assertEqual(strip(actual), strip(expected), `${what} ratelimits`);
}

// --- the check --------------------------------------------------------------

const runTag = `sdkcheck-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const externalA = `${runTag}-a`;
const externalB = `${runTag}-b`;
const missing = `${runTag}-does-not-exist`;

const initialMeta = { plan: "pro" };
const initialRatelimits = [{ name: "requests", limit: 10, duration: 60000, autoApply: true }];
const updatedMeta = { plan: "enterprise", seats: 5, tags: ["a", "b"] };
const updatedRatelimits = [
  { name: "requests", limit: 100, duration: 60000, autoApply: true },
  // autoApply omitted: the SDK's outbound schema fills in its default (false).
  { name: "tokens", limit: 5000, duration: 3600000 },
];
const updatedRatelimitsExpected = updatedRatelimits.map((rl) => ({ autoApply: false, ...rl }));

let idA;
let idB;

console.log(`# @unkey/api against ${serverURL} (run ${runTag})`);

await step("createIdentity", async () => {
  const res = await unkey.identities.createIdentity({
    externalId: externalA,
    meta: initialMeta,
    ratelimits: initialRatelimits,
  });
  assertMeta(res);
  assert(typeof res.data?.identityId === "string" && res.data.identityId !== "", "data.identityId must be a non-empty string");
  idA = res.data.identityId;
});

await step("createIdentity duplicate -> 409 ConflictErrorResponse", async () => {
  const err = await expectTypedError(
    () => unkey.identities.createIdentity({ externalId: externalA }),
    errors.ConflictErrorResponse,
    409,
  );
  return `threw ${className(err)}: ${err.error.title}`;
});

await step("getIdentity by externalId", async () => {
  assert(idA, "prerequisite failed: no identity id from createIdentity");
  const res = await unkey.identities.getIdentity({ identity: externalA });
  assertMeta(res);
  assertEqual(res.data.id, idA, "data.id");
  assertEqual(res.data.externalId, externalA, "data.externalId");
  assertEqual(res.data.meta, initialMeta, "data.meta");
  assertRatelimits(res.data.ratelimits, initialRatelimits, "data");
});

await step("getIdentity by identityId", async () => {
  assert(idA, "prerequisite failed: no identity id from createIdentity");
  const res = await unkey.identities.getIdentity({ identity: idA });
  assertMeta(res);
  assertEqual(res.data.id, idA, "data.id");
  assertEqual(res.data.externalId, externalA, "data.externalId");
  assertEqual(res.data.meta, initialMeta, "data.meta");
  assertRatelimits(res.data.ratelimits, initialRatelimits, "data");
});

await step("createIdentity second (no meta, no ratelimits)", async () => {
  const res = await unkey.identities.createIdentity({ externalId: externalB });
  assertMeta(res);
  assert(typeof res.data?.identityId === "string" && res.data.identityId !== "", "data.identityId must be a non-empty string");
  assert(res.data.identityId !== idA, "second identity must get a different id");
  idB = res.data.identityId;
});

await step("listIdentities limit 1, iterate pages", async () => {
  assert(idA && idB, "prerequisite failed: both identities must exist");
  // `search` narrows the listing to this run's identities so the page count is known.
  const iterator = await unkey.identities.listIdentities({ limit: 1, search: runTag });
  const pages = [];
  for await (const page of iterator) {
    pages.push(page);
    assert(pages.length <= 10, "more than 10 pages for 2 identities: pagination does not terminate");
  }
  assert(pages.length >= 2, `expected at least 2 pages, got ${pages.length}`);
  const seen = [];
  pages.forEach((page, index) => {
    const body = page.result;
    assertMeta(body);
    assert(Array.isArray(body.data) && body.data.length <= 1, `page ${index + 1}: expected at most 1 item, got ${body.data?.length}`);
    const last = index === pages.length - 1;
    assertEqual(body.pagination.hasMore, !last, `page ${index + 1} pagination.hasMore`);
    for (const identity of body.data) seen.push(identity);
  });
  const ids = seen.map((identity) => identity.id).sort();
  assertEqual(ids, [idA, idB].sort(), "identity ids across pages");
  const a = seen.find((identity) => identity.id === idA);
  assertEqual(a.externalId, externalA, "listed externalId");
  assertEqual(a.meta, initialMeta, "listed meta");
  assertRatelimits(a.ratelimits, initialRatelimits, "listed");
  return `${pages.length} pages via the SDK's async iterator`;
});

await step("updateIdentity meta and ratelimits", async () => {
  assert(idA, "prerequisite failed: no identity id from createIdentity");
  const res = await unkey.identities.updateIdentity({
    identity: externalA,
    meta: updatedMeta,
    ratelimits: updatedRatelimits,
  });
  assertMeta(res);
  assertEqual(res.data.id, idA, "data.id");
  assertEqual(res.data.externalId, externalA, "data.externalId");
  assertEqual(res.data.meta, updatedMeta, "data.meta");
  assertRatelimits(res.data.ratelimits, updatedRatelimitsExpected, "data");
});

await step("getIdentity after update", async () => {
  assert(idA, "prerequisite failed: no identity id from createIdentity");
  const res = await unkey.identities.getIdentity({ identity: idA });
  assertMeta(res);
  assertEqual(res.data.meta, updatedMeta, "data.meta");
  assertRatelimits(res.data.ratelimits, updatedRatelimitsExpected, "data");
});

await step("getIdentity missing -> 404 NotFoundErrorResponse", async () => {
  const err = await expectTypedError(
    () => unkey.identities.getIdentity({ identity: missing }),
    errors.NotFoundErrorResponse,
    404,
  );
  return `threw ${className(err)}: ${err.error.title}`;
});

await step("deleteIdentity", async () => {
  assert(idA, "prerequisite failed: no identity id from createIdentity");
  const res = await unkey.identities.deleteIdentity({ identity: idA });
  assertMeta(res);
});

await step("getIdentity after delete -> 404 NotFoundErrorResponse", async () => {
  assert(idA, "prerequisite failed: no identity id from createIdentity");
  const err = await expectTypedError(
    () => unkey.identities.getIdentity({ identity: idA }),
    errors.NotFoundErrorResponse,
    404,
  );
  return `threw ${className(err)}: ${err.error.title}`;
});

// @unkey/api 2.5.1 types deleteIdentity's errors only when they come as application/problem+json, as
// Unkey's OpenAPI document declares them; Sigil sends each operation's declared media type.
await step("deleteIdentity missing -> 404 NotFoundErrorResponse", async () => {
  const err = await expectTypedError(
    () => unkey.identities.deleteIdentity({ identity: missing }),
    errors.NotFoundErrorResponse,
    404,
  );
  return `threw ${className(err)}: ${err.error.title}`;
});

// Every error status each operation can answer, each as the SDK's typed error class.
const stranger = new Unkey({ rootKey: "not_a_root_key", serverURL, retryConfig: { strategy: "none" } });
const readOnly = new Unkey({ rootKey: process.env.SIGIL_READ_ONLY_KEY ?? "", serverURL, retryConfig: { strategy: "none" } });
const createOnly = new Unkey({ rootKey: process.env.SIGIL_CREATE_ONLY_KEY ?? "", serverURL, retryConfig: { strategy: "none" } });
const operations = {
  createIdentity: { valid: { externalId: "typed_errors" }, invalid: { externalId: "" }, deniedTo: readOnly },
  getIdentity: { valid: { identity: "typed_errors" }, invalid: { identity: "" }, deniedTo: createOnly },
  listIdentities: { valid: { limit: 10 }, invalid: { limit: 0 }, deniedTo: createOnly },
  updateIdentity: { valid: { identity: "typed_errors", meta: {} }, invalid: { identity: "" }, deniedTo: readOnly },
  deleteIdentity: { valid: { identity: "typed_errors" }, invalid: { identity: "" }, deniedTo: readOnly },
};
for (const [operation, { valid, invalid, deniedTo }] of Object.entries(operations)) {
  await step(`${operation} invalid -> 400 BadRequestErrorResponse`, async () => {
    await expectTypedError(() => unkey.identities[operation](invalid), errors.BadRequestErrorResponse, 400);
  });
  await step(`${operation} unknown key -> 401 UnauthorizedErrorResponse`, async () => {
    await expectTypedError(() => stranger.identities[operation](valid), errors.UnauthorizedErrorResponse, 401);
  });
  await step(`${operation} without permission -> 403 ForbiddenErrorResponse`, async () => {
    await expectTypedError(() => deniedTo.identities[operation](valid), errors.ForbiddenErrorResponse, 403);
  });
}
for (const operation of ["getIdentity", "updateIdentity"]) {
  await step(`${operation} missing -> 404 NotFoundErrorResponse`, async () => {
    await expectTypedError(() => unkey.identities[operation](operations[operation].valid), errors.NotFoundErrorResponse, 404);
  });
}

await step("deleteIdentity second (cleanup, by externalId)", async () => {
  assert(idB, "prerequisite failed: no id for the second identity");
  const res = await unkey.identities.deleteIdentity({ identity: externalB });
  assertMeta(res);
});

// --- APIs and keys ---------------------------------------------------------
// One block per route, each step named after the SDK call it makes
// (`apis.createApi`, `keys.createKey`, ...), so grepping for an operation finds
// its success and its error checks. Every error step asserts the SDK's typed
// class, the HTTP status and the trailing path of error.type.

// A root key holding only `api.*.read_api`, and one holding only `api.*.read_key`.
const apiReader = new Unkey({ rootKey: process.env.SIGIL_API_READER_KEY ?? "", serverURL, retryConfig: { strategy: "none" } });
const keyReader = new Unkey({ rootKey: process.env.SIGIL_KEY_READER_KEY ?? "", serverURL, retryConfig: { strategy: "none" } });

const INVALID_INPUT = "unkey/application/invalid_input";
const UNKNOWN_ROOT_KEY = "unkey/authentication/key_not_found";
const NO_PERMISSION = "unkey/authorization/insufficient_permissions";
const API_NOT_FOUND = "unkey/data/api_not_found";
const KEY_NOT_FOUND = "unkey/data/key_not_found";

const missingApi = "api_missing_one";
const missingKey = "key_missing_one";
const keyOwner = `${runTag}-key-owner`;
const keyMeta = { plan: "pro" };
const keyRatelimits = [{ name: "requests", limit: 10, duration: 1000, autoApply: true }];

let apiId; // the API the key checks run in
let keyId; // a key created with every field Sigil supports
let plaintext;

function assertKeyId(value, what) {
  assert(typeof value === "string" && value.startsWith("key_"), `${what}: expected a key_… id, got ${JSON.stringify(value)}`);
}

// --- apis.createApi

await step("apis.createApi", async () => {
  const res = await unkey.apis.createApi({ name: "sdk-check" });
  assertMeta(res);
  apiId = res.data.apiId;
  assert(typeof apiId === "string" && apiId.startsWith("api_"), `data.apiId: ${apiId}`);
});
await step("apis.createApi name of 2 characters -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.createApi({ name: "ab" }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("apis.createApi unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.apis.createApi({ name: "denied" }), errors.UnauthorizedErrorResponse, 401, UNKNOWN_ROOT_KEY);
});
await step("apis.createApi without create_api -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(() => apiReader.apis.createApi({ name: "denied" }), errors.ForbiddenErrorResponse, 403, NO_PERMISSION);
});

// --- apis.getApi

await step("apis.getApi", async () => {
  const res = await unkey.apis.getApi({ apiId });
  assertMeta(res);
  assertEqual(res.data, { id: apiId, name: "sdk-check" }, "data");
});
await step("apis.getApi with only read_api", async () => {
  assertEqual((await apiReader.apis.getApi({ apiId })).data.id, apiId, "data.id");
});
await step("apis.getApi empty apiId -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.getApi({ apiId: "" }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("apis.getApi unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.apis.getApi({ apiId }), errors.UnauthorizedErrorResponse, 401, UNKNOWN_ROOT_KEY);
});
await step("apis.getApi without read_api -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(() => keyReader.apis.getApi({ apiId }), errors.ForbiddenErrorResponse, 403, NO_PERMISSION);
});
// The permission is checked before the lookup: a key without it learns nothing of which APIs exist.
await step("apis.getApi missing API without read_api -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(() => keyReader.apis.getApi({ apiId: missingApi }), errors.ForbiddenErrorResponse, 403, NO_PERMISSION);
});
await step("apis.getApi missing API -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.getApi({ apiId: missingApi }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});

// --- keys.createKey

await step("keys.createKey with prefix, name, a new externalId, meta, credits and ratelimits", async () => {
  const res = await unkey.keys.createKey({
    apiId,
    prefix: "sdk",
    name: "sdk-check",
    externalId: keyOwner,
    meta: keyMeta,
    credits: { remaining: 10 },
    ratelimits: keyRatelimits,
  });
  assertMeta(res);
  keyId = res.data.keyId;
  plaintext = res.data.key;
  assertKeyId(keyId, "data.keyId");
  assert(typeof plaintext === "string" && plaintext.startsWith("sdk_") && plaintext.length > "sdk_".length + 16,
    `data.key must be "sdk_" and the random part, got ${JSON.stringify(plaintext)}`);
});
await step("keys.createKey with only apiId (no prefix)", async () => {
  const res = await unkey.keys.createKey({ apiId });
  assertMeta(res);
  assertKeyId(res.data.keyId, "data.keyId");
  assert(res.data.keyId !== keyId, "a second key must get a different id");
  assert(typeof res.data.key === "string" && res.data.key.length >= 16 && !res.data.key.includes("_"),
    `data.key without a prefix must be the bare random part, got ${JSON.stringify(res.data.key)}`);
});
await step("keys.createKey byteLength 5 -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.createKey({ apiId, byteLength: 5 }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("keys.createKey with roles -> 400 BadRequestErrorResponse (not supported)", async () => {
  const err = await expectTypedError(
    () => unkey.keys.createKey({ apiId, roles: ["admin"] }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
  const detail = JSON.stringify(err.error.detail);
  assert(/not supported/i.test(err.error.detail), `error.detail must say roles are not supported, got ${detail}`);
  return err.error.detail;
});
await step("keys.createKey monthly refill without refillDay -> 400 BadRequestErrorResponse", async () => {
  const err = await expectTypedError(
    () => unkey.keys.createKey({ apiId, credits: { remaining: 5, refill: { interval: "monthly", amount: 5 } } }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
  assertEqual(err.error.detail, "`refillDay` must be provided when the refill interval is `monthly`.", "error.detail");
});
await step("keys.createKey unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.keys.createKey({ apiId }), errors.UnauthorizedErrorResponse, 401, UNKNOWN_ROOT_KEY);
});
// Without create_key the answer is the 404 of a missing API, as Unkey masks it.
await step("keys.createKey without create_key -> 404 NotFoundErrorResponse (masked)", async () => {
  await expectTypedError(() => apiReader.keys.createKey({ apiId }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});
await step("keys.createKey in a missing API -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.createKey({ apiId: missingApi }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});

// --- keys.getKey

await step("keys.getKey", async () => {
  assert(keyId, "prerequisite failed: no key from keys.createKey");
  const res = await unkey.keys.getKey({ keyId });
  assertMeta(res);
  const key = res.data;
  assertEqual(key.keyId, keyId, "data.keyId");
  assert(key.start.startsWith("sdk_") && plaintext.startsWith(key.start), `data.start ${key.start} must begin the key`);
  assertEqual(key.name, "sdk-check", "data.name");
  assertEqual(key.enabled, true, "data.enabled");
  assert(Number.isInteger(key.createdAt) && key.createdAt > 0, `data.createdAt: ${key.createdAt}`);
  assertEqual(key.meta, keyMeta, "data.meta");
  assertEqual(key.credits, { remaining: 10 }, "data.credits");
  assertEqual(key.identity?.externalId, keyOwner, "data.identity.externalId");
  assert(typeof key.identity?.id === "string" && key.identity.id.startsWith("id_"), `data.identity.id: ${key.identity?.id}`);
  assertRatelimits(key.ratelimits, keyRatelimits, "data");
  assertEqual(key.plaintext, undefined, "data.plaintext");
});
await step("keys.getKey empty keyId -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.getKey({ keyId: "" }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("keys.getKey unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.keys.getKey({ keyId }), errors.UnauthorizedErrorResponse, 401, UNKNOWN_ROOT_KEY);
});
await step("keys.getKey without read_key -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(() => apiReader.keys.getKey({ keyId }), errors.ForbiddenErrorResponse, 403, NO_PERMISSION);
});
await step("keys.getKey missing key -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.getKey({ keyId: missingKey }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});
// The key is looked up before the permission is checked.
await step("keys.getKey missing key without read_key -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => apiReader.keys.getKey({ keyId: missingKey }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});

// --- keys.whoami

await step("keys.whoami by the plaintext key", async () => {
  assert(plaintext, "prerequisite failed: no key from keys.createKey");
  const res = await unkey.keys.whoami({ key: plaintext });
  assertMeta(res);
  assertEqual(res.data.keyId, keyId, "data.keyId");
  assertEqual(res.data.name, "sdk-check", "data.name");
  assertEqual(res.data.meta, keyMeta, "data.meta");
  assertEqual(res.data.credits, { remaining: 10 }, "data.credits");
  assertEqual(res.data.identity?.externalId, keyOwner, "data.identity.externalId");
  assertEqual(res.data.plaintext, undefined, "data.plaintext");
});
await step("keys.whoami with only read_key", async () => {
  assertEqual((await keyReader.keys.whoami({ key: plaintext })).data.keyId, keyId, "data.keyId");
});
await step("keys.whoami empty key -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.whoami({ key: "" }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("keys.whoami unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.keys.whoami({ key: plaintext }), errors.UnauthorizedErrorResponse, 401, UNKNOWN_ROOT_KEY);
});
// Without read_key the answer is the 404 of an unknown key, as Unkey masks it.
await step("keys.whoami without read_key -> 404 NotFoundErrorResponse (masked)", async () => {
  await expectTypedError(() => apiReader.keys.whoami({ key: plaintext }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});
await step("keys.whoami unknown value -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.whoami({ key: "sdk_not_a_key" }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});

// --- apis.listKeys (in an API of its own, so the key count is known)

let listApiId;
const listOwner = `${runTag}-list-owner`;
const listed = { owned: [], all: [] };

// Every page of `request` through the SDK's async iterator, each page's body checked.
async function listPages(request) {
  const pages = [];
  for await (const page of await unkey.apis.listKeys(request)) {
    pages.push(page.result);
    assert(pages.length <= 10, "more than 10 pages: pagination does not terminate");
  }
  pages.forEach((body, index) => {
    assertMeta(body);
    assert(Array.isArray(body.data), `page ${index + 1}: data must be an array`);
    const last = index === pages.length - 1;
    assertEqual(body.pagination.hasMore, !last, `page ${index + 1} pagination.hasMore`);
    assert(last || (typeof body.pagination.cursor === "string" && body.pagination.cursor !== ""),
      `page ${index + 1}: pagination.cursor must be set while hasMore`);
  });
  return pages;
}

await step("apis.listKeys setup: an API with 3 keys, 2 of one externalId", async () => {
  listApiId = (await unkey.apis.createApi({ name: "sdk-check-list" })).data.apiId;
  for (const externalId of [listOwner, listOwner, undefined]) {
    const res = await unkey.keys.createKey({ apiId: listApiId, prefix: "lst", externalId });
    listed.all.push(res.data.keyId);
    if (externalId) listed.owned.push(res.data.keyId);
  }
});
await step("apis.listKeys limit 1, iterate pages", async () => {
  assert(listed.all.length === 3, "prerequisite failed: the 3 keys were not created");
  const pages = await listPages({ apiId: listApiId, limit: 1 });
  assertEqual(pages.length, 3, "pages for 3 keys at limit 1");
  pages.forEach((body, index) => assertEqual(body.data.length, 1, `page ${index + 1}: keys on the page`));
  const keys = pages.flatMap((body) => body.data);
  const ids = keys.map((key) => key.keyId);
  assertEqual([...ids].sort(), [...listed.all].sort(), "key ids across pages");
  assertEqual(ids, [...ids].sort(), "key ids in id order");
  for (const key of keys) {
    assert(key.start.startsWith("lst_"), `data[].start ${key.start}`);
    const owner = listed.owned.includes(key.keyId) ? listOwner : undefined;
    assertEqual(key.identity?.externalId, owner, `${key.keyId} identity.externalId`);
  }
  return `${pages.length} pages via the SDK's async iterator`;
});
await step("apis.listKeys externalId filter, limit 1", async () => {
  const pages = await listPages({ apiId: listApiId, limit: 1, externalId: listOwner });
  const keys = pages.flatMap((body) => body.data);
  assertEqual(keys.map((key) => key.keyId).sort(), [...listed.owned].sort(), "key ids of the externalId");
  for (const key of keys) assertEqual(key.identity?.externalId, listOwner, `${key.keyId} identity.externalId`);
  return `${pages.length} pages`;
});
await step("apis.listKeys externalId of nobody -> empty page", async () => {
  const pages = await listPages({ apiId: listApiId, externalId: `${runTag}-nobody` });
  assertEqual(pages.length, 1, "pages");
  assertEqual(pages[0].data, [], "data");
});
await step("apis.listKeys limit 0 -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.listKeys({ apiId: listApiId, limit: 0 }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("apis.listKeys unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.apis.listKeys({ apiId: listApiId }), errors.UnauthorizedErrorResponse, 401, UNKNOWN_ROOT_KEY);
});
// listKeys needs read_key and read_api; without either the answer is the 404 of a missing API.
await step("apis.listKeys without read_key -> 404 NotFoundErrorResponse (masked)", async () => {
  await expectTypedError(() => apiReader.apis.listKeys({ apiId: listApiId }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});
await step("apis.listKeys without read_api -> 404 NotFoundErrorResponse (masked)", async () => {
  await expectTypedError(() => keyReader.apis.listKeys({ apiId: listApiId }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});
await step("apis.listKeys missing API -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.listKeys({ apiId: missingApi }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});

// --- keys.deleteKey

await step("keys.deleteKey empty keyId -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.deleteKey({ keyId: "" }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("keys.deleteKey unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.keys.deleteKey({ keyId }), errors.UnauthorizedErrorResponse, 401, UNKNOWN_ROOT_KEY);
});
await step("keys.deleteKey without delete_key -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(() => apiReader.keys.deleteKey({ keyId }), errors.ForbiddenErrorResponse, 403, NO_PERMISSION);
});
await step("keys.deleteKey missing key -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.deleteKey({ keyId: missingKey }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});
await step("keys.deleteKey (soft)", async () => {
  assert(keyId, "prerequisite failed: no key from keys.createKey");
  const res = await unkey.keys.deleteKey({ keyId });
  assertMeta(res);
  assertEqual(res.data, {}, "data");
});
await step("keys.getKey soft-deleted key -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.getKey({ keyId }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});
await step("keys.whoami soft-deleted key -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.whoami({ key: plaintext }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});
await step("keys.deleteKey again -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.deleteKey({ keyId }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});
await step("keys.deleteKey keeps the key's identity", async () => {
  assertEqual((await unkey.identities.getIdentity({ identity: keyOwner })).data.externalId, keyOwner, "data.externalId");
});
let permanentKey;
await step("keys.deleteKey permanent", async () => {
  const created = await unkey.keys.createKey({ apiId, prefix: "sdk" });
  permanentKey = created.data;
  const res = await unkey.keys.deleteKey({ keyId: permanentKey.keyId, permanent: true });
  assertMeta(res);
  assertEqual(res.data, {}, "data");
});
await step("keys.getKey permanently deleted key -> 404 NotFoundErrorResponse", async () => {
  assert(permanentKey, "prerequisite failed: no permanently deleted key");
  await expectTypedError(() => unkey.keys.getKey({ keyId: permanentKey.keyId }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});
await step("keys.whoami permanently deleted key -> 404 NotFoundErrorResponse", async () => {
  assert(permanentKey, "prerequisite failed: no permanently deleted key");
  await expectTypedError(() => unkey.keys.whoami({ key: permanentKey.key }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});
await step("keys.deleteKey permanent again -> 404 NotFoundErrorResponse", async () => {
  assert(permanentKey, "prerequisite failed: no permanently deleted key");
  await expectTypedError(
    () => unkey.keys.deleteKey({ keyId: permanentKey.keyId, permanent: true }),
    errors.NotFoundErrorResponse,
    404,
    KEY_NOT_FOUND,
  );
});

// --- apis.deleteApi

await step("apis.deleteApi empty apiId -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.deleteApi({ apiId: "" }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("apis.deleteApi unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.apis.deleteApi({ apiId }), errors.UnauthorizedErrorResponse, 401, UNKNOWN_ROOT_KEY);
});
await step("apis.deleteApi without delete_api -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(() => apiReader.apis.deleteApi({ apiId }), errors.ForbiddenErrorResponse, 403, NO_PERMISSION);
});
await step("apis.deleteApi missing API -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.deleteApi({ apiId: missingApi }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});
await step("apis.deleteApi", async () => {
  assert(apiId && listApiId, "prerequisite failed: no API from apis.createApi");
  for (const id of [apiId, listApiId]) {
    const res = await unkey.apis.deleteApi({ apiId: id });
    assertMeta(res);
    assertEqual(res.data, {}, "data");
  }
});
await step("apis.getApi deleted API -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.getApi({ apiId }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});
await step("apis.deleteApi again -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.deleteApi({ apiId }), errors.NotFoundErrorResponse, 404, API_NOT_FOUND);
});
await step("keys.getKey of a deleted API's key -> 404 NotFoundErrorResponse", async () => {
  assert(listed.all.length > 0, "prerequisite failed: no keys in the listing API");
  await expectTypedError(() => unkey.keys.getKey({ keyId: listed.all[0] }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});

// === keys.updateKey and keys.updateCredits ==================================
// Written from the spec digest (§4.2, §4.5) while Sigil's two routes were
// being built, so kept apart: a Sigil without them fails every step here with
// 404 sigil/request/route_not_found (the 404 steps too, since they assert
// error.type). Everything they need is set up inside this block, in an API of
// its own.

let updateApiId;
let updateKeyId;
const updateOwnerA = `${runTag}-update-a`;
const updateOwnerB = `${runTag}-update-b`;

async function currentKey(id) {
  return (await unkey.keys.getKey({ keyId: id })).data;
}

await step("keys.updateKey setup: an API and a key with every field", async () => {
  updateApiId = (await unkey.apis.createApi({ name: "sdk-check-update" })).data.apiId;
  const res = await unkey.keys.createKey({
    apiId: updateApiId,
    prefix: "upd",
    name: "before",
    externalId: updateOwnerA,
    meta: { plan: "free" },
    credits: { remaining: 5 },
    ratelimits: [{ name: "requests", limit: 10, duration: 1000, autoApply: true }],
  });
  updateKeyId = res.data.keyId;
});

// --- keys.updateKey

await step("keys.updateKey name, meta, externalId, credits, ratelimits, enabled", async () => {
  assert(updateKeyId, "prerequisite failed: no key to update");
  const before = await currentKey(updateKeyId);
  const ratelimits = [
    { name: "requests", limit: 20, duration: 1000, autoApply: true },
    { name: "tokens", limit: 500, duration: 60000, autoApply: false },
  ];
  const res = await unkey.keys.updateKey({
    keyId: updateKeyId,
    name: "after",
    meta: { plan: "pro", seats: 3 },
    externalId: updateOwnerB,
    credits: { remaining: 50, refill: { interval: "daily", amount: 50 } },
    ratelimits,
    enabled: false,
  });
  assertMeta(res);
  const key = await currentKey(updateKeyId);
  assertEqual(key.name, "after", "getKey name");
  assertEqual(key.meta, { plan: "pro", seats: 3 }, "getKey meta");
  assertEqual(key.identity?.externalId, updateOwnerB, "getKey identity.externalId");
  assertEqual(key.credits, { remaining: 50, refill: { interval: "daily", amount: 50 } }, "getKey credits");
  assertEqual(key.enabled, false, "getKey enabled");
  assertRatelimits(key.ratelimits, ratelimits, "getKey");
  // A ratelimit kept by name is updated in place: its id stays.
  const idOf = (k) => k.ratelimits?.find((rl) => rl.name === "requests")?.id;
  assertEqual(idOf(key), idOf(before), "id of the kept 'requests' ratelimit");
});
await step("keys.updateKey leaves absent fields unchanged", async () => {
  assert(updateKeyId, "prerequisite failed: no key to update");
  assertMeta(await unkey.keys.updateKey({ keyId: updateKeyId, enabled: true }));
  const key = await currentKey(updateKeyId);
  assertEqual(key.enabled, true, "getKey enabled");
  assertEqual(key.name, "after", "getKey name");
  assertEqual(key.meta, { plan: "pro", seats: 3 }, "getKey meta");
  assertEqual(key.identity?.externalId, updateOwnerB, "getKey identity.externalId");
  assertEqual(key.credits, { remaining: 50, refill: { interval: "daily", amount: 50 } }, "getKey credits");
  assertEqual(key.ratelimits?.length, 2, "getKey ratelimits count");
});
await step("keys.updateKey credits.refill null clears only the refill", async () => {
  assert(updateKeyId, "prerequisite failed: no key to update");
  assertMeta(await unkey.keys.updateKey({ keyId: updateKeyId, credits: { refill: null } }));
  assertEqual((await currentKey(updateKeyId)).credits, { remaining: 50 }, "getKey credits");
});
await step("keys.updateKey null clears name, meta, externalId, credits; [] clears ratelimits", async () => {
  assert(updateKeyId, "prerequisite failed: no key to update");
  assertMeta(await unkey.keys.updateKey({
    keyId: updateKeyId,
    name: null,
    meta: null,
    externalId: null,
    credits: null,
    ratelimits: [],
  }));
  const key = await currentKey(updateKeyId);
  assertEqual(key.name, undefined, "getKey name");
  assertEqual(key.meta, undefined, "getKey meta");
  assertEqual(key.identity, undefined, "getKey identity");
  assertEqual(key.credits, undefined, "getKey credits");
  assertEqual(key.ratelimits ?? [], [], "getKey ratelimits");
  // Unlinking keeps the identity.
  assertEqual((await unkey.identities.getIdentity({ identity: updateOwnerB })).data.externalId, updateOwnerB, "identity kept");
});
await step("keys.updateKey daily refill with refillDay -> 400 BadRequestErrorResponse", async () => {
  const err = await expectTypedError(
    () => unkey.keys.updateKey({
      keyId: updateKeyId,
      credits: { remaining: 5, refill: { interval: "daily", amount: 5, refillDay: 3 } },
    }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
  assertEqual(err.error.detail, "`refillDay` must not be provided when the refill interval is `daily`.", "error.detail");
});
await step("keys.updateKey monthly refill without refillDay -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(
    () => unkey.keys.updateKey({ keyId: updateKeyId, credits: { remaining: 5, refill: { interval: "monthly", amount: 5 } } }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
});
await step("keys.updateKey empty keyId -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.updateKey({ keyId: "", name: "x" }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("keys.updateKey unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(
    () => stranger.keys.updateKey({ keyId: updateKeyId, name: "x" }),
    errors.UnauthorizedErrorResponse,
    401,
    UNKNOWN_ROOT_KEY,
  );
});
await step("keys.updateKey without update_key -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(
    () => keyReader.keys.updateKey({ keyId: updateKeyId, name: "x" }),
    errors.ForbiddenErrorResponse,
    403,
    NO_PERMISSION,
  );
});
await step("keys.updateKey missing key -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.updateKey({ keyId: missingKey, name: "x" }), errors.NotFoundErrorResponse, 404, KEY_NOT_FOUND);
});

// --- keys.updateCredits

let creditsKeyId;
await step("keys.updateCredits set", async () => {
  assert(updateApiId, "prerequisite failed: no API for the update checks");
  creditsKeyId = (await unkey.keys.createKey({ apiId: updateApiId, credits: { remaining: 10 } })).data.keyId;
  const res = await unkey.keys.updateCredits({ keyId: creditsKeyId, operation: "set", value: 20 });
  assertMeta(res);
  assertEqual(res.data, { remaining: 20 }, "data");
  assertEqual((await currentKey(creditsKeyId)).credits, { remaining: 20 }, "getKey credits");
});
await step("keys.updateCredits increment", async () => {
  assert(creditsKeyId, "prerequisite failed: no key with credits");
  const res = await unkey.keys.updateCredits({ keyId: creditsKeyId, operation: "increment", value: 5 });
  assertEqual(res.data, { remaining: 25 }, "data");
});
await step("keys.updateCredits decrement floors at 0", async () => {
  assert(creditsKeyId, "prerequisite failed: no key with credits");
  const res = await unkey.keys.updateCredits({ keyId: creditsKeyId, operation: "decrement", value: 100 });
  assertEqual(res.data, { remaining: 0 }, "data");
});
await step("keys.updateCredits set null makes the key unlimited", async () => {
  assert(creditsKeyId, "prerequisite failed: no key with credits");
  const res = await unkey.keys.updateCredits({ keyId: creditsKeyId, operation: "set", value: null });
  assertEqual(res.data.remaining, null, "data.remaining");
  assertEqual((await currentKey(creditsKeyId)).credits, undefined, "getKey credits");
});
await step("keys.updateCredits keeps the refill; set null clears it", async () => {
  assert(updateApiId, "prerequisite failed: no API for the update checks");
  const refill = { interval: "daily", amount: 5 };
  const id = (await unkey.keys.createKey({ apiId: updateApiId, credits: { remaining: 5, refill } })).data.keyId;
  const incremented = await unkey.keys.updateCredits({ keyId: id, operation: "increment", value: 1 });
  assertEqual(incremented.data, { remaining: 6, refill }, "data after increment");
  const unlimited = await unkey.keys.updateCredits({ keyId: id, operation: "set" });
  assertEqual(unlimited.data.remaining, null, "data.remaining after set without value");
  assertEqual(unlimited.data.refill, undefined, "data.refill after set without value");
  assertEqual((await currentKey(id)).credits, undefined, "getKey credits");
});
await step("keys.updateCredits increment an unlimited key -> 400 BadRequestErrorResponse", async () => {
  const err = await expectTypedError(
    () => unkey.keys.updateCredits({ keyId: creditsKeyId, operation: "increment", value: 1 }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
  assertEqual(err.error.detail, "You cannot increment or decrement a key with unlimited credits.", "error.detail");
});
await step("keys.updateCredits increment without value -> 400 BadRequestErrorResponse", async () => {
  const err = await expectTypedError(
    () => unkey.keys.updateCredits({ keyId: creditsKeyId, operation: "increment" }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
  const expected = "When specifying an increment or decrement operation, a value must be provided.";
  assertEqual(err.error.detail, expected, "error.detail");
});
// `operation` is an open enum in the SDK, so an unknown one reaches the server.
await step("keys.updateCredits unknown operation -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(
    () => unkey.keys.updateCredits({ keyId: creditsKeyId, operation: "multiply", value: 2 }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
});
await step("keys.updateCredits unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(
    () => stranger.keys.updateCredits({ keyId: creditsKeyId, operation: "set", value: 1 }),
    errors.UnauthorizedErrorResponse,
    401,
    UNKNOWN_ROOT_KEY,
  );
});
await step("keys.updateCredits without update_key -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(
    () => keyReader.keys.updateCredits({ keyId: creditsKeyId, operation: "set", value: 1 }),
    errors.ForbiddenErrorResponse,
    403,
    NO_PERMISSION,
  );
});
await step("keys.updateCredits missing key -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(
    () => unkey.keys.updateCredits({ keyId: missingKey, operation: "set", value: 1 }),
    errors.NotFoundErrorResponse,
    404,
    KEY_NOT_FOUND,
  );
});

await step("apis.deleteApi (cleanup of the update checks' API)", async () => {
  assert(updateApiId, "prerequisite failed: no API for the update checks");
  assertMeta(await unkey.apis.deleteApi({ apiId: updateApiId }));
});

// === keys.verifyKey =========================================================
// Every outcome of the key itself is a 200 whose body goes through the SDK's
// V2KeysVerifyKeyResponseBody schema: each step checks `valid`, `code` and
// the fields that outcome carries. A root key without verify_key also gets
// 200 NOT_FOUND, never an error (spec digest §3.3). 400 and 401 come as the
// SDK's typed errors; 412 (a ratelimit the key does not have) is not declared
// for verifyKey, so the SDK raises its generic APIError (digest §7).
// Everything is set up in an API of its own; each outcome mints its own key.

// A root key holding only `api.*.verify_key`.
const verifier = new Unkey({ rootKey: process.env.SIGIL_VERIFIER_KEY ?? "", serverURL, retryConfig: { strategy: "none" } });
const PRECONDITION_FAILED = "unkey/application/precondition_failed";
const NOT_FOUND_ONLY = { valid: false, code: "NOT_FOUND" };
const FAR_FUTURE = 4_102_444_800_000; // 2100-01-01, in unix ms

let verifyApiId;
let verifyIdentityId;
let verifyFull; // { keyId, key } of a key with every field verifyKey shows
let verifyPlain; // { keyId, key } of a key with 5 credits, for the error steps
const verifyOwner = `${runTag}-verify-owner`;
const verifyOwnerMeta = { plan: "pro" };
const verifyOwnerRatelimits = [{ name: "requests", limit: 10, duration: 60000, autoApply: true }];
const verifyKeyMeta = { tier: "gold", seats: 2 };

async function verifyKeyFor(body) {
  assert(verifyApiId, "prerequisite failed: no API for the verifyKey checks");
  return (await unkey.keys.createKey({ apiId: verifyApiId, prefix: "vfy", ...body })).data;
}

// The checked ratelimit `name` of a verification: its reset checked (the end of
// the current window, in unix ms, made between `before` and `after`), the other
// fields returned in a fixed order for assertEqual.
function checkedLimit(data, name, before, after) {
  const found = (data.ratelimits ?? []).filter((rl) => rl.name === name);
  assertEqual(found.length, 1, `ratelimits named ${name}`);
  const { id, limit, duration, reset, remaining, exceeded, autoApply } = found[0];
  assert(typeof id === "string", `ratelimits[${name}].id must be a string, got ${JSON.stringify(id)}`);
  assert(Number.isInteger(reset) && reset > before && reset <= after + duration,
    `ratelimits[${name}].reset must be the end of the current window (${before}..${after + duration}), got ${reset}`);
  return { id, name, limit, duration, remaining, exceeded, autoApply };
}

// Runs `call`, which must throw the SDK's generic APIError (the SDK declares
// no typed error for `status` on this operation) with `status`, and a JSON
// body of Unkey's error shape whose error.type ends in `/<type>`.
async function expectGenericError(call, status, type) {
  let result;
  try {
    result = await call();
  } catch (err) {
    if (!(err instanceof errors.APIError)) {
      throw new CheckFailure(`expected the SDK's generic APIError (HTTP ${status}), got ${className(err)}`, err);
    }
    assertEqual(err.statusCode, status, "HTTP status");
    let body;
    try {
      body = JSON.parse(err.body);
    } catch (parseErr) {
      throw new CheckFailure(`the body of the ${status} is not JSON: ${JSON.stringify(err.body)}`, parseErr);
    }
    assertEqual(body.error?.status, status, "error.status");
    for (const field of ["title", "type", "detail"]) {
      assert(typeof body.error?.[field] === "string" && body.error[field] !== "", `error.${field} must be a non-empty string`);
    }
    assert(typeof body.meta?.requestId === "string" && body.meta.requestId !== "", "meta.requestId must be a non-empty string");
    if (type !== undefined) {
      assert(body.error.type.endsWith(`/${type}`), `error.type: expected .../${type}, got ${body.error.type} (${body.error.detail})`);
    }
    return body;
  }
  throw new CheckFailure(`expected APIError (HTTP ${status}), but the call succeeded: ${JSON.stringify(result)}`);
}

await step("keys.verifyKey setup: an API, an identity with an autoApply limit, a key with every field", async () => {
  verifyApiId = (await unkey.apis.createApi({ name: "sdk-check-verify" })).data.apiId;
  verifyIdentityId = (await unkey.identities.createIdentity({
    externalId: verifyOwner,
    meta: verifyOwnerMeta,
    ratelimits: verifyOwnerRatelimits,
  })).data.identityId;
  verifyFull = await verifyKeyFor({
    name: "sdk-check-verify",
    externalId: verifyOwner,
    meta: verifyKeyMeta,
    credits: { remaining: 3 },
    expires: FAR_FUTURE,
    ratelimits: [{ name: "tokens", limit: 7, duration: 60000, autoApply: true }],
  });
  verifyPlain = await verifyKeyFor({ credits: { remaining: 5 } });
});

// --- keys.verifyKey: VALID

await step("keys.verifyKey VALID: key fields, credits after spend, identity, the key's and the identity's checked ratelimits", async () => {
  assert(verifyFull, "prerequisite failed: no key from the verifyKey setup");
  const before = Date.now();
  const res = await unkey.keys.verifyKey({ key: verifyFull.key });
  const after = Date.now();
  assertMeta(res);
  const data = res.data;
  assertEqual(data.valid, true, "data.valid");
  assertEqual(data.code, "VALID", "data.code");
  assertEqual(data.keyId, verifyFull.keyId, "data.keyId");
  assertEqual(data.name, "sdk-check-verify", "data.name");
  assertEqual(data.meta, verifyKeyMeta, "data.meta");
  assertEqual(data.enabled, true, "data.enabled");
  assertEqual(data.expires, FAR_FUTURE, "data.expires");
  assertEqual(data.credits, 2, "data.credits (3 less the default cost of 1)");
  assertEqual(data.permissions, undefined, "data.permissions");
  assertEqual(data.roles, undefined, "data.roles");
  assertEqual(data.identity?.id, verifyIdentityId, "data.identity.id");
  assertEqual(data.identity?.externalId, verifyOwner, "data.identity.externalId");
  assertEqual(data.identity?.meta, verifyOwnerMeta, "data.identity.meta");
  assertRatelimits(data.identity?.ratelimits, verifyOwnerRatelimits, "data.identity");
  assertEqual(data.ratelimits?.length, 2, "data.ratelimits count");
  // The identity's limit, counted on the identity, and the key's own.
  const { id: requestsId, ...requests } = checkedLimit(data, "requests", before, after);
  assertEqual(requestsId, data.identity.ratelimits[0].id, "checked requests id (the identity's limit's id)");
  assert(requestsId.startsWith("rl_"), `checked requests id: ${requestsId}`);
  assertEqual(requests, { name: "requests", limit: 10, duration: 60000, remaining: 9, exceeded: false, autoApply: true },
    "checked requests");
  const { id: tokensId, ...tokens } = checkedLimit(data, "tokens", before, after);
  assert(tokensId.startsWith("rl_"), `checked tokens id: ${tokensId}`);
  assertEqual(tokens, { name: "tokens", limit: 7, duration: 60000, remaining: 6, exceeded: false, autoApply: true },
    "checked tokens");
});
await step("keys.verifyKey VALID with only api.*.verify_key", async () => {
  assert(verifyFull, "prerequisite failed: no key from the verifyKey setup");
  const data = (await verifier.keys.verifyKey({ key: verifyFull.key })).data;
  assertEqual([data.valid, data.code, data.keyId], [true, "VALID", verifyFull.keyId], "[valid, code, keyId]");
  assertEqual(data.credits, 1, "data.credits");
});

// --- keys.verifyKey: NOT_FOUND, with no other field

await step("keys.verifyKey unknown key -> 200 NOT_FOUND", async () => {
  const res = await unkey.keys.verifyKey({ key: "vfy_not_a_key" });
  assertMeta(res);
  assertEqual(res.data, NOT_FOUND_ONLY, "data");
});
await step("keys.verifyKey without verify_key (only read_key) -> 200 NOT_FOUND, not an error", async () => {
  assert(verifyFull, "prerequisite failed: no key from the verifyKey setup");
  const res = await keyReader.keys.verifyKey({ key: verifyFull.key });
  assertMeta(res);
  assertEqual(res.data, NOT_FOUND_ONLY, "data");
});
await step("keys.verifyKey soft-deleted key -> 200 NOT_FOUND", async () => {
  const { keyId: id, key } = await verifyKeyFor({});
  await unkey.keys.deleteKey({ keyId: id });
  assertEqual((await unkey.keys.verifyKey({ key })).data, NOT_FOUND_ONLY, "data");
});

// --- keys.verifyKey: DISABLED and EXPIRED

await step("keys.verifyKey DISABLED (created with enabled false), spends nothing", async () => {
  const { keyId: id, key } = await verifyKeyFor({ enabled: false, credits: { remaining: 1 } });
  const res = await unkey.keys.verifyKey({ key });
  assertMeta(res);
  const data = res.data;
  assertEqual([data.valid, data.code, data.keyId], [false, "DISABLED", id], "[valid, code, keyId]");
  assertEqual(data.enabled, false, "data.enabled");
  assertEqual(data.credits, 1, "data.credits");
});
await step("keys.verifyKey EXPIRED (created with expires 1000, in 1970)", async () => {
  const { keyId: id, key } = await verifyKeyFor({ expires: 1000 });
  const res = await unkey.keys.verifyKey({ key });
  assertMeta(res);
  const data = res.data;
  assertEqual([data.valid, data.code, data.keyId], [false, "EXPIRED", id], "[valid, code, keyId]");
  assertEqual(data.expires, 1000, "data.expires");
  assertEqual(data.enabled, true, "data.enabled");
});

// --- keys.verifyKey: RATE_LIMITED

await step("keys.verifyKey RATE_LIMITED by an inline limit {name: burst, limit: 1, duration: 1000}", async () => {
  const { key } = await verifyKeyFor({});
  const request = { key, ratelimits: [{ name: "burst", limit: 1, duration: 1000 }] };
  const before = Date.now();
  const first = (await unkey.keys.verifyKey(request)).data;
  assertEqual([first.valid, first.code], [true, "VALID"], "first [valid, code]");
  // An inline limit reports id "" and autoApply false (digest §3.6).
  assertEqual(checkedLimit(first, "burst", before, Date.now()),
    { id: "", name: "burst", limit: 1, duration: 1000, remaining: 0, exceeded: false, autoApply: false }, "first burst");
  let second = (await unkey.keys.verifyKey(request)).data;
  // The 1 s window may have rolled over between the two calls: then the next call is in the new window.
  if (second.code === "VALID" && second.ratelimits?.[0]?.reset !== first.ratelimits[0].reset) {
    second = (await unkey.keys.verifyKey(request)).data;
  }
  assertEqual([second.valid, second.code], [false, "RATE_LIMITED"], "second [valid, code]");
  assertEqual(second.ratelimits?.[0]?.exceeded, true, "second ratelimits[0].exceeded");
  assertEqual(second.ratelimits?.[0]?.remaining, 0, "second ratelimits[0].remaining");
});
await step("keys.verifyKey RATE_LIMITED by a named limit at its cost", async () => {
  const { keyId: id, key } = await verifyKeyFor({
    ratelimits: [{ name: "tokens", limit: 10, duration: 60000, autoApply: false }],
  });
  const plain = (await unkey.keys.verifyKey({ key })).data;
  assertEqual([plain.code, plain.ratelimits], ["VALID", undefined], "unnamed: [code, ratelimits] (not autoApply, not checked)");
  const named = (await unkey.keys.verifyKey({ key, ratelimits: [{ name: "tokens", cost: 8 }] })).data;
  assertEqual([named.valid, named.code], [true, "VALID"], "cost 8: [valid, code]");
  assertEqual(named.ratelimits?.map(({ name, remaining, exceeded }) => ({ name, remaining, exceeded })),
    [{ name: "tokens", remaining: 2, exceeded: false }], "cost 8: ratelimits");
  const over = (await unkey.keys.verifyKey({ key, ratelimits: [{ name: "tokens", cost: 3 }] })).data;
  assertEqual([over.valid, over.code, over.keyId], [false, "RATE_LIMITED", id], "cost 3: [valid, code, keyId]");
  assertEqual(over.ratelimits?.map(({ name, remaining, exceeded }) => ({ name, remaining, exceeded })),
    [{ name: "tokens", remaining: 2, exceeded: true }], "cost 3: ratelimits");
});

// --- keys.verifyKey: USAGE_EXCEEDED

await step("keys.verifyKey USAGE_EXCEEDED (1 credit, verified twice; cost 0 still passes)", async () => {
  const { keyId: id, key } = await verifyKeyFor({ credits: { remaining: 1 } });
  const first = (await unkey.keys.verifyKey({ key })).data;
  assertEqual([first.valid, first.code, first.credits], [true, "VALID", 0], "first [valid, code, credits]");
  const second = (await unkey.keys.verifyKey({ key })).data;
  assertEqual([second.valid, second.code, second.keyId, second.credits], [false, "USAGE_EXCEEDED", id, 0],
    "second [valid, code, keyId, credits]");
  const free = (await unkey.keys.verifyKey({ key, credits: { cost: 0 } })).data;
  assertEqual([free.valid, free.code, free.credits], [true, "VALID", 0], "cost 0 [valid, code, credits]");
});

// --- keys.verifyKey: errors

await step("keys.verifyKey permissions query -> 400 BadRequestErrorResponse (not supported)", async () => {
  assert(verifyPlain, "prerequisite failed: no key from the verifyKey setup");
  const err = await expectTypedError(
    () => unkey.keys.verifyKey({ key: verifyPlain.key, permissions: "documents.read" }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
  return err.error.detail;
});
await step("keys.verifyKey credits cost -1 -> 400 BadRequestErrorResponse", async () => {
  assert(verifyPlain, "prerequisite failed: no key from the verifyKey setup");
  await expectTypedError(
    () => unkey.keys.verifyKey({ key: verifyPlain.key, credits: { cost: -1 } }),
    errors.BadRequestErrorResponse,
    400,
    INVALID_INPUT,
  );
});
await step("keys.verifyKey empty key -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.verifyKey({ key: "" }), errors.BadRequestErrorResponse, 400, INVALID_INPUT);
});
await step("keys.verifyKey unknown root key -> 401 UnauthorizedErrorResponse", async () => {
  assert(verifyPlain, "prerequisite failed: no key from the verifyKey setup");
  await expectTypedError(
    () => stranger.keys.verifyKey({ key: verifyPlain.key }),
    errors.UnauthorizedErrorResponse,
    401,
    UNKNOWN_ROOT_KEY,
  );
});
await step("keys.verifyKey ratelimit the key does not have -> 412 APIError (the SDK has no typed 412)", async () => {
  assert(verifyPlain, "prerequisite failed: no key from the verifyKey setup");
  const body = await expectGenericError(
    () => unkey.keys.verifyKey({ key: verifyPlain.key, ratelimits: [{ name: "nope" }] }),
    412,
    PRECONDITION_FAILED,
  );
  const expected = `ratelimit 'nope' was requested but does not exist for key '${verifyPlain.keyId}' and there is no identity connected.`;
  assertEqual(body.error.detail, expected, "error.detail");
});
await step("keys.verifyKey after the errors: none of them spent a credit", async () => {
  assert(verifyPlain, "prerequisite failed: no key from the verifyKey setup");
  const data = (await unkey.keys.verifyKey({ key: verifyPlain.key })).data;
  assertEqual([data.code, data.credits], ["VALID", 4], "[code, credits]");
});

await step("apis.deleteApi (cleanup of the verifyKey checks' API and identity)", async () => {
  assert(verifyApiId, "prerequisite failed: no API for the verifyKey checks");
  assertMeta(await unkey.apis.deleteApi({ apiId: verifyApiId }));
  assertMeta(await unkey.identities.deleteIdentity({ identity: verifyOwner }));
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
