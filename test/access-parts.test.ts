// The web's access control, engine-free: password and token hashing, the CSRF token, the
// sign-in limiter and the POST /api/builds body.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { apiTokenPrefix, csrfToken, hashPassword, newApiToken, sameToken, tokenDigest, UNMATCHABLE_HASH, verifyPassword } from "../internal/access/secrets.js";
import { apiSubmission } from "../internal/web/actions.js";
import { SignInLimiter } from "../internal/web/limiter.js";
import { WebError } from "../internal/web/params.js";

describe("web access parts", () => {
  test("a password is stored as a salted scrypt hash that only it matches", async () => {
    const a = await hashPassword("correct horse battery");
    const b = await hashPassword("correct horse battery");
    assert.match(a, /^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    assert.notEqual(a, b, "a fresh salt each time");
    assert.ok(!a.includes("correct horse"));
    assert.equal(await verifyPassword("correct horse battery", a), true);
    assert.equal(await verifyPassword("correct horse batterY", a), false);
    assert.equal(await verifyPassword("", UNMATCHABLE_HASH), false);
    assert.equal(await verifyPassword("x", "plain-text-password"), false, "a malformed hash matches nothing");
  });

  test("an API token carries its public prefix; only its digest is kept", () => {
    const { token, prefix } = newApiToken();
    assert.match(token, /^djw_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    assert.equal(apiTokenPrefix(token), prefix);
    assert.equal(apiTokenPrefix(`${token}x`), undefined);
    assert.equal(apiTokenPrefix("Bearer nonsense"), undefined);
    assert.match(tokenDigest(token), /^[0-9a-f]{64}$/);
    assert.notEqual(newApiToken().token, token);
  });

  test("the CSRF token is bound to its session and compared whole", () => {
    const t = csrfToken("session-one");
    assert.equal(t, csrfToken("session-one"));
    assert.notEqual(t, csrfToken("session-two"));
    assert.ok(!t.includes("session-one"));
    assert.equal(sameToken(t, t), true);
    assert.equal(sameToken(t.slice(0, -1), t), false);
    assert.equal(sameToken(undefined, t), false);
    assert.equal(sameToken(["a"], t), false);
  });

  test("failed sign-ins are refused unchecked after the limit, until the window passes", () => {
    let now = 1_000_000;
    const l = new SignInLimiter(3, 60_000, () => now);
    for (let i = 0; i < 3; i++) {
      assert.equal(l.wait("name:alice"), 0);
      l.fail("name:alice");
      now += 1000;
    }
    assert.equal(l.wait("name:alice"), 57_000, "until the first failure is a window old");
    assert.equal(l.wait("name:bob"), 0, "per key");
    now += 57_000;
    assert.equal(l.wait("name:alice"), 0);
    l.fail("name:alice");
    l.succeed("name:alice");
    assert.equal(l.wait("name:alice"), 0);
  });

  test("POST /api/builds takes submit's fields, each with one line when wrong", () => {
    assert.deepEqual(apiSubmission({ manifest: "m", env: { A: "1" }, secrets: { S: "secret-value" }, keys: { id: "KEY" }, notify: ["a@b.c"] }), {
      manifestSource: "manifest",
      manifest: "m",
      env: [["A", "1"]],
      secrets: [["S", "secret-value"]],
      keys: [["id", "KEY"]],
      notify: ["a@b.c"],
    });
    const refused = (body: unknown, line: string) =>
      assert.throws(
        () => apiSubmission(body),
        (e: unknown) => e instanceof WebError && e.statusCode === 400 && e.message === line,
      );
    refused([], "expected a JSON object with the fields manifest, env, secrets, keys, notify");
    refused({ manifest: "m", secret: {} }, 'unknown field "secret": the fields are manifest, env, secrets, keys, notify');
    refused({ env: {} }, "manifest: required, the manifest's YAML text as a string");
    refused({ manifest: "m", env: ["A=1"] }, 'env: expected an object of NAME: "value"');
    refused({ manifest: "m", env: { A: 1 } }, "env.A: expected a string value");
    refused({ manifest: "m", secrets: { "hunter2-value": 5 } }, "secrets: expected a string value");
    refused({ manifest: "m", notify: "a@b.c" }, "notify: expected an array of email addresses");
  });
});
