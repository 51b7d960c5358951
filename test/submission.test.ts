// The shared submission rules (internal/submission/check.ts), engine-free: the same errors whether
// a build comes as flags or as an API body, and never a masked value in one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { API_FIELDS, checkSubmission, SUBMIT_FIELDS, type Submission } from "../internal/submission/submission.js";
import { InputError } from "../internal/errors/errors.js";

const MANIFEST = "driver:\n  type: os\nstages: [make]\njobs:\n  - stage: make\n    commands: [\"true\"]\n";
const SECRET = "s3cret-value-xyz";

function submission(over: Partial<Submission> = {}): Submission {
  return { manifestSource: "build.yml", manifest: MANIFEST, env: [], secrets: [], keys: [], notify: [], ...over };
}

function refusal(s: Submission, names = SUBMIT_FIELDS, limit = 1 << 20): string {
  try {
    checkSubmission(s, limit, names);
  } catch (err) {
    assert.ok(err instanceof InputError, `expected an InputError, got ${(err as Error).name}`);
    return (err as Error).message;
  }
  assert.fail("the submission was accepted");
}

test("a good submission passes with its manifest parsed", { timeout: 10_000 }, () => {
  const c = checkSubmission(submission({ env: [["A", "1"]], secrets: [["TOKEN", SECRET]], notify: ["dev@example.org"] }), 1 << 20);
  assert.equal(c.manifest.driver.type, "os");
  assert.deepEqual(c.secrets, [["TOKEN", SECRET]]);
});

test("each field is named as the caller knows it: flags for the CLI, fields for the API", { timeout: 10_000 }, () => {
  assert.equal(refusal(submission({ notify: ["nobody"] })), `--notify "nobody": not an email address`);
  assert.equal(refusal(submission({ notify: ["nobody"] }), API_FIELDS), `notify "nobody": not an email address`);
  assert.match(refusal(submission({ env: [["1A", "x"]] }), API_FIELDS), /^env "1A": expected KEY=value/);
  assert.match(refusal(submission({ keys: [["../id", "k"]] }), API_FIELDS), /^keys "\.\.\/id": expected NAME a file name/);
});

test("a masked value never appears in an error, and a short one is refused", { timeout: 10_000 }, () => {
  const broken = `driver:\n  type: os\nstages: [make]\njobs: ${SECRET}\n`;
  const msg = refusal(submission({ manifest: broken, secrets: [["TOKEN", SECRET]] }));
  assert.match(msg, /^build\.yml: /);
  assert.ok(!msg.includes(SECRET), msg);
  assert.match(refusal(submission({ notify: [`${SECRET}@x y`], secrets: [["TOKEN", SECRET]] })), /xxxxxx/);
  assert.match(refusal(submission({ secrets: [["TOKEN", "ab"]] })), /^--secret TOKEN: masked variable TOKEN is 2 characters long/);
  const named = refusal(submission({ secrets: [[SECRET, "long-enough-value"]] }), API_FIELDS);
  assert.ok(!named.includes(SECRET), named);
});

test("the manifest's size and encoding are checked before it is parsed", { timeout: 10_000 }, () => {
  assert.match(refusal(submission(), SUBMIT_FIELDS, 10), /^build\.yml: .*manifest_limit/);
  assert.match(refusal(submission({ manifest: Buffer.from([0x64, 0x72, 0xff]) })), /^build\.yml: .*not valid UTF-8/);
});
