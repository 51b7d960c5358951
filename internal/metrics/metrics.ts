// Prometheus metrics and the health endpoint: GET /metrics, GET /healthz on [metrics] addr.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { EnvironmentError, systemReason } from "../errors/errors.js";
import { listenAddress } from "../net/address.js";
import { checkListenAddr, SERVER_NAME } from "../net/listen.js";
import type { Status } from "../runner/status.js";

/** Resolves when the dependency is reachable, rejects with the reason when not. */
export type Probe = () => Promise<void>;

export interface ServeOptions {
  /** Longest one probe may take before /healthz reports it failed (default 2000 ms). */
  probeTimeoutMs?: number;
}

export interface MetricsServer {
  close(): Promise<void>;
  port: number;
}

export interface HealthReport {
  status: "ok" | "fail";
  checks: Record<string, string>;
}

const DEFAULT_PROBE_TIMEOUT_MS = 2000;

/** "host:port", "[v6]:port" or ":port" (all interfaces); port 0 picks a free one. */
export function parseListenAddr(addr: string): { host: string | undefined; port: number } {
  const a = listenAddress(addr);
  if (!a) throw new Error(`metrics.addr ${JSON.stringify(addr)} is not host:port with a port of 0-65535 (e.g. "127.0.0.1:9110")`);
  return a;
}

/**
 * For `check`: whether the daemon can listen on `addr`. A port that is free, or taken by a
 * djinn-worker's metrics server (the daemon already running), is fine; anything else is the
 * line the daemon would stop with.
 */
export async function checkListen(addr: string): Promise<string> {
  parseListenAddr(addr);
  return checkListenAddr(addr, "metrics", "/healthz");
}

export class Metrics {
  /** This instance's own registry: several workers (or tests) in one process never share counters. */
  readonly registry = new Registry();
  readonly #builds: Counter<"status">;
  readonly #buildDuration: Histogram<"status">;
  readonly #queueWait: Histogram;
  readonly #running: Gauge;
  readonly #queueDepth: Gauge<"queue">;
  readonly #healed: Counter<"queue">;
  readonly #cacheHits: Counter;
  readonly #cacheMisses: Counter;
  readonly #cacheRestored: Counter;
  readonly #cacheSaved: Counter;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    dropLintFailingDefaults(this.registry);
    this.#builds = new Counter({ name: "djinn_builds_total", help: "Builds finished, by final status.", labelNames: ["status"], registers });
    this.#buildDuration = new Histogram({
      name: "djinn_build_duration_seconds",
      help: "Time from a build starting to its final status.",
      labelNames: ["status"],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
      registers,
    });
    this.#queueWait = new Histogram({
      name: "djinn_queue_wait_seconds",
      help: "Time a build waited in the queue before a worker took it.",
      buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600],
      registers,
    });
    this.#running = new Gauge({ name: "djinn_builds_running", help: "Builds running on this worker now.", registers });
    this.#queueDepth = new Gauge({ name: "djinn_queue_depth", help: "Builds waiting in each queue of the installation (every <queue>_<driver> list), served by a live worker or not.", labelNames: ["queue"], registers });
    this.#healed = new Counter({
      name: "djinn_queue_healed_total",
      help: "Builds waiting in PostgreSQL with no payload left in Redis (Redis lost its data), put back on their queue by this worker.",
      labelNames: ["queue"],
      registers,
    });
    this.#cacheHits = new Counter({ name: "djinn_cache_hits_total", help: "Build caches restored.", registers });
    this.#cacheMisses = new Counter({ name: "djinn_cache_misses_total", help: "Build caches asked for and not restored: none saved yet, damaged, or unpacking failed.", registers });
    this.#cacheRestored = new Counter({ name: "djinn_cache_restored_bytes_total", help: "Bytes of cache entries (as stored, compressed) restored into builds.", registers });
    this.#cacheSaved = new Counter({ name: "djinn_cache_saved_bytes_total", help: "Bytes of cache entries (as stored, compressed) saved from builds.", registers });
  }

  /** What the cache jobs of builds report (../runner/cache.ts). */
  readonly cache = {
    hit: (bytes: number) => {
      this.#cacheHits.inc();
      this.#cacheRestored.inc(bytes);
    },
    miss: () => this.#cacheMisses.inc(),
    saved: (bytes: number) => this.#cacheSaved.inc(bytes),
  };

  buildFinished(status: Status, durationSeconds: number): void {
    this.#builds.inc({ status });
    this.#buildDuration.observe({ status }, Math.max(0, durationSeconds));
  }

  queueWait(seconds: number): void {
    this.#queueWait.observe(Math.max(0, seconds));
  }

  setRunning(n: number): void {
    this.#running.set(n);
  }

  setQueueDepth(queue: string, depth: number): void {
    this.#queueDepth.set({ queue }, depth);
  }

  queueHealed(queue: string, builds: number): void {
    this.#healed.inc({ queue }, builds);
  }

  /** Runs every probe at once, each bounded, so one hung dependency can't hang the health check. */
  async health(probes: Record<string, Probe>, timeoutMs = DEFAULT_PROBE_TIMEOUT_MS): Promise<HealthReport> {
    const names = Object.keys(probes);
    const results = await Promise.all(names.map((name) => runProbe(probes[name]!, timeoutMs)));
    const checks: Record<string, string> = {};
    names.forEach((name, i) => (checks[name] = results[i]!.ok ? "ok" : results[i]!.reason));
    return { status: results.every((r) => r.ok) ? "ok" : "fail", checks };
  }

  serve(addr: string, probes: Record<string, Probe>, opts: ServeOptions = {}): Promise<MetricsServer> {
    const { host, port } = parseListenAddr(addr);
    const timeoutMs = opts.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    const server = http.createServer((req, res) => {
      this.#handle(req, res, probes, timeoutMs).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`internal error: ${err.message}\n`);
      });
    });
    return new Promise((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => reject(new EnvironmentError(`metrics: cannot listen on ${addr}: ${systemReason(err.code) ?? err.message}`)));
      server.listen(port, host, () => {
        resolve({
          port: (server.address() as AddressInfo).port,
          close: () =>
            new Promise<void>((done) => {
              server.close(() => done());
              // Keep-alive connections from a scraper would otherwise hold close() open.
              server.closeAllConnections();
            }),
        });
      });
    });
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse, probes: Record<string, Probe>, timeoutMs: number): Promise<void> {
    res.setHeader("server", SERVER_NAME);
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path !== "/metrics" && path !== "/healthz") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: try /metrics or /healthz\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return;
    }
    if (path === "/metrics") {
      const body = await this.registry.metrics();
      res.writeHead(200, { "content-type": this.registry.contentType }).end(req.method === "HEAD" ? undefined : body);
      return;
    }
    const report = await this.health(probes, timeoutMs);
    const body = JSON.stringify(report);
    res.writeHead(report.status === "ok" ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" }).end(req.method === "HEAD" ? undefined : body);
  }
}

/**
 * prom-client's default `nodejs_active_{handles,requests,resources}_total` are gauges whose names end
 * in _total, which `promtool check metrics` rejects; the same counts remain, by type, in
 * `nodejs_active_handles`, `nodejs_active_requests` and `nodejs_active_resources`.
 */
function dropLintFailingDefaults(registry: Registry): void {
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) registry.removeSingleMetric(name);
}

type ProbeResult = { ok: true } | { ok: false; reason: string };

async function runProbe(probe: Probe, timeoutMs: number): Promise<ProbeResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<ProbeResult>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, reason: `timed out after ${timeoutMs}ms` }), timeoutMs);
  });
  try {
    return await Promise.race([
      Promise.resolve()
        .then(probe)
        .then(
          (): ProbeResult => ({ ok: true }),
          (err: unknown): ProbeResult => ({ ok: false, reason: (err instanceof Error ? err.message : String(err)) || "failed" }),
        ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
