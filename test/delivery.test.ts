// A taken payload as one object (internal/queue/delivery.ts) against a real Redis: each way it
// ends, once; and the one retry policy when the connection to Redis is lost.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { DeliveryAbandoned, type Delivery, type SettlePolicy } from "../internal/queue/delivery.js";
import { deadList, processingList, queueList } from "../internal/queue/names.js";
import { WorkerQueue } from "../internal/queue/queue.js";
import { requireService } from "./helpers/env.js";
import { Relay } from "./helpers/proxy.js";
import { redisMissing, startRedis, type RedisServer } from "./helpers/services.js";

const skip = requireService("redis", redisMissing());

describe("delivery: a taken payload ends once", { skip }, () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  const relays: Relay[] = [];
  let n = 0;
  const connect = (port = server.port, fragile = false) => {
    // A fragile client fails a command at once while disconnected (instead of queueing it), and reconnects.
    const c = new Redis(port, "127.0.0.1", fragile ? { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 50 } : {});
    c.on("error", () => undefined);
    clients.push(c);
    return c;
  };
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    for (const r of relays) await r.stop();
    await server?.stop();
  });

  /** A queue with one payload on it, a worker queue over `redis`, and the payload taken. */
  async function takeOne(redis: Redis, payload = '{"id": 7}', policy?: SettlePolicy) {
    const prefix = `d${++n}`;
    const list = queueList(prefix, "os");
    const admin = connect();
    await admin.lpush(list, payload);
    const queue = new WorkerQueue(redis, connect(), prefix, "w1", [list], 60_000);
    const taken = (await queue.take(1, policy)) as Delivery;
    assert.ok(taken, "the payload is taken");
    const processing = () => admin.lrange(processingList(list, "w1"), 0, -1);
    return { prefix, list, admin, taken, processing };
  }

  it("ack forgets the payload; a second ack is a no-op", async () => {
    const { admin, taken, processing } = await takeOne(connect());
    assert.deepEqual(await processing(), ['{"id": 7}']);
    assert.equal(await taken.ack(), true);
    assert.deepEqual(await processing(), []);
    // Another copy of the same bytes, taken since: a repeated ack must not remove it.
    await admin.lpush(processingList(taken.list, "w1"), '{"id": 7}');
    assert.equal(await taken.ack(), false);
    assert.equal(await taken.requeue("again"), false, "nor does a requeue after the ack");
    assert.deepEqual(await processing(), ['{"id": 7}']);
    assert.deepEqual(taken.end, { how: "ack" });
  });

  it("requeue puts it back, next in line or behind what waits", async () => {
    const first = await takeOne(connect());
    await first.admin.lpush(first.list, "other");
    await first.taken.requeue("not now");
    assert.deepEqual(await first.admin.lrange(first.list, 0, -1), ["other", '{"id": 7}'], "next: at the end consumers take from");
    assert.deepEqual(await first.processing(), []);

    const second = await takeOne(connect());
    await second.admin.lpush(second.list, "other");
    await second.taken.requeue("later", "behind");
    assert.deepEqual(await second.admin.lrange(second.list, 0, -1), ['{"id": 7}', "other"], "behind everything queued");
  });

  it("dead moves it to the dead list with the reason, bytes that are not UTF-8 kept exactly", async () => {
    const raw = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const prefix = `d${++n}`;
    const list = queueList(prefix, "os");
    const admin = connect();
    await admin.lpush(list, raw);
    const taken = (await new WorkerQueue(connect(), connect(), prefix, "w1", [list], 60_000).take(1)) as Delivery;
    assert.equal(await taken.dead("unusable"), true);
    assert.equal(await admin.llen(processingList(list, "w1")), 0);
    const entries = await admin.lrange(deadList(prefix), 0, -1);
    assert.equal(entries.length, 1);
    const entry = JSON.parse(entries[0]);
    assert.equal(entry.reason, "unusable");
    assert.equal(entry.queue, list);
    assert.deepEqual(Buffer.from(entry.payload_base64, "base64"), raw);
  });

  for (const how of ["requeue", "dead"] as const) {
    it(`${how} while the connection to Redis is lost is retried until Redis answers`, async () => {
      const relay = await Relay.create(server.port);
      relays.push(relay);
      let firstFailure!: () => void;
      const failed = new Promise<void>((r) => (firstFailure = r));
      const failures: string[] = [];
      const policy: SettlePolicy = {
        onRetry: (what) => {
          failures.push(what);
          firstFailure();
        },
      };
      const { admin, list, prefix, taken, processing } = await takeOne(connect(relay.port, true), '{"id": 8}', policy);
      await relay.set("closed");
      const ended = how === "requeue" ? taken.requeue("given back") : taken.dead("given up");
      await failed;
      assert.deepEqual(await processing(), ['{"id": 8}'], "nothing moved while Redis is away");
      await relay.set("open");
      assert.equal(await ended, true);
      assert.ok(failures.length >= 1 && failures.every((w) => w === how), `retried: ${failures.join(", ")}`);
      assert.deepEqual(await processing(), []);
      if (how === "requeue") assert.deepEqual(await admin.lrange(list, 0, -1), ['{"id": 8}']);
      else assert.equal(JSON.parse((await admin.lrange(deadList(prefix), 0, -1))[0]).reason, "given up");
    });
  }

  it("a forced stop abandons a write waiting for Redis: the payload stays for the lease to recover", async () => {
    const relay = await Relay.create(server.port);
    relays.push(relay);
    const stop = new AbortController();
    let firstFailure!: () => void;
    const failed = new Promise<void>((r) => (firstFailure = r));
    const { taken, processing } = await takeOne(connect(relay.port, true), '{"id": 9}', { stop: stop.signal, onRetry: () => firstFailure() });
    await relay.set("closed");
    const ended = taken.ack();
    await failed;
    stop.abort();
    await assert.rejects(ended, DeliveryAbandoned);
    await relay.set("open");
    assert.deepEqual(await processing(), ['{"id": 9}']);
  });

  it("after a forced stop a write still gets its one attempt (the hand-back at shutdown)", async () => {
    const stop = new AbortController();
    stop.abort();
    const { admin, list, taken, processing } = await takeOne(connect(), '{"id": 10}', { stop: stop.signal });
    assert.equal(await taken.requeue("shutdown"), true);
    assert.deepEqual(await processing(), []);
    assert.deepEqual(await admin.lrange(list, 0, -1), ['{"id": 10}']);
  });
});
