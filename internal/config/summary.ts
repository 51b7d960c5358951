// The effective configuration as `djinn-worker check` prints it: every key with its value,
// secrets as ***.
import { formatDuration } from "../timers/duration.js";
import { driverSchema, workerSchema, type DriverConfig, type WorkerConfig } from "./config.js";
import type { SectionSpec } from "../settings/spec.js";
import { driverSections } from "../driver/catalogue.js";

function render(spec: SectionSpec, values: Record<string, unknown>, prefix: string, out: string[]): void {
  for (const [key, keySpec] of Object.entries(spec.keys)) {
    // Djinn-only keys are never kept: check's warnings say they were seen and why they do nothing.
    if (keySpec.kind === "ignored") continue;
    const name = prefix + key;
    let v = values[key];
    if (v === undefined) {
      out.push(`  ${name} = (unset)`);
      continue;
    }
    if (keySpec.kind === "string" && keySpec.secret) v = v === "" ? "(empty)" : "***";
    else if (keySpec.kind === "duration") v = formatDuration(v as number);
    else if (typeof v === "string") v = JSON.stringify(v);
    out.push(`  ${name} = ${v}`);
  }
  for (const [name, sub] of Object.entries(spec.tables ?? {})) {
    const tables = (values[name] as Record<string, unknown>[] | undefined) ?? [];
    tables.forEach((t, i) => render(sub, t, `${prefix}${name}[${i}].`, out));
  }
  for (const [name, sub] of Object.entries(spec.sections ?? {})) {
    const inner = values[name] as Record<string, unknown> | undefined;
    if (!inner) {
      if (!prefix) out.push(`  [${name}] (not configured)`);
      continue;
    }
    if (Object.keys(sub.keys).length === 0 && !sub.sections) out.push(`  [${prefix}${name}] (configured)`);
    render(sub, inner, `${prefix}${name}.`, out);
  }
}

export function summarizeWorker(cfg: WorkerConfig): string[] {
  const values: Record<string, unknown> = {
    ...cfg,
    timeout: cfg.timeoutMs,
    lease: cfg.leaseMs,
    shutdown_timeout: cfg.shutdownTimeoutMs,
    output_limit: cfg.outputLimit,
    manifest_limit: cfg.manifestLimit,
    providers: cfg.providers.map((p) => ({ name: p.name, secret: p.secret, key: p.key, key_object: p.keyObject, token: p.token, api_url: p.apiUrl })),
  };
  const out = [`${cfg.file}:`];
  render(workerSchema, values, "", out);
  return out;
}

export function summarizeDrivers(cfg: DriverConfig): string[] {
  const values: Record<string, unknown> = {};
  for (const section of driverSections()) {
    const settings = (cfg as Record<string, unknown>)[section.name];
    if (settings) values[section.name] = section.shown(settings);
  }
  const out = [`${cfg.file ?? "(no driver file: the os driver only)"}:`];
  render(driverSchema, values, "", out);
  return out;
}
