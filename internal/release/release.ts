// `npm run release`: writes the release artifacts under release/ (after `npm run build`):
//   djinn-worker-<version>-linux-<arch>.tar.gz  the executable, example configs, daemon files, docs
//   djinn-worker_<version>_<arch>.deb          the same as a Debian package
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { bundle, singleExecutable } from "./bundle.js";
import { deb } from "./deb.js";
import { tarball } from "./tarball.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));

function commitTime(): number {
  try {
    return Number(execFileSync("git", ["-C", repo, "log", "-1", "--format=%ct"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
  } catch {
    return Math.floor(Date.now() / 1000);
  }
}

async function main(): Promise<void> {
  const version = (JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8")) as { version: string }).version;
  const arch = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
  const outDir = path.join(repo, "release");
  const workDir = path.join(outDir, "work");
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const mtime = Number(process.env.SOURCE_DATE_EPOCH) || commitTime();

  const script = path.join(workDir, "djinn-worker.cjs");
  const bundled = await bundle(path.join(repo, "build/cmd/main.js"), script, version);
  const exe = path.join(workDir, "djinn-worker");
  singleExecutable(script, exe, workDir);
  const outputs = [
    tarball({ repo, exe, name: `djinn-worker-${version}-linux-${arch}`, workDir, outDir, mtime }),
    deb({ repo, exe, version, arch, bundled, workDir, outDir, mtime }),
  ];
  rmSync(workDir, { recursive: true, force: true });
  for (const out of outputs) process.stdout.write(`${path.relative(process.cwd(), out)}  ${(statSync(out).size / 1024 / 1024).toFixed(1)} MiB\n`);
}

main().catch((err) => {
  process.stderr.write(`release: ${(err as Error).message}\n`);
  process.exit(1);
});
