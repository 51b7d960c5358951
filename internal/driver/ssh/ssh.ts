// The ssh driver: jobs run on a machine the manifest names (`driver: {type: ssh, address: host:port}`),
// in the login's home directory. The machine outlives the build: each job's processes are killed
// when it ends or is aborted, and the build's scripts are removed.
import { access, constants } from "node:fs/promises";
import type { Writable } from "node:stream";
import { settingsIn } from "../section.js";
import { sshSection, type SshConfig } from "./section.js";
import { formatDuration } from "../../timers/duration.js";
import { isPort, splitHostPort } from "../../net/address.js";
import { buildBaseEnv } from "../env.js";
import { DriverError, registerDriver, type Driver, type DriverOptions } from "../driver.js";
import { loginMethod } from "./connect.js";
import { SessionDriver, SshSession } from "./session.js";
import { fileReadReason } from "../../errors/errors.js";

/** `host:port`, `host` (port 22) or `[v6]:port`. */
export function parseAddress(address: string): { host: string; port: number } {
  const a = splitHostPort(address);
  const port = a?.port ?? 22;
  if (!a?.host || !isPort(port)) throw new DriverError(`driver.address ${JSON.stringify(address)}: expected host:port`);
  return { host: a.host, port };
}

export class SshDriver extends SessionDriver implements Driver {
  protected readonly notOpen = "the ssh driver is not connected";

  constructor(private readonly options: DriverOptions) {
    super();
  }

  private config(): SshConfig {
    const cfg = settingsIn(sshSection, this.options.config);
    if (!cfg) throw new DriverError("the ssh driver is not configured: add an [ssh] section to the driver file");
    return cfg;
  }

  async create(output: Writable, signal: AbortSignal): Promise<void> {
    const cfg = this.config();
    const address = this.options.manifest.address;
    if (!address) throw new DriverError("driver.address is required by the ssh driver");
    const { host, port } = parseAddress(address);
    output.write(`Connecting to ${cfg.user}@${address} (ssh driver, trying for up to ${formatDuration(cfg.timeoutMs)})\n`);
    const started = Date.now();
    this.session = await SshSession.open(
      { host, port, user: cfg.user, keyFile: cfg.key, password: cfg.password },
      { timeoutMs: cfg.timeoutMs, signal, buildSignal: signal, baseEnv: buildBaseEnv(this.options.buildId) },
    );
    output.write(`Connected after ${((Date.now() - started) / 1000).toFixed(1)}s, workspace ${this.session.workspace}${this.session.transferNote}\n`);
  }

  async destroy(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    await session?.close().catch(() => undefined);
  }
}

registerDriver({
  name: "ssh",
  create: (options) => new SshDriver(options),
  check: async (config) => {
    const cfg = settingsIn(sshSection, config);
    if (!cfg) throw new Error("no [ssh] section");
    if (cfg.key) {
      await access(cfg.key, constants.R_OK).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`[ssh] key ${cfg.key}: ${fileReadReason(err)}`);
      });
    }
    return [`ssh: log in as ${cfg.user} with ${loginMethod({ keyFile: cfg.key, password: cfg.password })}, trying for up to ${formatDuration(cfg.timeoutMs)}`];
  },
});
