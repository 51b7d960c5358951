// The web process under test: an environment whose worker.toml has a [web] section on a free
// port, and `djinn-worker web` started on it.
import { spawn } from "node:child_process";
import { freeLocalPort } from "../../internal/net/port.js";
import type { Suite, TestEnv } from "./daemon-suite.js";
import type { ConfigOptions } from "./services.js";
import { cliPath } from "./env.js";
import { DaemonProcess } from "./services.js";

export interface WebEnv {
  t: TestEnv;
  /** http://127.0.0.1:<port> */
  url: string;
  web: DaemonProcess;
}

/** A fresh environment with [web], its web process started and listening; `stop` it after the test. */
export async function webEnv(suite: Suite, webLines: string[] = [], envOptions: Partial<ConfigOptions> = {}): Promise<WebEnv & { stop(): Promise<void> }> {
  const port = await freeLocalPort();
  const t = await suite.env({ ...envOptions, extra: ["[web]", `addr = "127.0.0.1:${port}"`, ...webLines].join("\n") });
  const child = spawn(process.execPath, [cliPath, "web", "-config", t.cfg.worker], { stdio: ["ignore", "pipe", "pipe"] });
  const web = new DaemonProcess(child);
  await web.waitForMsg("web listening");
  return { t, url: `http://127.0.0.1:${port}`, web, stop: () => web.stop() };
}
