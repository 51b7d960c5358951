// `djinn-worker web` against a real daemon (os driver), real PostgreSQL and Debian's chromium:
//  1. print-to-browser latency (p50/p99) of lines from a job printing one every 100 ms, seen in a
//     build page in chromium, vs the same lines seen by a plain LISTEN on PostgreSQL (goal: p99 ≤ 1 s);
//  2. --viewers event streams (default 200) of one job printing --mbps MB/s (default 5) for
//     --seconds s: the web process's peak RSS and CPU, and the furthest any viewer falls behind
//     the job's printing, vs one plain LISTEN reader (goal: none over 2 s behind, RSS < 200 MB);
//  3. the first page of the builds list with --builds builds (default 100,000) in the database,
//     server time, and filtered and deep pages, vs the list's SQL statement alone (goal: < 50 ms);
//  4. an --artifact-mib MiB artifact downloaded over HTTP vs reading the stored file raw.
// Usage: node build/bench/web.js [--lines N] [--viewers N] [--mbps N] [--seconds N] [--builds N] [--artifact-mib N] [--only 1,2,3,4]
import { readFileSync } from "node:fs";
import http from "node:http";
import fs from "node:fs/promises";
import path from "node:path";
import puppeteer from "puppeteer-core";
import { BUILD_CHANNEL } from "../internal/store/recorder.js";
import { listQuery } from "../internal/web/queries.js";
import { Suite, type TestEnv } from "../test/helpers/daemon-suite.js";
import type { DaemonProcess } from "../test/helpers/services.js";
import { webEnv, type WebEnv } from "../test/helpers/web.js";
import { numberArg } from "./lib/args.js";
import { percentile } from "./lib/percentile.js";

const CHROMIUM = "/usr/bin/chromium";
const lines = numberArg("lines", 50);
const viewers = numberArg("viewers", 200);
const mbps = numberArg("mbps", 5);
const seconds = numberArg("seconds", 10);
const builds = numberArg("builds", 100_000);
const artifactMib = numberArg("artifact-mib", 256);
/** --only 2,3: the parts to run (all by default). */
const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1].split(",").map(Number) : [1, 2, 3, 4];

const pct = percentile;
const ms = (x: number) => `${x.toFixed(x < 10 ? 1 : 0)} ms`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}×`;

/** A one-job os build waiting for `go` before its commands; its build and job ids. */
async function waitingBuild(t: TestEnv, go: string, commands: string[]): Promise<{ id: number; job: number }> {
  const manifest = ["namespace: bench", "driver: {type: os}", "stages: [run]", "jobs:", "  - stage: run", "    name: print", "    commands:", ...[`while [ ! -e ${go} ]; do sleep 0.05; done`, ...commands].map((c) => `      - ${JSON.stringify(c)}`), ""].join("\n");
  const id = await t.submit(manifest);
  const job = Number((await t.pool.query(`SELECT id FROM jobs WHERE build_id = $1 AND name = 'print'`, [id])).rows[0].id);
  return { id, job };
}

/**
 * A plain reader of PostgreSQL, as any program could watch a job: LISTEN, and on each
 * notification the job's new rows. `onRow` gets each row's text as it is read.
 */
async function listenReader(t: TestEnv, build: number, job: number, onRow: (data: string) => void): Promise<{ close(): Promise<void> }> {
  const client = await t.pool.connect();
  let after = 0;
  let reading = Promise.resolve();
  const read = async () => {
    for (;;) {
      const r = await client.query(`SELECT id, data FROM job_output WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT 500`, [job, after]);
      for (const row of r.rows) {
        onRow(row.data);
        after = Number(row.id);
      }
      if (r.rows.length < 500) return;
    }
  };
  client.on("notification", (n) => {
    if (n.payload === String(build)) reading = reading.then(read);
  });
  await client.query(`LISTEN ${BUILD_CHANNEL}`);
  return {
    close: async () => {
      await reading;
      await client.query(`UNLISTEN ${BUILD_CHANNEL}`);
      client.release();
    },
  };
}

async function latency(w: WebEnv, d: DaemonProcess): Promise<void> {
  const go = path.join(w.t.dir, "go-latency");
  const { id, job } = await waitingBuild(w.t, go, [`i=0; while [ $i -lt ${lines} ]; do echo "L $(date +%s%3N)"; i=$((i+1)); sleep 0.1; done`]);
  const raw: number[] = [];
  const reader = await listenReader(w.t, id, job, (data) => {
    const now = Date.now();
    for (const m of data.matchAll(/^L (\d{13})$/gm)) raw.push(now - Number(m[1]));
  });
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"] });
  try {
    const page = await browser.newPage();
    await page.goto(`${w.url}/builds/${id}`);
    // Each line's arrival in the page, as the page script inserts it.
    await page.evaluate((sel: string) => {
      const seen: number[] = [];
      (window as unknown as { seen: number[] }).seen = seen;
      new MutationObserver((records) => {
        const now = Date.now();
        for (const r of records) for (const n of r.addedNodes) for (const m of (n.textContent ?? "").matchAll(/^L (\d{13})$/gm)) seen.push(now - Number(m[1]));
      }).observe(document.querySelector(sel)!, { childList: true, subtree: true });
    }, `pre.output[data-job="${job}"]`);
    await fs.writeFile(go, "");
    await d.waitForMsg("build finished", { build: id }, 120_000);
    await page.waitForFunction((n: number) => (window as unknown as { seen: number[] }).seen.length >= n, { timeout: 30_000 }, lines);
    const seen = await page.evaluate(() => (window as unknown as { seen: number[] }).seen);
    await reader.close();
    console.log(`1. print-to-browser latency, ${lines} lines 100 ms apart: p50 ${ms(pct(seen, 50))}, p99 ${ms(pct(seen, 99))} (goal p99 ≤ 1 s); a plain LISTEN reader of PostgreSQL: p50 ${ms(pct(raw, 50))}, p99 ${ms(pct(raw, 99))} (browser/raw p99 ${ratio(pct(seen, 99), pct(raw, 99))})`);
  } finally {
    await browser.close();
  }
}

/** utime + stime of `pid`, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const peakRssMiB = (pid: number) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

/** A job printing `mbps` MB/s for `seconds` s, a "@@T<ms>@@" mark at the head of every 64 KiB. */
const PRINTER = `
const rate = Number(process.argv[2]) * 1e6, end = Date.now() + Number(process.argv[3]) * 1000, chunk = 65536;
const filler = ("x".repeat(99) + "\\n").repeat(Math.floor(chunk / 100) - 1);
const t0 = Date.now();
let sent = 0;
function tick() {
  const now = Date.now();
  if (now >= end) return void process.stdout.write("@@T" + now + "@@ done\\n");
  while (sent < ((now - t0) / 1000) * rate) {
    process.stdout.write("@@T" + Date.now() + "@@\\n" + filler);
    sent += chunk;
  }
  setTimeout(tick, 5);
}
tick();
`;

/**
 * How far behind the printing a stream is, from the last whole mark in each chunk it gets (a
 * mark may be cut between two output rows or two chunks: those are passed over).
 */
function behindTracker(): { feed(chunk: Buffer): void; worst: number; done: boolean } {
  const t = {
    worst: 0,
    done: false,
    feed(chunk: Buffer) {
      for (let at = chunk.lastIndexOf("@@T"); at >= 0; at = at > 0 ? chunk.lastIndexOf("@@T", at - 1) : -1) {
        const m = /^@@T(\d{13})@@( done)?/.exec(chunk.subarray(at, at + 23).toString("latin1"));
        if (!m) continue;
        t.worst = Math.max(t.worst, Date.now() - Number(m[1]));
        if (m[2]) t.done = true;
        return;
      }
    },
  };
  return t;
}

async function fanOut(w: WebEnv, d: DaemonProcess): Promise<void> {
  const go = path.join(w.t.dir, "go-fanout");
  const script = path.join(w.t.dir, "printer.js");
  await fs.writeFile(script, PRINTER);
  const { id, job } = await waitingBuild(w.t, go, [`${JSON.stringify(process.execPath)} ${script} ${mbps} ${seconds}`]);
  const rawLag = behindTracker();
  const reader = await listenReader(w.t, id, job, (data) => rawLag.feed(Buffer.from(data)));
  const requests: http.ClientRequest[] = [];
  const errors = new Map<string, number>();
  const lags = Array.from({ length: viewers }, () => behindTracker());
  // node:http rather than fetch: the viewers must cost this process as little as they can.
  const streams = await Promise.all(
    lags.map(
      (lag) =>
        new Promise<{ done: Promise<number> }>((resolve, reject) => {
          const req = http.get(`${w.url}/builds/${id}/events`, (res) => {
            let bytes = 0;
            const done = new Promise<number>((end) => {
              res.on("data", (chunk: Buffer) => {
                bytes += chunk.length;
                lag.feed(chunk);
              });
              res.on("end", () => end(bytes));
              res.on("error", (err) => {
                errors.set(err.message, (errors.get(err.message) ?? 0) + 1);
                end(bytes);
              });
            });
            resolve({ done });
          });
          req.on("error", reject);
          requests.push(req);
        }),
    ),
  );
  const pid = w.web.child.pid!;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  await fs.writeFile(go, "");
  await d.waitForMsg("build finished", { build: id }, (seconds + 300) * 1000);
  const received = await Promise.all(streams.map((s) => s.done));
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  await reader.close();
  for (const r of requests) r.destroy();
  const stored = Number((await w.t.pool.query(`SELECT coalesce(sum(octet_length(data)), 0) AS n FROM job_output WHERE job_id = $1`, [job])).rows[0].n);
  const worst = Math.max(...lags.map((l) => l.worst));
  console.log(
    `2. ${viewers} viewers of one job printing ${mbps} MB/s for ${seconds} s (${(stored / 1e6).toFixed(0)} MB stored): web process peak RSS ${peakRssMiB(pid).toFixed(0)} MiB (goal < 200), CPU ${((cpu / wall) * 100).toFixed(0)}% of a core over ${wall.toFixed(1)} s; furthest behind: ${ms(worst)} (goal ≤ 2 s), ${lags.filter((l) => l.done).length}/${viewers} saw the end, ${(received.reduce((a, b) => a + b, 0) / 1e6).toFixed(0)} MB sent; a plain LISTEN reader: ${ms(rawLag.worst)} behind (viewers/raw ${ratio(worst, Math.max(1, rawLag.worst))})`,
  );
  for (const [message, n] of errors) console.log(`   ${n} viewer(s) cut off: ${message}`);
  const complaints = w.web.raw.filter((l) => /"level":"(warn|error)"/.test(l));
  if (complaints.length) console.log(`   the web process logged ${complaints.length} warning(s) or error(s), the first: ${complaints[0]}`);
}

async function timeIt(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times;
}

async function listPage(w: WebEnv): Promise<void> {
  const statuses = ["passed", "failed", "killed", "timed_out", "passed_with_failures"];
  await w.t.pool.query(
    `INSERT INTO builds (status, secret, driver, manifest, namespace, created_at, started_at, finished_at, worker, attempt)
     SELECT ($1::text[])[1 + i % 5], 'x', '{"type": "os"}', 'driver: {type: os}', 'team-' || (i % 50), now() - (i || ' s')::interval, now() - (i || ' s')::interval, now() - (i || ' s')::interval + interval '42 s', 'bench', 1
     FROM generate_series(1, $2::int) AS i`,
    [statuses, builds],
  );
  await w.t.pool.query("ANALYZE builds");
  const total = Number((await w.t.pool.query("SELECT count(*) AS n FROM builds")).rows[0].n);
  const newest = Number((await w.t.pool.query("SELECT max(id) AS n FROM builds")).rows[0].n);
  const cases: [string, Record<string, string>][] = [
    ["first page", {}],
    ["?namespace=team-7", { namespace: "team-7" }],
    ["?status=failed", { status: "failed" }],
    [`?before=${Math.floor(newest / 2)} (halfway)`, { before: String(Math.floor(newest / 2)) }],
  ];
  const out: string[] = [];
  for (const [name, q] of cases) {
    const url = `${w.url}/?${new URLSearchParams(q)}`;
    const get = async () => {
      const r = await fetch(url);
      if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
      await r.arrayBuffer();
    };
    await timeIt(5, get);
    const page = await timeIt(50, get);
    const { sql, params } = listQuery({ ...q, before: q.before ? Number(q.before) : undefined }, 51);
    const query = await timeIt(50, () => w.t.pool.query(sql, params));
    out.push(`   ${name}: p50 ${ms(pct(page, 50))}, p99 ${ms(pct(page, 99))}; its SQL alone p50 ${ms(pct(query, 50))} (page/SQL ${ratio(pct(page, 50), pct(query, 50))})`);
  }
  console.log(`3. the builds list with ${total} builds, server time as a client on 127.0.0.1 sees it (goal < 50 ms):\n${out.join("\n")}`);
}

async function artifactDownload(w: WebEnv, d: DaemonProcess): Promise<void> {
  const id = await w.t.submit(["driver: {type: os}", "stages: [a]", "jobs:", "  - stage: a", "    commands:", `      - "head -c ${artifactMib * 1048576} /dev/zero > big.bin"`, "    artifacts: [big.bin]", ""].join("\n"));
  await d.waitForMsg("build finished", { build: id }, 300_000);
  const row = (await w.t.pool.query(`SELECT id, path FROM artifacts WHERE build_id = $1`, [id])).rows[0];
  const file = path.resolve(w.t.dir, "artifacts", row.path);
  const rawRead = async () => {
    let n = 0;
    for await (const chunk of (await fs.open(file)).createReadStream()) n += (chunk as Buffer).length;
    return n;
  };
  const httpRead = async () => {
    let n = 0;
    const res = await fetch(`${w.url}/builds/${id}/artifacts/${row.id}`);
    for await (const chunk of res.body!) n += chunk.length;
    return n;
  };
  const best = async (fn: () => Promise<number>) => Math.min(...(await timeIt(3, fn)));
  const raw = await best(rawRead);
  const http = await best(httpRead);
  const mibps = (t: number) => `${((artifactMib * 1000) / t).toFixed(0)} MiB/s`;
  console.log(`4. a ${artifactMib} MiB artifact: downloaded ${mibps(http)}, the stored file read raw ${mibps(raw)} (raw/download ${ratio(http, raw)} the time)`);
}

const suite = new Suite();
await suite.start();
try {
  const w = await webEnv(suite);
  try {
    const d = await w.t.daemon();
    console.log(`djinn-worker web, os driver, real PostgreSQL and chromium`);
    if (only.includes(1)) await latency(w, d);
    if (only.includes(2)) await fanOut(w, d);
    if (only.includes(4)) await artifactDownload(w, d);
    if (only.includes(3)) await listPage(w);
  } finally {
    await w.stop();
  }
} finally {
  await suite.stop();
}
