// The daemon's configuration, checked as the daemon needs it. `djinn-worker check` loads the files
// with this same function, so a file check passes is a file the daemon starts with.
import { loadDriverConfig, loadWorkerConfig, requireSections, type DriverConfig, type WorkerConfig } from "../config/config.js";
import { queueList, servedDrivers } from "../queue/names.js";

export interface DaemonConfig {
  worker: WorkerConfig;
  drivers: DriverConfig;
  /** The lists the daemon takes builds from. */
  queues: string[];
}

/**
 * worker.toml and driver.toml as the daemon runs them, or the one ConfigError that refuses them:
 * a bad or unknown section or value (file, key, line), a section the daemon needs ([crypto],
 * [database], [redis]), a `driver` that driver.toml does not configure.
 */
export function loadDaemonConfig(configFile: string, driverFile: string): DaemonConfig {
  const worker = loadWorkerConfig(configFile);
  const drivers = loadDriverConfig(driverFile);
  requireSections(worker, "crypto", "database", "redis");
  const queues = servedDrivers(worker, drivers).map((d) => queueList(worker.queue, d));
  return { worker, drivers, queues };
}
