// Drives Unkey's v1 client (@unkey/api 0.38.0, pinned in package.json) against a running Sigil server
// through the five v1 identities routes and their duplicate, not-found, bad-request and permission
// errors. The v1 client returns the server's {"error":{…}} body as its own error object, so every error
// must carry v1's code, docs URL and message exactly.
//
// Env: SIGIL_URL, SIGIL_ROOT_KEY (all permissions).
const { Unkey } = require("@unkey/api");
const assert = require("node:assert/strict");

const baseUrl = (process.env.SIGIL_URL ?? "").replace(/\/+$/, "");
const rootKey = process.env.SIGIL_ROOT_KEY ?? "";
if (!baseUrl || !rootKey) {
  console.error("check.cjs: set SIGIL_URL and SIGIL_ROOT_KEY");
  process.exit(2);
}
const client = (key) => new Unkey({ rootKey: key, baseUrl, retry: { attempts: 0 }, disableTelemetry: true });
const unkey = client(rootKey);

let passed = 0;
let failed = 0;
async function step(name, run) {
  try {
    await run();
    passed += 1;
    console.log(`ok  ${name}`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name}\n    ${error?.stack ?? error}`);
  }
}

function assertV1Error(outcome, code, message) {
  assert.equal(outcome.result, undefined, JSON.stringify(outcome));
  assert.equal(outcome.error.code, code, JSON.stringify(outcome.error));
  if (message !== undefined) assert.equal(outcome.error.message, message);
  assert.equal(outcome.error.docs, `https://unkey.dev/docs/api-reference/errors/code/${code}`);
  assert.match(outcome.error.requestId, /^req_/);
}

(async () => {
  const ext = `user_${Date.now()}`;
  const rl = [{ name: "tokens", limit: 10, duration: 1000 }];
  let id;

  await step("create", async () => {
    const created = await unkey.identities.create({ externalId: ext, meta: { plan: "pro" }, ratelimits: rl });
    assert.match(created.result.identityId, /^id_/, JSON.stringify(created));
    id = created.result.identityId;
  });
  await step("create duplicate -> CONFLICT", async () => {
    const duplicate = await unkey.identities.create({ externalId: ext });
    assertV1Error(duplicate, "CONFLICT", `Identity with externalId "${ext}" already exists in this workspace`);
  });
  await step("create too short -> BAD_REQUEST", async () => {
    const invalid = await unkey.identities.create({ externalId: "ab" });
    assertV1Error(invalid, "BAD_REQUEST", "externalId: String must contain at least 3 character(s)");
  });
  await step("get by externalId", async () => {
    const got = await unkey.identities.get({ externalId: ext });
    assert.deepEqual(got.result, { id, externalId: ext, meta: { plan: "pro" }, ratelimits: rl });
  });
  await step("get by identityId", async () => {
    const got = await unkey.identities.get({ identityId: id });
    assert.equal(got.result.externalId, ext);
  });
  await step("update, as the identity_already_exists page writes it", async () => {
    const updated = await unkey.identities.update({
      externalId: ext,
      meta: { name: "Updated User", email: "updated@example.com" },
    });
    assert.deepEqual(updated.result.meta, { name: "Updated User", email: "updated@example.com" });
    assert.deepEqual(updated.result.ratelimits, rl, "ratelimits not sent are kept");
  });
  await step("update clears meta and ratelimits", async () => {
    const updated = await unkey.identities.update({ identityId: id, meta: {}, ratelimits: [] });
    assert.deepEqual([updated.result.meta, updated.result.ratelimits], [{}, []]);
  });
  await step("list pages with total and cursor", async () => {
    const page = await unkey.identities.list({ limit: 1 });
    assert.equal(typeof page.result.total, "number");
    assert.equal(page.result.cursor, page.result.identities.at(-1)?.id);
  });
  await step("list limit 101 -> BAD_REQUEST", async () => {
    const invalid = await unkey.identities.list({ limit: 101 });
    assertV1Error(invalid, "BAD_REQUEST", "limit: Number must be less than or equal to 100");
  });
  await step("unknown key -> UNAUTHORIZED", async () => {
    const denied = await client("not_a_key").identities.get({ identityId: id });
    assertV1Error(denied, "UNAUTHORIZED", "key not found");
  });
  await step("delete", async () => {
    const deleted = await unkey.identities.delete({ identityId: id });
    assert.deepEqual(deleted.result, {});
  });
  await step("get deleted -> NOT_FOUND", async () => {
    const missing = await unkey.identities.get({ identityId: id });
    assertV1Error(missing, "NOT_FOUND", `identity ${id} not found`);
  });
  await step("delete again -> NOT_FOUND", async () => {
    const missing = await unkey.identities.delete({ identityId: id });
    assertV1Error(missing, "NOT_FOUND", `identity ${id} not found`);
  });

  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
})();
