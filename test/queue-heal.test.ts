// Healing the queue, part by part against real servers: which builds PostgreSQL says should be
// waiting, and which of them Redis has lost.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { pushMissing, takeHealLock } from "../internal/queue/heal.js";
import { deadList, processingList, queueList } from "../internal/queue/names.js";
import { waitingBuilds } from "../internal/store/builds.js";
import { osManifest, servicesSkip, daemonSuite } from "./helpers/daemon-suite.js";
import { insertManifestBuild } from "./helpers/services.js";

const skip = servicesSkip();

describe("queue healing", { skip }, () => {
  const suite = daemonSuite();
  let redis: Redis;
  before(() => {
    redis = suite.redisClient();
  });

  it("pushes back exactly the builds whose payload is on none of the list, its processing lists and the dead list", async () => {
    // Glob characters in the prefix must match themselves only.
    const prefix = "heal[*]?";
    const list = queueList(prefix, "os");
    // Unescaped, the pattern "heal[*]?_os:processing:*" would match this list of another prefix.
    const lookalike = `${queueList("heal*!", "os")}:processing:w9`;
    await redis.lpush(list, JSON.stringify({ id: 1 }), "{not json", JSON.stringify({ id: "2" }));
    await redis.lpush(processingList(list, "w1"), JSON.stringify({ id: 3, enqueued_at: 5 }));
    await redis.lpush(deadList(prefix), JSON.stringify({ payload: JSON.stringify({ id: 4 }), reason: "given up" }));
    await redis.lpush(lookalike, JSON.stringify({ id: 5 }));
    await redis.set(`${list}:processing:not-a-list`, JSON.stringify({ id: 6 }));
    const builds = [1, 2, 3, 4, 5, 6, 7].map((id) => ({ id, createdAt: 1000 + id }));

    const pushed = await pushMissing(redis, prefix, list, builds);
    assert.deepEqual([...pushed].sort(), [5, 6, 7]);
    // At the consumer end (right), the oldest first.
    const right = (await redis.lrange(list, -3, -1)).reverse().map((raw) => JSON.parse(raw));
    assert.deepEqual(right, [
      { id: 5, enqueued_at: 1005 },
      { id: 6, enqueued_at: 1006 },
      { id: 7, enqueued_at: 1007 },
    ]);
    assert.deepEqual(await pushMissing(redis, prefix, list, builds), [], "a second sweep finds them all");
  });

  it("one sweep per interval: the lock goes to one worker until it expires", async () => {
    assert.equal(await takeHealLock(redis, "lock-test", "w1", 60_000), true);
    assert.equal(await takeHealLock(redis, "lock-test", "w2", 60_000), false);
    await redis.pexpire("lock-test:heal", 1);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await takeHealLock(redis, "lock-test", "w2", 60_000), true);
  });

  it("waiting builds: queued past the grace, or running under a lease over for longer than the grace", async () => {
    const t = await suite.env();
    const text = osManifest([["true"]]);
    const add = async (sql: string) => {
      const id = await insertManifestBuild(t.pool, text);
      await t.pool.query(`UPDATE builds SET ${sql} WHERE id = $1`, [id]);
      return id;
    };
    const oldQueued = await add(`created_at = now() - interval '1 minute'`);
    await add(`created_at = now()`); // just submitted: its producer may not have pushed yet
    const released = await add(`created_at = now() - interval '1 minute', attempt = 1, worker = 'w', lease_expires_at = NULL`);
    await add(`created_at = now() - interval '1 minute', status = 'running', worker = 'w', attempt = 1, lease_expires_at = now() + interval '1 minute'`);
    await add(`created_at = now() - interval '1 minute', status = 'running', worker = 'w', attempt = 1, lease_expires_at = now() - interval '1 second'`);
    const deadWorkers = await add(`created_at = now() - interval '1 minute', status = 'running', worker = 'w', attempt = 1, lease_expires_at = now() - interval '1 minute'`);
    await add(`created_at = now() - interval '1 minute', status = 'passed'`);
    await add(`created_at = now() - interval '1 minute', status = 'failed'`);
    const waiting = await waitingBuilds(t.pool, 10_000, 100);
    assert.deepEqual(waiting.map((b) => b.id), [oldQueued, released, deadWorkers]);
    assert.ok(waiting.every((b) => b.driverType === "os" && b.createdAt > Date.now() - 120_000));
    assert.deepEqual((await waitingBuilds(t.pool, 10_000, 1)).map((b) => b.id), [oldQueued], "at most the limit, oldest first");
  });
});
