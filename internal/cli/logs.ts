// `djinn-worker logs`: a build's stored output, optionally followed until the build ends.
import { loadWorkerConfig } from "../config/config.js";
import { buildSummary } from "../store/builds.js";
import { readOutput } from "../store/output.js";
import { TERMINAL_STATUSES } from "../runner/status.js";
import { InputError } from "../errors/errors.js";
import { parseBuildId } from "./input.js";
import { withPool, type Out } from "./services.js";
import { waitingLine } from "./waiting.js";
import { terminalSafe } from "./terminal.js";
import { writeDrained } from "../stream/write.js";
import { sleep } from "../timers/timers.js";

/** With `follow`, a queued build is first said to wait (on `note`, stderr): on which queue, served by how many live workers. */
export async function logsCommand(configFile: string, idText: string, follow: boolean, out: Out, note: Out = process.stderr): Promise<void> {
  const id = parseBuildId(idText);
  const cfg = loadWorkerConfig(configFile);
  await withPool(cfg, async (pool) => {
    const first = await buildSummary(pool, id);
    if (!first) throw new InputError(`build ${id} not found`);
    if (follow && first.status === "queued") note.write(terminalSafe(await waitingLine(cfg, id, first.driver.type)) + "\n");
    let after = 0;
    let job = -1;
    const drain = async () => {
      for (;;) {
        const chunks = await readOutput(pool, id, after, BATCH);
        for (const c of chunks) {
          if (c.jobId !== job) {
            job = c.jobId;
            await writeDrained(out, `==> ${terminalSafe(`${c.stage} / ${c.job}`)}\n`);
          }
          await writeDrained(out, c.data);
          after = c.id;
        }
        if (chunks.length < BATCH) return;
      }
    };
    for (;;) {
      const status = follow ? (await buildSummary(pool, id))?.status : undefined;
      await drain();
      if (!follow) break;
      if (status && TERMINAL_STATUSES.includes(status)) {
        // How it ended, as `run` says it: following stops for a reason the reader should see.
        await writeDrained(out, `\nDone. Build ${status}\n`);
        break;
      }
      await sleep(500);
    }
  });
}

/** Chunks read at a time: at most a few MiB of output in memory whatever the build printed. */
const BATCH = 32;
