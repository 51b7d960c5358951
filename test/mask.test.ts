import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, test } from "node:test";
import { MaskStream, MIN_MASKED_LENGTH, maskedValueProblem, maskPatterns, maskText, shellQuotedForms } from "../internal/runner/mask.js";
import { jobScript } from "../internal/runner/plan.js";

async function mask(values: string[], chunks: (string | Buffer)[]): Promise<Buffer> {
  const m = new MaskStream(values);
  Readable.from(chunks.map((c) => (typeof c === "string" ? Buffer.from(c) : c))).pipe(m);
  return buffer(m);
}

describe("masking", () => {
  test("replaces a value in one chunk", async () => {
    assert.equal((await mask(["s3cret"], ["the s3cret is here\n"])).toString(), "the xxxxxx is here\n");
  });

  test("replaces a value split at every possible point, across two and three writes", async () => {
    const secret = "hunter2-secret";
    const text = `before ${secret} after ${secret}`;
    for (let i = 1; i < text.length; i++) {
      for (const j of [i + 1, i + 3, text.length]) {
        const parts = [text.slice(0, i), text.slice(i, j), text.slice(j)];
        const out = (await mask([secret], parts)).toString();
        assert.equal(out, "before xxxxxx after xxxxxx", `split at ${i},${j}`);
      }
    }
  });

  test("one byte at a time", async () => {
    const text = "a=topsecret;b=topsecret";
    const out = await mask(["topsecret"], [...Buffer.from(text)].map((b) => Buffer.from([b])));
    assert.equal(out.toString(), "a=xxxxxx;b=xxxxxx");
  });

  test("several values, one inside another: the longer is masked whole", async () => {
    const out = await mask(["abc", "abcdef", "zz"], ["x abcdef y abc zz abcd", "ef"]);
    assert.equal(out.toString(), "x xxxxxx y xxxxxx xxxxxx xxxxxx");
  });

  test("arbitrary bytes pass through untouched: NUL and invalid UTF-8", async () => {
    const bytes = Buffer.from([0, 0xff, 0xfe, 0xc3, 0x28, 0x00, 0x41]);
    const out = await mask(["key"], [bytes, Buffer.from("key"), bytes]);
    assert.deepEqual(out, Buffer.concat([bytes, Buffer.from("xxxxxx"), bytes]));
  });

  test("a value with multi-byte characters", async () => {
    const secret = "pässwörd✓";
    const b = Buffer.from(`x${secret}y`);
    const out = await mask([secret], [b.subarray(0, 3), b.subarray(3, 7), b.subarray(7)]);
    assert.equal(out.toString(), "xxxxxxxy");
  });

  test("no values: output is unchanged; empty values are ignored", async () => {
    assert.equal((await mask([], ["a", "b"])).toString(), "ab");
    assert.equal((await mask([""], ["a", "b"])).toString(), "ab");
  });

  test("holds back no more than the longest value, so memory stays flat", async () => {
    const m = new MaskStream(["0123456789"]);
    const seen: Buffer[] = [];
    m.on("data", (c: Buffer) => seen.push(c));
    const chunk = Buffer.alloc(64 * 1024, "a");
    for (let i = 0; i < 100; i++) m.write(chunk);
    await new Promise((r) => setImmediate(r));
    const passed = seen.reduce((n, c) => n + c.length, 0);
    assert.equal(passed, 100 * chunk.length - 9, "all but 9 bytes have gone through");
    m.end();
  });
});

describe("masked values: minimum and lines", () => {
  test("a value shorter than MIN_MASKED_LENGTH is a problem naming the variable, never the value", () => {
    assert.equal(MIN_MASKED_LENGTH, 6);
    assert.equal(maskedValueProblem("TOKEN", "abcdef"), undefined);
    const problem = maskedValueProblem("TOKEN", "a");
    assert.equal(problem, "masked variable TOKEN is 1 character long: a masked value needs at least 6 (a shorter one cannot be masked usefully)");
  });

  test("each line of a multi-line value is masked on its own; short lines only as part of the whole", async () => {
    const value = "line-one-abc\r\n  line-two-def  \nab";
    assert.deepEqual(maskPatterns(value), [value, "line-one-abc\\r\\n  line-two-def  \\nab", "line-one-abc", "line-two-def"], "whole, as bash's $'...' shows it, then line by line");
    assert.deepEqual(maskPatterns("single"), ["single"]);
    const out = (await mask(maskPatterns(value), ["x line-two-def y\n", "ab cab\n", value])).toString();
    assert.equal(out, "x xxxxxx y\nab cab\nxxxxxx");
  });

  test("maskText replaces whole values and their lines in stored text", () => {
    assert.equal(maskText("run tok-123456 and line-two-def", ["tok-123456", "line-one-abc\nline-two-def"]), "run xxxxxx and xxxxxx");
    assert.equal(maskText("nothing here", ["tok-123456"]), "nothing here");
  });
});

/** The shells jobs meet: dash (Debian's /bin/sh), bash, and busybox ash (Alpine and busybox images). */
const SHELLS: [string, string[]][] = [
  ["dash", ["/bin/dash"]],
  ["bash", ["/bin/bash"]],
  ["busybox ash", ["busybox", "sh"]],
];

/** Values that shells quote when they show them, each made of distinctive fragments. */
const AWKWARD = [
  "Tr0ub4dor'3-horse-staple",
  `dqQuote"bkSlash\\dollar$HOMEx spaced Out`,
  "firstLine'Qz81\nsecondLine\"Wy42$PATHy",
  "ctrlA\x01escE\x1btabT\tcarriage\rsingle'Qq77",
];

/** The fragments of `value` between its quotable characters: none may show once masked. */
function fragments(value: string): string[] {
  return value.split(/[^A-Za-z0-9-]+/).filter((f) => f.length >= 5);
}

/** Runs `script` in `shell` with V=value in its environment, stderr merged into stdout, through the mask of V. */
function throughMask(shell: string[], script: string, value: string): Promise<string> {
  const child = spawn(shell[0], [...shell.slice(1), "-c", `exec 2>&1\n${script}`], { env: { PATH: process.env.PATH, V: value }, stdio: ["ignore", "pipe", "inherit"] });
  return buffer(child.stdout.pipe(new MaskStream(maskPatterns(value)))).then((b) => b.toString("utf8"));
}

describe("masking what the shells show", () => {
  for (const [name, shell] of SHELLS) {
    test(`${name}: its own trace (set -x) of a masked value, quoted its way, is masked`, async () => {
      for (const value of AWKWARD) {
        const out = await throughMask(shell, `set -x\n: "$V"\n: "pre$V" post\necho "$V"\nprintf '%s\\n' "[$V]"`, value);
        assert.match(out, /xxxxxx/, `${name} printed nothing masked:\n${out}`);
        for (const f of fragments(value)) assert.ok(!out.includes(f), `${name} shows ${JSON.stringify(f)} of ${JSON.stringify(value)}:\n${out}`);
      }
    });

    test(`${name}: a job script shows each command as written, never expanded`, async () => {
      for (const value of AWKWARD) {
        const out = await throughMask(shell, jobScript(['echo "$V" >/dev/null', "  # a comment", ': "$V"', "printf '%s\\n' done"]), value);
        assert.equal(out, `+ echo "$V" >/dev/null\n+ : "$V"\n+ printf '%s\\n' done\ndone\n`, "a comment runs nothing and shows nothing");
      }
    });
  }

  test("bash's $'...' (printf %q of a value with newlines or control characters) is masked", async () => {
    for (const value of AWKWARD.filter((v) => /[\x00-\x1f]/.test(v))) {
      const out = await throughMask(["/bin/bash"], `printf '%q\\n' "$V" "x$V"`, value);
      for (const f of fragments(value)) assert.ok(!out.includes(f), `shows ${JSON.stringify(f)} of ${JSON.stringify(value)}:\n${out}`);
    }
  });

  test("shellQuotedForms: the forms of a value with ' and with control characters, none for a plain one", () => {
    assert.deepEqual(shellQuotedForms("plain-value"), []);
    assert.deepEqual(shellQuotedForms("it's-a-value"), [`it'\\''s-a-value`, `it'"'"'s-a-value`]);
    assert.deepEqual(shellQuotedForms("a\nb\x01c\\d"), ["a\\nb\\001c\\\\d"]);
  });
});
