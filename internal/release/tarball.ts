// The release tarball: the executable, the example configs, the daemon files, the docs and the example build.
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, mkdirSync } from "node:fs";
import path from "node:path";

export interface TarballInput {
  repo: string;
  exe: string;
  /** The directory name inside the tarball, and the tarball's name without .tar.gz. */
  name: string;
  workDir: string;
  outDir: string;
  /** Seconds since the epoch given to every file: the same commit makes the same tarball. */
  mtime: number;
}

/** Files copied from the repository as they are. */
export const TARBALL_FILES = ["README.md", "LICENSE", "worker.toml.example", "driver.toml.example", "dist/djinn-worker.service", "dist/djinn-worker", "dist/djinn-worker.logrotate", "dist/djinn-worker-web.service", "dist/djinn-worker-web", "dist/post-receive"];

export function tarball(t: TarballInput): string {
  const root = path.join(t.workDir, "tar", t.name);
  mkdirSync(path.join(root, "bin"), { recursive: true });
  copyFileSync(t.exe, path.join(root, "bin", "djinn-worker"));
  chmodSync(path.join(root, "bin", "djinn-worker"), 0o755);
  for (const f of TARBALL_FILES) {
    mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    copyFileSync(path.join(t.repo, f), path.join(root, f));
  }
  cpSync(path.join(t.repo, "docs"), path.join(root, "docs"), { recursive: true });
  cpSync(path.join(t.repo, "examples"), path.join(root, "examples"), { recursive: true });
  const out = path.join(t.outDir, `${t.name}.tar.gz`);
  execFileSync("tar", ["--create", "--gzip", "--file", out, "--sort=name", "--owner=0", "--group=0", "--numeric-owner", `--mtime=@${t.mtime}`, "-C", path.dirname(root), t.name], { stdio: "inherit" });
  return out;
}
