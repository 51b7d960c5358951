import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { spawnSync } from "node:child_process";
import net from "node:net";
import { checkListen, Metrics, parseListenAddr, type MetricsServer } from "../internal/metrics/metrics.js";
import { requireService, which } from "./helpers/env.js";

const servers: MetricsServer[] = [];
async function serve(metrics: Metrics, ...rest: Parameters<Metrics["serve"]> extends [string, ...infer R] ? R : never): Promise<string> {
  const server = await metrics.serve("127.0.0.1:0", ...rest);
  servers.push(server);
  assert.ok(server.port > 0, "port 0 must be replaced by the real port");
  return `http://127.0.0.1:${server.port}`;
}

/** The value of one sample line, e.g. sample(text, 'djinn_builds_total{status="passed"}'). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("metrics", () => {
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it("exposes build counters, histograms and gauges with their values on /metrics", async () => {
    const metrics = new Metrics();
    const base = await serve(metrics, {});
    metrics.buildFinished("passed", 12);
    metrics.buildFinished("passed", 400);
    metrics.buildFinished("failed", 3);
    metrics.queueWait(2.5);
    metrics.queueWait(0.05);
    metrics.setRunning(3);
    metrics.setQueueDepth("builds_docker", 7);
    metrics.setQueueDepth("builds_os", 0);

    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), metrics.registry.contentType);
    const text = await res.text();
    assert.equal(sample(text, 'djinn_builds_total{status="passed"}'), 2);
    assert.equal(sample(text, 'djinn_builds_total{status="failed"}'), 1);
    assert.equal(sample(text, 'djinn_build_duration_seconds_count{status="passed"}'), 2);
    assert.equal(sample(text, 'djinn_build_duration_seconds_sum{status="passed"}'), 412);
    assert.equal(sample(text, 'djinn_build_duration_seconds_bucket{le="15",status="passed"}'), 1);
    assert.equal(sample(text, 'djinn_build_duration_seconds_bucket{le="+Inf",status="passed"}'), 2);
    assert.equal(sample(text, 'djinn_build_duration_seconds_sum{status="failed"}'), 3);
    assert.equal(sample(text, "djinn_queue_wait_seconds_count"), 2);
    assert.equal(sample(text, "djinn_queue_wait_seconds_sum"), 2.55);
    assert.equal(sample(text, 'djinn_queue_wait_seconds_bucket{le="0.1"}'), 1);
    assert.equal(sample(text, "djinn_builds_running"), 3);
    assert.equal(sample(text, 'djinn_queue_depth{queue="builds_docker"}'), 7);
    assert.equal(sample(text, 'djinn_queue_depth{queue="builds_os"}'), 0);
    assert.match(text, /^# TYPE djinn_builds_total counter$/m);
    assert.match(text, /^# TYPE djinn_build_duration_seconds histogram$/m);
    assert.match(text, /^# TYPE djinn_builds_running gauge$/m);
    assert.ok(sample(text, "process_cpu_user_seconds_total") !== undefined, "default process metrics are included");

    metrics.setRunning(1);
    metrics.setQueueDepth("builds_docker", 2);
    const again = await (await fetch(`${base}/metrics?fresh=1`)).text();
    assert.equal(sample(again, "djinn_builds_running"), 1, "gauges report the latest value");
    assert.equal(sample(again, 'djinn_queue_depth{queue="builds_docker"}'), 2);
  });

  it("keeps each instance's metrics apart (own registry, not the global one)", async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.buildFinished("passed", 1);
    const textB = await b.registry.metrics();
    assert.equal(sample(textB, 'djinn_builds_total{status="passed"}'), undefined);
    assert.equal(sample(await a.registry.metrics(), 'djinn_builds_total{status="passed"}'), 1);
  });

  it("answers /healthz 200 with every check ok when all probes resolve", async () => {
    const base = await serve(new Metrics(), { redis: async () => {}, postgres: async () => {} });
    const res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.deepEqual(await res.json(), { status: "ok", checks: { redis: "ok", postgres: "ok" } });
  });

  it("answers /healthz 503 naming the failing check and its reason", async () => {
    const base = await serve(new Metrics(), {
      redis: async () => {},
      postgres: async () => {
        throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
      },
    });
    const res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { status: "fail", checks: { redis: "ok", postgres: "connect ECONNREFUSED 127.0.0.1:5432" } });
  });

  it("answers /healthz 503 once the probe timeout passes when a probe never resolves", { timeout: 15_000 }, async () => {
    // Default timeout (2 s): the daemon's configuration, not a test-only value.
    const base = await serve(new Metrics(), { redis: () => new Promise<void>(() => {}), postgres: async () => {} });
    const res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { status: "fail", checks: { redis: "timed out after 2000ms", postgres: "ok" } });

    const quick = await serve(new Metrics(), { redis: () => new Promise<void>(() => {}) }, { probeTimeoutMs: 100 });
    const res2 = await fetch(`${quick}/healthz`);
    assert.equal(res2.status, 503);
    assert.deepEqual(await res2.json(), { status: "fail", checks: { redis: "timed out after 100ms" } });
  });

  it("reports a probe that throws synchronously or rejects with a non-Error", async () => {
    const base = await serve(new Metrics(), {
      sync: () => {
        throw new Error("boom");
      },
      str: () => Promise.reject("plain reason"),
    });
    const res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { status: "fail", checks: { sync: "boom", str: "plain reason" } });
  });

  it("answers 404 for other paths and 405 for other methods", async () => {
    const base = await serve(new Metrics(), {});
    for (const path of ["/", "/metricsx", "/healthz/extra", "/favicon.ico"]) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 404, path);
      await res.text();
    }
    const post = await fetch(`${base}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.text();
  });

  it("stops answering after close()", async () => {
    const server = await new Metrics().serve("127.0.0.1:0", {});
    const url = `http://127.0.0.1:${server.port}/metrics`;
    assert.equal((await fetch(url)).status, 200);
    await server.close();
    await assert.rejects(fetch(url));
  });

  it("rejects a bad address or a port in use with a clear error", async () => {
    assert.throws(() => parseListenAddr("localhost"), /metrics\.addr "localhost" is not host:port/);
    assert.throws(() => parseListenAddr("127.0.0.1:99999"), /metrics\.addr "127\.0\.0\.1:99999" is not host:port with a port of 0-65535/);
    assert.deepEqual(parseListenAddr("[::1]:9110"), { host: "::1", port: 9110 });
    assert.deepEqual(parseListenAddr(":9110"), { host: undefined, port: 9110 });
    const taken = await new Metrics().serve("127.0.0.1:0", {});
    servers.push(taken);
    await assert.rejects(new Metrics().serve(`127.0.0.1:${taken.port}`, {}), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken.port}: address already in use$`));
  });

  it("check tells a free port and a running worker's port from a port another program holds", async () => {
    assert.equal(await checkListen("127.0.0.1:0"), "metrics: 127.0.0.1:0 is free to listen on");
    const worker = await new Metrics().serve("127.0.0.1:0", {});
    servers.push(worker);
    assert.equal(await checkListen(`127.0.0.1:${worker.port}`), `metrics: 127.0.0.1:${worker.port} is served by a running djinn-worker`);
    // Another program's HTTP server on the port; it hangs up after each answer, so closing it waits for nobody.
    const other = net.createServer((socket) => socket.end("HTTP/1.1 200 OK\r\nserver: nginx\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", () => socket.destroy()));
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      const port = (other.address() as net.AddressInfo).port;
      await assert.rejects(checkListen(`127.0.0.1:${port}`), new RegExp(`^EnvironmentError: metrics: cannot listen on 127\\.0\\.0\\.1:${port}: address already in use$`));
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });
});

const promtool = which("promtool");
describe("metrics lint", { skip: requireService("promtool", promtool ? undefined : "promtool not found (Debian package prometheus)") }, () => {
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it("passes `promtool check metrics` on what /metrics serves", async () => {
    const metrics = new Metrics();
    const base = await serve(metrics, {});
    metrics.buildFinished("passed", 2);
    metrics.buildFinished("failed", 9);
    metrics.queueWait(0.3);
    metrics.setRunning(1);
    metrics.setQueueDepth("builds_os", 4);
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.ok(sample(text, "nodejs_active_handles_total") === undefined, "the _total gauges are dropped");
    assert.match(text, /^nodejs_active_handles\{type="[A-Za-z]+"\} \d+$/m, "their counts remain, by type");
    const lint = spawnSync(promtool!, ["check", "metrics"], { input: text, encoding: "utf8" });
    assert.equal(lint.status, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}`);
  });
});
