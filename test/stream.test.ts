// Writes with backpressure (internal/stream/write.ts): no engine, no service.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PassThrough, Writable } from "node:stream";
import { sharedSink, writeDrained } from "../internal/stream/write.js";

/** A stream of `highWaterMark` 4 bytes whose writes complete only when the test releases them. */
function slowStream(): { stream: Writable; release: () => void; got: () => string } {
  const pending: (() => void)[] = [];
  const chunks: Buffer[] = [];
  const stream = new Writable({
    highWaterMark: 4,
    write: (chunk: Buffer, _e, done) => {
      chunks.push(chunk);
      pending.push(done);
    },
  });
  return { stream, release: () => pending.shift()?.(), got: () => Buffer.concat(chunks).toString() };
}

const turn = () => new Promise((r) => setImmediate(r));

describe("writeDrained", { timeout: 10_000 }, () => {
  test("resolves at once while there is room, and only after the drain when the buffer is full", async () => {
    const roomy = new PassThrough();
    await writeDrained(roomy, "ok");
    assert.equal(roomy.read()?.toString(), "ok");

    const slow = slowStream();
    let written = false;
    const writing = writeDrained(slow.stream, "more than four bytes").then(() => (written = true));
    await turn();
    assert.equal(written, false);
    slow.release();
    await writing;
    assert.equal(written, true);
  });

  test("a stream that is destroyed while full ends the wait rather than hanging", async () => {
    const slow = slowStream();
    const writing = writeDrained(slow.stream, "more than four bytes");
    await turn();
    slow.stream.destroy();
    await writing;
    assert.equal(slow.stream.listenerCount("drain"), 0);
  });

  test("a stream destroyed before the write does not keep the writer waiting", async () => {
    const gone = new PassThrough();
    gone.on("error", () => undefined);
    gone.destroy();
    await new Promise((r) => gone.once("close", r));
    await writeDrained(gone, "late line");
    assert.equal(gone.listenerCount("drain"), 0);
  });
});

describe("sharedSink", { timeout: 10_000 }, () => {
  test("passes backpressure through and never ends the shared stream", async () => {
    const slow = slowStream();
    const first = sharedSink(slow.stream);
    let firstDone = false;
    first.end("job one's output", () => (firstDone = true));
    await turn();
    assert.equal(firstDone, false, "the job's sink waits for the shared stream to drain");
    slow.release();
    await new Promise((r) => first.once("finish", r));
    assert.equal(slow.stream.writableEnded, false);
    const second = sharedSink(slow.stream);
    second.end(", job two's");
    slow.release();
    await new Promise((r) => second.once("finish", r));
    assert.equal(slow.got(), "job one's output, job two's");
    assert.equal(slow.stream.writableEnded, false);
  });
});
