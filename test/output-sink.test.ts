// The job output sink on its own: storable text, order, the limit, and memory bounded by backpressure.
import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, it } from "node:test";
import { MAX_PAYLOAD_BYTES, parsePayload } from "../internal/queue/queue.js";
import { cutToBytes, JobOutputSink } from "../internal/store/output.js";

function collector(delayMs = 0) {
  const chunks: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  return {
    chunks,
    get maxInFlight() {
      return maxInFlight;
    },
    append: async (text: string) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      chunks.push(text);
      inFlight--;
    },
  };
}

describe("JobOutputSink", () => {
  it("keeps a multi-byte character split across writes whole, and replaces NUL and invalid bytes", async () => {
    const c = collector();
    const sink = new JobOutputSink({ append: c.append, limit: 0 });
    const euro = Buffer.from("€"); // 3 bytes
    sink.write(Buffer.concat([Buffer.from("a"), euro.subarray(0, 1)]));
    sink.write(euro.subarray(1, 2));
    sink.write(Buffer.concat([euro.subarray(2), Buffer.from([0, 0x41, 0xff, 0x0a])]));
    sink.end();
    await once(sink, "finish");
    assert.equal(c.chunks.join(""), "a€\uFFFDA\uFFFD\n");
  });

  it("flushes on size with backpressure, one append at a time, in order", async () => {
    const c = collector(5);
    const sink = new JobOutputSink({ append: c.append, limit: 0, flushBytes: 1024, flushMs: 1000 });
    let expected = "";
    for (let i = 0; i < 200; i++) {
      const line = `line ${i} ${"x".repeat(100)}\n`;
      expected += line;
      if (!sink.write(line)) await once(sink, "drain");
      // Never more than a flush threshold plus a write buffered: the rest waits for the store.
      assert.ok(sink.writableLength <= 16 * 1024 + 1024);
    }
    sink.end();
    await once(sink, "finish");
    assert.equal(c.chunks.join(""), expected);
    assert.equal(c.maxInFlight, 1);
    assert.ok(c.chunks.length > 10, `${c.chunks.length} chunks`);
  });

  it("takes the next chunk while one is being stored, and waits when a second is full", async () => {
    const stores: (() => void)[] = [];
    const chunks: string[] = [];
    const sink = new JobOutputSink({ append: (text) => new Promise<void>((resolve) => stores.push(() => (chunks.push(text), resolve()))), limit: 0, flushBytes: 4, flushMs: 60_000 });
    const written = (text: string) => new Promise<void>((resolve, reject) => sink.write(text, (err) => (err ? reject(err) : resolve())));
    let first = false;
    void written("aaaa").then(() => (first = true)); // full: its store starts, and the sink takes more meanwhile
    await new Promise((r) => setImmediate(r));
    assert.equal(first, true, "the first full chunk is taken while it is being stored");
    assert.equal(stores.length, 1);
    let second = false;
    const secondDone = written("bbbb").then(() => (second = true)); // full again: waits for the first store
    await new Promise((r) => setImmediate(r));
    assert.equal(second, false, "two chunks held: the second full one waits for the first store");
    stores.shift()!();
    await secondDone;
    assert.equal(stores.length, 1, "the second chunk is being stored");
    stores.shift()!();
    sink.end();
    await once(sink, "finish");
    assert.deepEqual(chunks, ["aaaa", "bbbb"]);
  });

  it("keeps what is left at the end for the caller to store with the job's end (keepRest)", async () => {
    const c = collector();
    const sink = new JobOutputSink({ append: c.append, limit: 0, flushBytes: 1024, flushMs: 60_000, keepRest: true });
    sink.end("last words\n");
    await once(sink, "finish");
    assert.deepEqual(c.chunks, [], "not appended on its own");
    assert.equal(sink.takeRest(), "last words\n");
    assert.equal(sink.storedBytes, 11);
  });

  it("stores output within the flush interval when a job prints little", async () => {
    const c = collector();
    let stored!: () => void;
    const firstStore = new Promise<void>((resolve) => (stored = resolve));
    const sink = new JobOutputSink({ append: async (text: string) => (await c.append(text), stored()), limit: 0, flushMs: 50 });
    sink.write("hello\n");
    // Stored by the timer alone: the sink is neither ended nor full.
    await firstStore;
    assert.deepEqual(c.chunks, ["hello\n"]);
    sink.end();
    await once(sink, "finish");
  });

  it("cuts at the limit on a character boundary and says so once", async () => {
    const c = collector();
    const sink = new JobOutputSink({ append: c.append, limit: 10 });
    sink.write("12345678é"); // é = 2 bytes: 10 bytes exactly
    sink.write("€more");
    sink.write("and more");
    sink.end();
    await once(sink, "finish");
    const text = c.chunks.join("");
    assert.ok(text.startsWith("12345678é\n[output truncated: this job printed more than output_limit (10 bytes)"), text);
    assert.equal(text.match(/output truncated/g)?.length, 1);
    assert.equal(sink.storedBytes, Buffer.byteLength(text));
    assert.equal(cutToBytes("ab€", 4), "ab");
  });

  it("fails the stream when the store keeps failing", async () => {
    const sink = new JobOutputSink({ append: async () => Promise.reject(new Error("database down")), limit: 0, flushBytes: 4 });
    sink.on("error", () => undefined);
    sink.write("12345");
    const [err] = await once(sink, "error");
    assert.match((err as Error).message, /database down/);
  });
});

describe("queue payloads", () => {
  it("accepts an id as number or digit string and rejects anything else with a reason", () => {
    assert.deepEqual(parsePayload('{"id": 7, "enqueued_at": 5}'), { id: 7, enqueued_at: 5 });
    assert.deepEqual(parsePayload('{"id": "12"}'), { id: 12, enqueued_at: undefined });
    assert.equal(parsePayload("nope"), "payload is not valid JSON");
    assert.equal(parsePayload("[1]"), "payload is not a JSON object");
    assert.equal(parsePayload('{"id": -1}'), 'payload has no positive integer "id"');
    assert.equal(parsePayload('{"id": 1.5}'), 'payload has no positive integer "id"');
    assert.equal(parsePayload(Buffer.from([0x7b, 0xff, 0x7d])), "payload is not valid UTF-8");
    assert.deepEqual(parsePayload(Buffer.from('{"id": 3}')), { id: 3, enqueued_at: undefined });
    const huge = Buffer.from(JSON.stringify({ id: 4, pad: "x".repeat(MAX_PAYLOAD_BYTES) }));
    assert.equal(parsePayload(huge), `payload is ${huge.length} bytes, more than the ${MAX_PAYLOAD_BYTES} a payload may have`);
  });
});
