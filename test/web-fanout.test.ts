// Many viewers of one running build, against real PostgreSQL: the web application runs in this
// process on a pool whose queries are counted, and output rows are written the way the daemon
// writes them (a row, then a notification on the build's channel), so each step is known.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import pino from "pino";
import { loadWorkerConfig } from "../internal/config/config.js";
import { createPool } from "../internal/store/db.js";
import { BUILD_CHANNEL } from "../internal/store/recorder.js";
import { BuildFeeds } from "../internal/web/fanout.js";
import { SignInLimiter } from "../internal/web/limiter.js";
import { BuildEvents } from "../internal/web/live.js";
import { webApp } from "../internal/web/server.js";
import { daemonSuite, osManifest, servicesSkip, type TestEnv } from "./helpers/daemon-suite.js";

const skip = servicesSkip();

/** One viewer's event stream as it arrives: output rows, statuses, the end, and how it ended. */
class Viewer {
  readonly rows: { id: number; html: string }[] = [];
  statuses = 0;
  end?: string;
  /** Set once the response is over: "clean" or the error that cut it. */
  closed?: string;
  private text = "";
  private readonly checks = new Set<() => void>();

  constructor(url: string, headers: Record<string, string> = {}) {
    const req = http.get(url, { headers }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => this.feed(chunk));
      res.on("end", () => this.close("clean"));
      res.on("error", (err) => this.close(err.message));
    });
    req.on("error", (err) => this.close(err.message));
  }

  private feed(chunk: string): void {
    this.text += chunk;
    for (let at = this.text.indexOf("\n\n"); at >= 0; at = this.text.indexOf("\n\n")) {
      const fields = new Map(this.text.slice(0, at).split("\n").map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)] as const));
      this.text = this.text.slice(at + 2);
      const data = fields.has("data") ? JSON.parse(fields.get("data")!) : undefined;
      if (fields.get("event") === "output") this.rows.push({ id: Number(fields.get("id")), html: data.html });
      if (fields.get("event") === "status") this.statuses++;
      if (fields.get("event") === "end") this.end = data.status;
    }
    this.poke();
  }

  private close(how: string): void {
    this.closed ??= how;
    this.poke();
  }

  private poke(): void {
    for (const check of [...this.checks]) check();
  }

  /** Resolves once `ready` holds (checked as events arrive); rejects if the stream closes first. */
  until(ready: (v: Viewer) => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (ready(this)) resolve();
        else if (this.closed) reject(new Error(`stream closed (${this.closed}) after ${this.rows.length} rows`));
        else return;
        this.checks.delete(check);
      };
      this.checks.add(check);
      check();
    });
  }
}

/** The web application in this process for `t`, its pool's output reads counted, its log kept. */
async function inProcessWeb(t: TestEnv, opts: { ringBytes?: number; dbAddr?: string } = {}) {
  const cfg = loadWorkerConfig(t.cfg.worker);
  const pool = createPool({ ...cfg.database!, addr: opts.dbAddr ?? cfg.database!.addr }, 10);
  pool.on("error", () => undefined);
  const counted = { outputReads: 0 };
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const sql = typeof args[0] === "string" ? args[0] : String((args[0] as { text?: string }).text);
    // What reads the rows' text: one such query per batch of new rows, not one per viewer.
    if (/\bdata FROM job_output\b/.test(sql)) counted.outputReads++;
    return query(...args);
  };
  const lines: string[] = [];
  const log = pino({ level: "info" }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }));
  const events = new BuildEvents(cfg.database!, log);
  await events.start();
  const feeds = new BuildFeeds(pool, events, log, opts.ringBytes);
  const access = { public: true, cookieSecure: false, sessionMs: 3_600_000, limiters: { names: new SignInLimiter(5), addresses: new SignInLimiter(20) } };
  const app = webApp({ pool, events, feeds }, access, log);
  await app.listen({ host: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return {
    url,
    counted,
    lines,
    feeds,
    stop: async () => {
      await app.close();
      feeds.close();
      await events.close();
      await pool.end();
    },
  };
}

/** A build that looks running to the web, and its one job; rows are written by `print`. */
async function runningBuild(t: TestEnv): Promise<{ id: number; job: number; print(texts: string[]): Promise<number[]>; finish(): Promise<void> }> {
  const id = await t.submit(osManifest([["true"]]));
  const job = Number((await t.pool.query(`SELECT id FROM jobs WHERE build_id = $1`, [id])).rows[0].id);
  await t.pool.query(`UPDATE builds SET status = 'running', started_at = now() WHERE id = $1`, [id]);
  await t.pool.query(`UPDATE jobs SET status = 'running', started_at = now() WHERE id = $1`, [job]);
  const notify = () => t.pool.query(`SELECT pg_notify($1, $2)`, [BUILD_CHANNEL, String(id)]);
  return {
    id,
    job,
    async print(texts) {
      const ids: number[] = [];
      for (const text of texts) ids.push(Number((await t.pool.query(`INSERT INTO job_output (build_id, job_id, data) VALUES ($1, $2, $3) RETURNING id`, [id, job, text])).rows[0].id));
      await notify();
      return ids;
    },
    async finish() {
      await t.pool.query(`UPDATE jobs SET status = 'passed', exit_code = 0, finished_at = now() WHERE id = $1`, [job]);
      await t.pool.query(`UPDATE stages SET status = 'passed', finished_at = now() WHERE build_id = $1`, [id]);
      await t.pool.query(`UPDATE builds SET status = 'passed', finished_at = now() WHERE id = $1`, [id]);
      await notify();
    },
  };
}

describe("djinn-worker web: many viewers of one build", { skip }, () => {
  const suite = daemonSuite();

  it("gives 50 viewers every line once and in order from one output query per batch, and a late viewer the rows the ring dropped", { timeout: 180_000 }, async (ctx) => {
    const t = await suite.env();
    // A ring smaller than a step: the late viewer below resumes from before its start.
    const web = await inProcessWeb(t, { ringBytes: 1024 });
    ctx.after(() => web.stop());
    const b = await runningBuild(t);
    const viewers = Array.from({ length: 50 }, () => new Viewer(`${web.url}/builds/${b.id}/events`));
    await Promise.all(viewers.map((v) => v.until((x) => x.statuses > 0)));
    assert.equal(web.feeds.watched, 1, "one reader for the build");

    // Larger than the ring: each is dropped as the next comes, and its buffer holds a later event once written.
    const long = (step: number) => String.fromCharCode(97 + (step % 26)).repeat(6000);
    const before = web.counted.outputReads;
    const steps = 15;
    const printed: number[] = [];
    for (let step = 1; step <= steps; step++) {
      // A line with colour and markup: rendered and escaped once, the same for everyone.
      const ids = await b.print([`line ${step}a \x1b[31m<b>red</b>\x1b[0m\n`, `line ${step}b ${long(step)}\n`]);
      printed.push(...ids);
      await Promise.all(viewers.map((v) => v.until((x) => x.rows.length >= printed.length)));
    }
    const reads = web.counted.outputReads - before;
    assert.ok(reads <= 2 * steps + 2, `${reads} output queries for ${steps} batches and ${viewers.length} viewers: one per batch, not one per viewer`);

    const readsBeforeLate = web.counted.outputReads;
    const late = new Viewer(`${web.url}/builds/${b.id}/events`, { "last-event-id": String(printed[2]) });
    await late.until((x) => x.rows.length >= printed.length - 3);
    assert.ok(web.counted.outputReads > readsBeforeLate, "the late viewer read the rows the ring had dropped from the database");
    await b.finish();
    await Promise.all([...viewers, late].map((v) => v.until((x) => x.closed !== undefined)));

    const html = (step: number) => [`line ${step}a <span class="ansi-red-fg">&lt;b&gt;red&lt;/b&gt;</span>\n`, `line ${step}b ${long(step)}\n`];
    const expected = Array.from({ length: steps }, (_, i) => html(i + 1)).flat();
    for (const [i, v] of viewers.entries()) {
      assert.deepEqual(v.rows.map((r) => r.id), printed, `viewer ${i}: every row once, in order`);
      assert.deepEqual(v.rows.map((r) => r.html), expected, `viewer ${i}: rendered`);
      assert.equal(v.end, "passed");
      assert.equal(v.closed, "clean");
    }
    assert.deepEqual(late.rows.map((r) => r.id), printed.slice(3), "the late viewer: the rows after its Last-Event-ID, from the database and the ring, once each");
    assert.deepEqual(late.rows.map((r) => r.html), expected.slice(3));
    assert.equal(late.end, "passed");
    assert.equal(web.feeds.watched, 0, "the reader stopped with the build");
    assert.deepEqual(web.lines.filter((l) => /"level":(40|50)/.test(l)), [], "nothing to complain about");
  });

  it("ends every viewer cleanly, and says so in its log, when PostgreSQL goes away", { timeout: 120_000 }, async (ctx) => {
    const t = await suite.env();
    const relay = await suite.relay(suite.postgres.port);
    const web = await inProcessWeb(t, { dbAddr: relay.addr });
    ctx.after(() => web.stop());
    const b = await runningBuild(t);
    const viewers = Array.from({ length: 10 }, () => new Viewer(`${web.url}/builds/${b.id}/events`));
    await Promise.all(viewers.map((v) => v.until((x) => x.statuses > 0)));
    await relay.set("closed");
    await b.print(["after the database went away\n"]);
    await Promise.all(viewers.map((v) => v.until((x) => x.closed !== undefined)));
    // A clean end: EventSource reconnects with Last-Event-ID, rather than see a connection cut.
    assert.deepEqual(
      viewers.map((v) => v.closed),
      viewers.map(() => "clean"),
    );
    assert.ok(
      web.lines.some((l) => /"level":40/.test(l) && l.includes(`"build":${b.id}`) && l.includes("cannot read the build's events")),
      `a warning names the build:\n${web.lines.join("")}`,
    );
  });
});
