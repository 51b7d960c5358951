// `djinn-worker status`: a build's status and a line per job.
import { loadWorkerConfig } from "../config/config.js";
import { buildSummary } from "../store/builds.js";
import { buildTrigger, triggerLine } from "../store/triggers.js";
import { InputError } from "../errors/errors.js";
import { parseBuildId } from "./input.js";
import { withPool, type Out } from "./services.js";
import { waitingLine } from "./waiting.js";
import { terminalSafe } from "./terminal.js";

const seconds = (from: Date | null, to: Date | null) => (from && to ? `${((to.getTime() - from.getTime()) / 1000).toFixed(1)}s` : "");

export async function statusCommand(configFile: string, idText: string, out: Out): Promise<string> {
  const id = parseBuildId(idText);
  const cfg = loadWorkerConfig(configFile);
  return withPool(cfg, async (pool) => {
    const b = await buildSummary(pool, id);
    if (!b) throw new InputError(`build ${id} not found`);
    const lines = [`build ${b.id} ${b.status}`];
    // Names come from the build: escaped, so none can split a row or reach the terminal as a control.
    const label = (j: (typeof b.jobs)[number]) => terminalSafe(`${j.stage} / ${j.name}`);
    const width = Math.max(...b.jobs.map((j) => label(j).length));
    for (const j of b.jobs) {
      const exit = j.exitCode === null ? "" : `exit ${j.exitCode}`;
      lines.push(`  ${label(j).padEnd(width)}  ${j.status.padEnd(20)} ${exit.padEnd(8)} ${seconds(j.startedAt, j.finishedAt)}`.trimEnd());
    }
    const meta = [`driver ${b.driver.type}`, b.namespace ? `namespace ${b.namespace}` : "", b.worker ? `worker ${b.worker}` : "", b.attempt > 1 ? `attempt ${b.attempt}` : ""].filter(Boolean);
    lines.push(terminalSafe(`  (${meta.join(", ")}${b.startedAt && b.finishedAt ? `, took ${seconds(b.startedAt, b.finishedAt)}` : ""})`));
    const pushed = await buildTrigger(pool, b.id);
    if (pushed) lines.push(terminalSafe(`  ${triggerLine(pushed)}`));
    if (b.status === "queued") lines.push(terminalSafe(`  ${await waitingLine(cfg, b.id, b.driver.type)}`));
    out.write(lines.join("\n") + "\n");
    return b.status;
  });
}
