import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, test } from "node:test";
import { MaskStream, MIN_MASKED_LENGTH, maskedValueProblem, maskPatterns, maskText } from "../internal/runner/mask.js";

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
    assert.deepEqual(maskPatterns(value), [value, "line-one-abc", "line-two-def"]);
    assert.deepEqual(maskPatterns("single"), ["single"]);
    const out = (await mask(maskPatterns(value), ["x line-two-def y\n", "ab cab\n", value])).toString();
    assert.equal(out, "x xxxxxx y\nab cab\nxxxxxx");
  });

  test("maskText replaces whole values and their lines in stored text", () => {
    assert.equal(maskText("run tok-123456 and line-two-def", ["tok-123456", "line-one-abc\nline-two-def"]), "run xxxxxx and xxxxxx");
    assert.equal(maskText("nothing here", ["tok-123456"]), "nothing here");
  });
});
