// Recovering a dead worker's builds against a real Redis, at the level of the queue protocol.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { heartbeatKey, processingList, queueList, registryKey } from "../internal/queue/names.js";
import { WorkerQueue } from "../internal/queue/queue.js";
import { requireService } from "./helpers/env.js";
import { redisMissing, startRedis, until, type RedisServer } from "./helpers/services.js";

const skip = requireService("redis", redisMissing());

describe("queue: recovering a dead worker's builds", { skip }, () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  const connect = () => {
    const c = new Redis(server.port, "127.0.0.1");
    clients.push(c);
    return c;
  };
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await server?.stop();
  });

  it("a worker frozen with its take still waiting in Redis is served the build given back, and it is given back again", async () => {
    const prefix = "recover";
    const list = queueList(prefix, "os");
    const payload = JSON.stringify({ id: 1 });
    const frozen = new WorkerQueue(connect(), connect(), prefix, "frozen", [list], 60_000);
    const live = new WorkerQueue(connect(), connect(), prefix, "live", [list], 60_000);
    const redis = connect();

    // The frozen worker holds a build, and its next take waits on the empty queue; then its lease ends.
    await frozen.heartbeat();
    await redis.lpush(processingList(list, "frozen"), payload);
    const waiting = frozen.take(30);
    await until("the frozen worker's take blocked in Redis", async () => (/blocked_clients:1\b/.test(await redis.info("clients")) ? true : undefined), 5000);
    await redis.del(heartbeatKey(prefix, "frozen"));

    assert.deepEqual(await live.recoverDead(), [{ worker: "frozen", builds: 1 }]);
    // Redis serves the waiting take at once: the build is in the frozen worker's list again.
    const served = await waiting;
    assert.deepEqual({ list: served?.list, raw: served?.raw }, { list, raw: Buffer.from(payload) });
    assert.deepEqual(await redis.lrange(processingList(list, "frozen"), 0, -1), [payload]);

    assert.deepEqual(await live.recoverDead(), [{ worker: "frozen", builds: 1 }], "the worker is still known, so its list is looked at again");
    assert.deepEqual(await redis.lrange(list, 0, -1), [payload], "the build is on the queue for a live worker");
    assert.deepEqual(await live.recoverDead(), [], "nothing more to give back");
    assert.equal(await redis.hexists(registryKey(prefix), "frozen"), 0, "a dead worker with nothing left is forgotten");
  });
});
