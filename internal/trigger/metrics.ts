// What the web process counts of the forges' webhooks, served at its GET /metrics (Prometheus):
// the daemon's own metrics are on [metrics] addr; these live where the webhooks arrive.
import { Counter, Registry } from "prom-client";

/** Why a webhook started nothing, as the refused counter's `reason` label says it. */
export type RefusalReason = "signature" | "too_large" | "malformed" | "no_provider" | "fetch" | "unavailable";

export class HookMetrics {
  readonly registry = new Registry();
  readonly #received: Counter;
  readonly #refused: Counter;
  readonly #started: Counter;

  constructor() {
    const registers = [this.registry];
    this.#received = new Counter({ name: "djinn_webhooks_received_total", help: "Webhook requests received, by forge route.", labelNames: ["provider"], registers });
    this.#refused = new Counter({ name: "djinn_webhooks_refused_total", help: "Webhook requests refused, by forge route and reason.", labelNames: ["provider", "reason"], registers });
    this.#started = new Counter({ name: "djinn_trigger_builds_started_total", help: "Builds started by webhooks (refused manifests included), by provider.", labelNames: ["provider"], registers });
  }

  received(provider: string): void {
    this.#received.inc({ provider });
  }

  refused(provider: string, reason: RefusalReason): void {
    this.#refused.inc({ provider, reason });
  }

  started(provider: string, builds: number): void {
    if (builds > 0) this.#started.inc({ provider }, builds);
  }
}
