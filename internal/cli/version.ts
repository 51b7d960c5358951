// The version line of `djinn-worker -version`, in Djinn's shape: name, version, GOOS/GOARCH.
import { readFileSync } from "node:fs";

// The release binary has its version built in (it has no package.json beside it); a build reads it.
declare const DJINN_VERSION: string | undefined;

const GO_ARCH: Record<string, string> = { x64: "amd64", ia32: "386" };

export function versionLine(): string {
  const version = typeof DJINN_VERSION === "string" ? DJINN_VERSION : (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  return `djinn-worker ${version} ${process.platform}/${GO_ARCH[process.arch] ?? process.arch}`;
}
