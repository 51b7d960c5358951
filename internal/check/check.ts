// `djinn-worker check`: the effective configuration, then whether each configured part can work.
import { configuredDrivers, servedDrivers, type DriverConfig, type WorkerConfig } from "../config/config.js";
import { summarizeDrivers, summarizeWorker } from "../config/summary.js";
import { driverTypeOfQueue, getDriver } from "../driver/driver.js";
import "../driver/all.js";

export async function checkConfiguration(worker: WorkerConfig, drivers: DriverConfig, out: NodeJS.WritableStream): Promise<boolean> {
  const lines = [...summarizeWorker(worker), "", ...summarizeDrivers(drivers), ""];
  let ok = true;
  let served: string[] = [];
  try {
    served = servedDrivers(worker, drivers);
    lines.push(`queues: ${served.map((d) => `${worker.queue}_${d}`).join(", ")}`);
  } catch (err) {
    lines.push(`FAIL driver: ${(err as Error).message}`);
    ok = false;
  }
  for (const name of served.length ? served : configuredDrivers(drivers)) {
    const entry = getDriver(driverTypeOfQueue(name));
    try {
      for (const line of (await entry.check?.(drivers)) ?? [`${name}: configured`]) lines.push(`ok   ${line}`);
    } catch (err) {
      lines.push(`FAIL ${name}: ${(err as Error).message}`);
      ok = false;
    }
  }
  out.write(lines.join("\n") + "\n");
  return ok;
}
