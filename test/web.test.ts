// `djinn-worker web` over HTTP, against a real daemon running os builds and real PostgreSQL:
// every route, hostile names and output, Range, an artifact row that points outside the store,
// bad ids, the list's index, and the daemon's notifications.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import pg from "pg";
import { BUILD_CHANNEL } from "../internal/store/recorder.js";
import { listQuery } from "../internal/web/queries.js";
import { daemonSuite, osManifest, servicesSkip } from "./helpers/daemon-suite.js";
import { runCli } from "./helpers/services.js";
import { webEnv } from "./helpers/web.js";

const skip = servicesSkip();

const SECRET = "s3cr3t-Value-4711";
const HOSTILE_OUTPUT = `<script>alert(1)</script>\n"><img src=x onerror=alert(2)>\n`;

/** A build whose namespace, job name, output and artifact name are all hostile, with a masked variable. */
const hostileManifest = [
  "namespace: '\"><svg onload=alert(3)>'",
  "driver:",
  "  type: os",
  "stages: [build]",
  "jobs:",
  "  - stage: build",
  "    name: '<img src=x onerror=alert(4)>'",
  "    commands:",
  `      - ${JSON.stringify(`printf '%b' ${JSON.stringify(HOSTILE_OUTPUT)}`)}`,
  `      - "echo token=$TOKEN; echo ${SECRET}"`,
  "      - \"printf '\\\\033[31mred\\\\033[0m\\\\n'\"",
  "      - \"head -c 100000 /dev/urandom > blob.bin\"",
  "    artifacts:",
  "      - 'blob.bin => résumé <b>\"q\".bin'",
  "",
].join("\n");

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; text: string; bytes: Buffer }> {
  const r = await fetch(url, { headers });
  const bytes = Buffer.from(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, text: bytes.toString("utf8"), bytes };
}

describe("djinn-worker web", { skip }, () => {
  const suite = daemonSuite();

  it("shows a finished build escaped, without its secret, on every page and in the API", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const d = await w.t.daemon();
    const id = await w.t.submit(hostileManifest, ["--secret", `TOKEN=${SECRET}`, "--env", "PLAIN=shown-value"]);
    await d.waitForMsg("build finished", { build: id });
    assert.equal((await w.t.build(id)).status, "passed");

    const list = await get(`${w.url}/`);
    assert.equal(list.status, 200);
    assert.match(list.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    assert.match(list.text, new RegExp(`href="/builds/${id}"`));
    assert.match(list.text, /&quot;&gt;&lt;svg onload=alert\(3\)&gt;/);
    assert.doesNotMatch(list.text, /<svg onload/);

    const page = await get(`${w.url}/builds/${id}`);
    assert.equal(page.status, 200);
    for (const hostile of ["<script>alert(1)", "<img src=x onerror", "<svg onload", "<b>"]) assert.ok(!page.text.includes(hostile), `page holds ${hostile} unescaped`);
    assert.ok(page.text.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert.ok(page.text.includes("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert.ok(page.text.includes("&lt;img src=x onerror=alert(4)&gt;"), "the job name, escaped");
    assert.match(page.text, /<span class="ansi-red-fg">red<\/span>/, "ANSI colours rendered as classes");
    assert.ok(!page.text.includes(SECRET), "the masked value never reaches the page");
    assert.match(page.text, /<code>TOKEN<\/code><\/td><td><code>xxxxxx<\/code>/);
    assert.match(page.text, /<code>PLAIN<\/code><\/td><td><code>shown-value<\/code>/);
    const art = (await w.t.pool.query(`SELECT id, sha256, job_id FROM artifacts WHERE build_id = $1`, [id])).rows[0];
    assert.ok(page.text.includes(art.sha256));
    assert.ok(page.text.includes(`href="/builds/${id}/artifacts/${art.id}"`));
    assert.ok(page.text.includes("résumé &lt;b&gt;&quot;q&quot;.bin"));

    const stored = (await w.t.pool.query(`SELECT string_agg(data, '' ORDER BY id) AS text FROM job_output WHERE job_id = $1`, [art.job_id])).rows[0].text;
    const raw = await get(`${w.url}/builds/${id}/jobs/${art.job_id}/raw`);
    assert.equal(raw.status, 200);
    assert.match(raw.headers.get("content-type") ?? "", /^text\/plain/);
    assert.equal(raw.text, stored);
    assert.ok(raw.text.includes(HOSTILE_OUTPUT) && !raw.text.includes(SECRET));
    const apiOut = await get(`${w.url}/api/builds/${id}/jobs/${art.job_id}/output`);
    assert.equal(apiOut.text, stored);

    const api = JSON.parse((await get(`${w.url}/api/builds/${id}`)).text);
    assert.equal(api.status, "passed");
    assert.equal(api.namespace, '"><svg onload=alert(3)>');
    assert.deepEqual(api.stages.at(-1).jobs.map((j: { name: string; exit_code: number }) => [j.name, j.exit_code]), [["<img src=x onerror=alert(4)>", 0]]);
    assert.deepEqual(api.artifacts.map((a: { sha256: string }) => a.sha256), [art.sha256]);
    assert.deepEqual(api.variables, [{ key: "PLAIN", value: "shown-value", masked: false }, { key: "TOKEN", masked: true }]);
    assert.ok(!JSON.stringify(api).includes(SECRET));
    const apiList = JSON.parse((await get(`${w.url}/api/builds?namespace=${encodeURIComponent('"><svg onload=alert(3)>')}`)).text);
    assert.deepEqual(apiList.builds.map((b: { id: number }) => b.id), [id]);

    const badge = await get(`${w.url}/badge/${encodeURIComponent('"><svg onload=alert(3)>')}.svg`);
    assert.equal(badge.status, 200);
    assert.match(badge.headers.get("content-type") ?? "", /^image\/svg\+xml/);
    assert.match(badge.text, /<title>build: passed<\/title>/);
    assert.equal((await get(`${w.url}/badge/nobody-here.svg`)).status, 404);
  });

  it("answers bad ids and parameters with 4xx and one line, JSON under /api/", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    for (const [url, status, error] of [
      ["/api/builds/abc", 400, '"abc" is not a build id (a positive integer)'],
      ["/api/builds/0", 400, '"0" is not a build id (a positive integer)'],
      ["/api/builds/99999999", 404, "build 99999999 not found"],
      ["/api/builds?status=bogus", 400, 'status "bogus" is not a build status (one of queued, running, passed, passed_with_failures, failed, killed, timed_out)'],
      ["/api/builds?before=-1", 400, '"-1" is not a build id (a positive integer)'],
      ["/api/builds?status=failed&status=passed", 400, "query parameter status given more than once"],
      ["/api/builds/1/jobs/x/output", 400, '"x" is not a job id (a positive integer)'],
      ["/api/nothing", 404, "nothing at /api/nothing"],
    ] as const) {
      const r = await get(w.url + url);
      assert.equal(r.status, status, url);
      assert.match(r.headers.get("content-type") ?? "", /^application\/json/, url);
      assert.equal(r.text, JSON.stringify({ error }) + "\n", url);
    }
    for (const [url, status] of [
      ["/builds/abc", 400],
      ["/builds/12345", 404],
      ["/builds/1/jobs/1/raw", 404],
      ["/builds/1/artifacts/x", 400],
      ["/builds/1/artifacts/1", 404],
      ["/builds/-1/events", 400],
      ["/?status=%3Cscript%3E", 400],
    ] as const) {
      const r = await get(w.url + url);
      assert.equal(r.status, status, url);
      assert.ok(!r.text.includes("<script>"), `${url} echoes its input escaped`);
    }
  });

  it("serves an artifact whole and by range, with a safe name, and nothing outside the store", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const d = await w.t.daemon();
    const id = await w.t.submit(hostileManifest, ["--secret", `TOKEN=${SECRET}`]);
    await d.waitForMsg("build finished", { build: id });
    const art = (await w.t.pool.query(`SELECT id, sha256, size, path FROM artifacts WHERE build_id = $1`, [id])).rows[0];
    const url = `${w.url}/builds/${id}/artifacts/${art.id}`;
    const whole = await get(url);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get("content-length"), "100000");
    assert.equal(whole.headers.get("accept-ranges"), "bytes");
    assert.equal(createHash("sha256").update(whole.bytes).digest("hex"), art.sha256);
    assert.equal(whole.headers.get("content-disposition"), `attachment; filename="r_sum_ _b__q_.bin"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%3Cb%3E%22q%22.bin`);

    const part = await get(url, { range: "bytes=10-19" });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), "bytes 10-19/100000");
    assert.deepEqual(part.bytes, whole.bytes.subarray(10, 20));
    const resume = await get(url, { range: "bytes=99990-" });
    assert.equal(resume.status, 206);
    assert.deepEqual(resume.bytes, whole.bytes.subarray(99990));
    const suffix = await get(url, { range: "bytes=-5" });
    assert.deepEqual(suffix.bytes, whole.bytes.subarray(99995));
    const beyond = await get(url, { range: "bytes=100000-" });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get("content-range"), "bytes */100000");

    // A row that names a file outside [artifacts] path, directly, by "..", or through a symlink in the store.
    const root = path.join(w.t.dir, "artifacts");
    await fs.symlink("/etc/passwd", path.join(root, String(id), "link"));
    for (const outside of ["/etc/passwd", path.join(root, String(id), "..", "..", "worker.toml"), path.join(root, String(id), "link"), root]) {
      await w.t.pool.query(`UPDATE artifacts SET path = $2 WHERE id = $1`, [art.id, outside]);
      const r = await get(url);
      assert.equal(r.status, 404, outside);
      assert.ok(!r.text.includes("root:") && !r.text.includes("[crypto]"), outside);
    }
  });

  it("pages the list by id with filters, on an index that keeps the first page fast at 100,000 builds", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    // The oldest few builds are the only timed_out ones and the only ones of namespace "rare":
    // without an index, their first page reads through every newer build.
    await w.t.pool.query(
      `INSERT INTO builds (secret, driver, manifest, namespace, status)
       SELECT 's', '{"type":"os"}', '', CASE WHEN i <= 3 THEN 'rare' ELSE 'ns' || (i % 10) END,
         CASE WHEN i <= 5 THEN 'timed_out' ELSE (ARRAY['passed','failed','running','queued','killed'])[1 + i % 5] END
       FROM generate_series(1, 100000) i`,
    );
    await w.t.pool.query(`ANALYZE builds`);
    for (const f of [{}, { status: "timed_out" as const }, { namespace: "rare" }, { status: "failed" as const, before: 50_000 }, { status: "failed" as const, namespace: "ns1" }]) {
      const { sql, params } = listQuery(f, 51);
      const plan = (await w.t.pool.query(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ${sql}`, params)).rows.map((r) => r["QUERY PLAN"]).join("\n");
      assert.doesNotMatch(plan, /Seq Scan/, `${JSON.stringify(f)}:\n${plan}`);
      const removed = Math.max(0, ...[...plan.matchAll(/Rows Removed by Filter: (\d+)/g)].map((m) => Number(m[1])));
      assert.ok(removed < 1000, `${JSON.stringify(f)} reads through ${removed} builds for its first page:\n${plan}`);
    }
    const first = JSON.parse((await get(`${w.url}/api/builds?status=failed&namespace=ns1`)).text);
    assert.equal(first.builds.length, 50);
    assert.ok(first.builds.every((b: { status: string; namespace: string }) => b.status === "failed" && b.namespace === "ns1"));
    const second = JSON.parse((await get(`${w.url}/api/builds?status=failed&namespace=ns1&before=${first.next}`)).text);
    assert.equal(second.builds[0].id, first.builds[49].id - 10, "the next page starts right after the last one shown");
    const html = await get(`${w.url}/?status=failed&namespace=ns1`);
    assert.ok(html.text.includes(`href="/?status=failed&amp;namespace=ns1&amp;before=${first.next}"`));
  });

  it("follows a running job's raw log and event stream to its end, resuming after Last-Event-ID", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const listener = new pg.Client({ host: "127.0.0.1", port: suite.postgres.port, user: "postgres", database: (await w.t.pool.query("SELECT current_database() AS db")).rows[0].db });
    await listener.connect();
    ctx.after(() => listener.end());
    const notified: string[] = [];
    listener.on("notification", (n) => notified.push(`${n.channel}:${n.payload}`));
    await listener.query(`LISTEN ${BUILD_CHANNEL}`);

    const go = path.join(w.t.dir, "go");
    const d = await w.t.daemon();
    const id = await w.t.submit(osManifest([[`n=0; while [ ! -e ${go} ]; do n=$((n+1)); echo tick $n; sleep 0.2; done; echo done`]]));
    const job = (await w.t.pool.query(`SELECT id FROM jobs WHERE build_id = $1 AND name = 'job1'`, [id])).rows[0].id;
    const raw = await fetch(`${w.url}/builds/${id}/jobs/${job}/raw`);
    const reader = raw.body!.getReader();
    let text = "";
    while (!text.includes("tick 2\n")) {
      const { value, done } = await reader.read();
      assert.ok(!done, "the raw log stays open while the job runs");
      text += Buffer.from(value).toString();
    }
    assert.ok(notified.includes(`${BUILD_CHANNEL}:${id}`), "the daemon announced the build's output");
    const firstRow = Number((await w.t.pool.query(`SELECT min(id) AS id FROM job_output WHERE job_id = $1`, [job])).rows[0].id);
    await fs.writeFile(go, "");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    await d.waitForMsg("build finished", { build: id });
    const stored = (await w.t.pool.query(`SELECT string_agg(data, '' ORDER BY id) AS text FROM job_output WHERE job_id = $1`, [job])).rows[0].text;
    assert.equal(text, stored);
    assert.match(text, /done\n$/);

    // Resumed after the first row: every later row once, in order, then the end.
    const events = await get(`${w.url}/builds/${id}/events`, { "last-event-id": String(firstRow) });
    assert.match(events.headers.get("content-type") ?? "", /^text\/event-stream/);
    const outputs = [...events.text.matchAll(/event: output\nid: (\d+)\ndata: (.*)\n/g)].map((m) => ({ id: Number(m[1]), ...JSON.parse(m[2]) }));
    const rows = (await w.t.pool.query(`SELECT id, data FROM job_output WHERE build_id = $1 AND id > $2 ORDER BY id`, [id, firstRow])).rows;
    assert.deepEqual(outputs.map((o) => o.id), rows.map((r) => Number(r.id)));
    assert.equal(outputs.map((o) => o.html).join(""), rows.map((r) => r.data).join(""));
    assert.match(events.text, /event: end\nid: \d+\ndata: \{"status":"passed"\}\n\n$/);
  });

  it("shows a long output from its last MiB, with the raw log whole", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const d = await w.t.daemon();
    const id = await w.t.submit(osManifest([["echo FIRST-LINE; head -c 1600000 /dev/zero | tr '\\0' a | fold -w 100; echo LAST-LINE"]]));
    await d.waitForMsg("build finished", { build: id });
    const job = (await w.t.pool.query(`SELECT id FROM jobs WHERE build_id = $1 AND name = 'job1'`, [id])).rows[0].id;
    const page = await get(`${w.url}/builds/${id}`);
    const shown = page.text.slice(page.text.indexOf(`<pre class="output" data-job="${job}">`), page.text.indexOf("</pre>", page.text.indexOf(`data-job="${job}"`)));
    assert.ok(shown.endsWith("LAST-LINE\n") && !shown.includes("FIRST-LINE"), "the tail, not the head");
    assert.ok(page.text.includes("Only the last MiB of this job's output is shown here"));
    assert.ok(page.bytes.length < 1.2 * 1024 * 1024 && page.bytes.length > 1024 * 1024, `a page of ${page.bytes.length} bytes`);
    assert.ok(page.text.includes(`href="/builds/${id}/jobs/${job}/raw"`));
    const raw = await get(`${w.url}/builds/${id}/jobs/${job}/raw`);
    const stored = (await w.t.pool.query(`SELECT string_agg(data, '' ORDER BY id) AS text FROM job_output WHERE job_id = $1`, [job])).rows[0].text;
    assert.ok(raw.bytes.length > 1_600_000 && raw.text.includes("\nFIRST-LINE\n") && raw.text.endsWith("LAST-LINE\n"));
    assert.equal(raw.text, stored);
  });

  it("stops on SIGTERM while a page follows a running build, ending its event stream", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const d = await w.t.daemon();
    const go = path.join(w.t.dir, "go");
    const id = await w.t.submit(osManifest([[`while [ ! -e ${go} ]; do echo waiting; sleep 0.2; done`]]));
    await d.waitForMsg("build started", { build: id });
    const events = await fetch(`${w.url}/builds/${id}/events`);
    const reader = events.body!.getReader();
    let text = "";
    while (!text.includes("event: status")) text += Buffer.from((await reader.read()).value ?? []).toString();
    w.web.kill("SIGTERM");
    for (;;) {
      const r = await reader.read().catch(() => ({ done: true }));
      if (r.done) break;
    }
    assert.deepEqual(await w.web.exit, { code: 0, signal: null });
    assert.equal((await w.t.build(id)).status, "running", "the daemon goes on without the web process");
    await fs.writeFile(go, "");
    await d.waitForMsg("build finished", { build: id });
  });

  it("check finds [web] addr taken by a running djinn-worker web fine, and says so", async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const r = await runCli(["check", "-config", w.t.cfg.worker, "-driver", w.t.cfg.driver]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(r.stdout.split("\n").includes(`ok   web: ${w.url.replace("http://", "")} is served by a running djinn-worker`), r.stdout);
  });

  it("refuses to start without [web] or with a bad addr or session: one line naming file, key and line", async () => {
    const t = await suite.env();
    const none = await runCli(["web", "-config", t.cfg.worker]);
    assert.equal(none.code, 1);
    assert.equal(none.stderr, `djinn-worker: ${t.cfg.worker}: [web] section is required by djinn-worker web (addr = "host:port")\n`);
    const text = await fs.readFile(t.cfg.worker, "utf8");
    await fs.writeFile(t.cfg.worker, `${text}\n[web]\naddr = "127.0.0.1:1"\nsession = "1s"\n`);
    const line = (await fs.readFile(t.cfg.worker, "utf8")).split("\n").indexOf('session = "1s"') + 1;
    const short = await runCli(["web", "-config", t.cfg.worker]);
    assert.equal(short.code, 1);
    assert.match(short.stderr, new RegExp(`^djinn-worker: ${t.cfg.worker}:${line}: web\\.session: `));
    await fs.writeFile(t.cfg.worker, `${text}\n[web]\naddr = "nowhere"\n`);
    const bad = await runCli(["web", "-config", t.cfg.worker]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^djinn-worker: .*worker\.toml:\d+: web\.addr: must be host:port or :port/);
  });
});
