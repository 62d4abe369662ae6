// Compatibility check: drives a running Sigil server through the official
// Unkey TypeScript SDK (@unkey/api, pinned in package.json) for all five
// identity operations and the APIs and keys routes Sigil serves. Every
// response goes through the SDK's own zod schemas, so a shape mismatch
// surfaces as a ResponseValidationError (or a generic APIError when
// status/content-type don't match what the SDK declares).
//
// Env: SIGIL_URL (e.g. http://127.0.0.1:7090), SIGIL_ROOT_KEY.
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

// Runs `call`, which must throw an instance of `ErrorClass` with `status`.
// Anything else (success, a validation error, a generic APIError) fails.
async function expectTypedError(call, ErrorClass, status) {
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

let apiId;
let keyId;
let plaintext;
await step("apis.createApi", async () => {
  const res = await unkey.apis.createApi({ name: "sdk-check" });
  assertMeta(res);
  apiId = res.data.apiId;
  assert(apiId.startsWith("api_"), `apiId ${apiId}`);
});
await step("apis.getApi", async () => {
  const res = await unkey.apis.getApi({ apiId });
  assertEqual(res.data, { id: apiId, name: "sdk-check" }, "data");
});
await step("keys.createKey with a new externalId", async () => {
  const res = await unkey.keys.createKey({
    apiId,
    prefix: "sdk",
    name: "sdk-check",
    externalId: "sdk_key_owner",
    meta: { plan: "pro" },
    credits: { remaining: 10 },
    ratelimits: [{ name: "requests", limit: 10, duration: 1000, autoApply: true }],
  });
  assertMeta(res);
  keyId = res.data.keyId;
  plaintext = res.data.key;
  assert(keyId.startsWith("key_") && plaintext.startsWith("sdk_"), JSON.stringify(res.data));
});
await step("keys.getKey", async () => {
  const res = await unkey.keys.getKey({ keyId });
  assertEqual(res.data.keyId, keyId, "data.keyId");
  assertEqual(res.data.identity?.externalId, "sdk_key_owner", "data.identity.externalId");
  assertEqual(res.data.credits?.remaining, 10, "data.credits.remaining");
  assertEqual(res.data.meta, { plan: "pro" }, "data.meta");
});
await step("apis.listKeys, iterating pages", async () => {
  await unkey.keys.createKey({ apiId });
  const pages = [];
  for await (const page of await unkey.apis.listKeys({ apiId, limit: 1 })) {
    pages.push(page.result);
    assert(pages.length <= 5, "more than 5 pages for 2 keys: pagination does not terminate");
  }
  const ids = pages.flatMap((page) => page.data.map((key) => key.keyId));
  assertEqual(ids.length, 2, "keys listed");
  assert(ids.includes(keyId), `${keyId} listed`);
});
await step("keys.whoami", async () => {
  const res = await unkey.keys.whoami({ key: plaintext });
  assertEqual(res.data.keyId, keyId, "data.keyId");
});
await step("keys.whoami unknown value -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.whoami({ key: "sdk_not_a_key" }), errors.NotFoundErrorResponse, 404);
});
await step("apis.getApi unknown key -> 401 UnauthorizedErrorResponse", async () => {
  await expectTypedError(() => stranger.apis.getApi({ apiId }), errors.UnauthorizedErrorResponse, 401);
});
await step("apis.createApi without permission -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(() => readOnly.apis.createApi({ name: "denied" }), errors.ForbiddenErrorResponse, 403);
});
await step("keys.getKey without read_key -> 403 ForbiddenErrorResponse", async () => {
  await expectTypedError(() => createOnly.keys.getKey({ keyId }), errors.ForbiddenErrorResponse, 403);
});
await step("keys.createKey in a missing API -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.createKey({ apiId: "api_missing_one" }), errors.NotFoundErrorResponse, 404);
});
await step("keys.createKey with a short byteLength -> 400 BadRequestErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.createKey({ apiId, byteLength: 8 }), errors.BadRequestErrorResponse, 400);
});
await step("keys.deleteKey", async () => {
  assertMeta(await unkey.keys.deleteKey({ keyId }));
});
await step("keys.getKey deleted -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.getKey({ keyId }), errors.NotFoundErrorResponse, 404);
});
await step("keys.deleteKey again -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.keys.deleteKey({ keyId }), errors.NotFoundErrorResponse, 404);
});
await step("apis.deleteApi", async () => {
  assertMeta(await unkey.apis.deleteApi({ apiId }));
});
await step("apis.getApi deleted -> 404 NotFoundErrorResponse", async () => {
  await expectTypedError(() => unkey.apis.getApi({ apiId }), errors.NotFoundErrorResponse, 404);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
