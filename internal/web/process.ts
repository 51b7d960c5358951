// What a service manager and logrotate need of `djinn-worker web`, as the daemon gives them: a
// SIGHUP reopens the log file, and with `[web] pidfile` the pid and what the process is doing
// (`<pidfile>.state`: starting, waiting: <why>, serving, stopping, stopped: <why>) for the
// SysVinit script's start and status.
import { reopenLog, type Logger } from "../log/log.js";
import { removePidfile, writePidfile, writeState } from "../worker/pidfile.js";

export interface WebProcess {
  /** Says what the process is doing now. */
  state(state: string): void;
  /** The start failed: says why and gives the pidfile up. */
  failed(err: unknown): void;
  /** Stopped: the pidfile is given up. */
  stopped(): void;
}

/** Called once the configuration is read: from then on a SIGHUP (logrotate) never ends the process. */
export function webProcess(pidfile: string | undefined, log: Logger): WebProcess {
  process.on("SIGHUP", () => {
    reopenLog(log);
    log.info("SIGHUP: log file reopened");
  });
  if (pidfile) writePidfile(pidfile);
  writeState(pidfile, "starting");
  return {
    state: (state) => writeState(pidfile, state),
    failed(err) {
      writeState(pidfile, `stopped: ${(err as Error).message}`);
      removePidfile(pidfile);
    },
    stopped: () => removePidfile(pidfile),
  };
}
