// The Debian package, built with dpkg-deb: the executable, the configuration as conffiles, the
// service files of the daemon and of the web process, and the maintainer scripts of dist/debian
// (the djinn user, its directories).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";

export interface DebInput {
  repo: string;
  exe: string;
  version: string;
  /** Debian's name for the architecture (dpkg --print-architecture). */
  arch: string;
  /** npm packages bundled into the executable, for the copyright file. */
  bundled: string[];
  workDir: string;
  outDir: string;
  /** Seconds since the epoch: the changelog's date. */
  mtime: number;
}

export const MAINTAINER = "djinn-worker maintainers <djinn-worker@users.noreply.github.com>";

/** The unit and the SysVinit script name /usr/local/bin (an install from the tarball); the package installs to /usr/bin. */
function packagedPaths(text: string): string {
  return text.replaceAll("/usr/local/bin/djinn-worker", "/usr/bin/djinn-worker");
}

const CONFFILES = ["/etc/djinn/worker.toml", "/etc/djinn/driver.toml", "/etc/init.d/djinn-worker", "/etc/init.d/djinn-worker-web", "/etc/logrotate.d/djinn-worker"];

export function deb(d: DebInput): string {
  const root = path.join(d.workDir, "deb");
  const put = (dest: string, content: string | Buffer, mode: number) => {
    const file = path.join(root, dest);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
    chmodSync(file, mode);
  };
  const repoFile = (f: string) => readFileSync(path.join(d.repo, f));
  mkdirSync(path.join(root, "usr/bin"), { recursive: true });
  copyFileSync(d.exe, path.join(root, "usr/bin/djinn-worker"));
  chmodSync(path.join(root, "usr/bin/djinn-worker"), 0o755);
  put("etc/djinn/worker.toml", repoFile("worker.toml.example"), 0o640);
  put("etc/djinn/driver.toml", repoFile("driver.toml.example"), 0o640);
  put("lib/systemd/system/djinn-worker.service", packagedPaths(repoFile("dist/djinn-worker.service").toString()), 0o644);
  put("etc/init.d/djinn-worker", packagedPaths(repoFile("dist/djinn-worker").toString()), 0o755);
  // The web view (djinn-worker web): registered, enabled by nobody but the operator.
  put("lib/systemd/system/djinn-worker-web.service", packagedPaths(repoFile("dist/djinn-worker-web.service").toString()), 0o644);
  put("etc/init.d/djinn-worker-web", packagedPaths(repoFile("dist/djinn-worker-web").toString()), 0o755);
  put("etc/logrotate.d/djinn-worker", repoFile("dist/djinn-worker.logrotate"), 0o644);
  put("usr/share/djinn-worker/post-receive", repoFile("dist/post-receive"), 0o755);
  const doc = "usr/share/doc/djinn-worker";
  put(`${doc}/copyright`, copyright(d), 0o644);
  put(`${doc}/changelog.gz`, gzipSync(changelog(d), { level: 9 }), 0o644);
  put("usr/share/lintian/overrides/djinn-worker", repoFile("dist/debian/lintian-overrides"), 0o644);
  put(`${doc}/README.md.gz`, gzipSync(repoFile("README.md"), { level: 9 }), 0o644);
  // The README's links (docs/install.md, examples/hello.yml) lead somewhere on a machine that has only the package.
  for (const f of readdirSync(path.join(d.repo, "docs")).filter((f) => f.endsWith(".md"))) put(`${doc}/docs/${f}.gz`, gzipSync(repoFile(`docs/${f}`), { level: 9 }), 0o644);
  for (const f of readdirSync(path.join(d.repo, "examples"))) put(`${doc}/examples/${f}`, repoFile(`examples/${f}`), 0o644);

  for (const script of ["postinst", "prerm", "postrm"]) put(`DEBIAN/${script}`, repoFile(`dist/debian/${script}`), 0o755);
  put("DEBIAN/conffiles", CONFFILES.join("\n") + "\n", 0o644);
  const files = listFiles(root).filter((f) => !f.startsWith("DEBIAN/"));
  put("DEBIAN/md5sums", files.map((f) => `${createHash("md5").update(readFileSync(path.join(root, f))).digest("hex")}  ${f}\n`).join(""), 0o644);
  const installedKiB = Math.ceil(files.reduce((sum, f) => sum + statSync(path.join(root, f)).size, 0) / 1024);
  put("DEBIAN/control", control(d, installedKiB), 0o644);

  const out = path.join(d.outDir, `djinn-worker_${d.version}_${d.arch}.deb`);
  execFileSync("dpkg-deb", ["--root-owner-group", "-Zxz", "-z6", "--build", root, out], { stdio: ["ignore", "ignore", "inherit"] });
  return out;
}

function listFiles(root: string, dir = ""): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = dir ? `${dir}/${e.name}` : e.name;
    return e.isDirectory() ? listFiles(root, rel) : [rel];
  });
}

function control(d: DebInput, installedKiB: number): string {
  return `Package: djinn-worker
Version: ${d.version}
Architecture: ${d.arch}
Maintainer: ${MAINTAINER}
Installed-Size: ${installedKiB}
Depends: adduser, libc6 (>= 2.28), libgcc-s1, libstdc++6
Recommends: logrotate
Suggests: docker.io, qemu-system-x86, qemu-utils, redis-server, postgresql
Section: devel
Priority: optional
Homepage: https://github.com/djinn-ci/djinn
Description: build worker for self-hosted CI on bare metal
 djinn-worker takes builds from a Redis queue, runs each build's stages and
 jobs in a fresh Docker container or QEMU virtual machine (or straight on the
 host), records status and output in PostgreSQL, and mails the people
 concerned when a build fails. It reads the worker.toml and driver.toml keys
 and the build manifest of Djinn CI.
 .
 The daemon runs as the djinn system user; its configuration is in
 /etc/djinn. It is one executable with its runtime built in. A web view of
 the builds (djinn-worker web, with live logs and artifact downloads) comes
 as its own service, djinn-worker-web, not enabled until configured.
`;
}

function changelog(d: DebInput): string {
  const date = new Date(d.mtime * 1000).toUTCString().replace("GMT", "+0000");
  return `djinn-worker (${d.version}) unstable; urgency=medium

  * Release ${d.version}.

 -- ${MAINTAINER}  ${date}
`;
}

/** The package's copyright file: the worker's license, and what the executable carries besides. */
function copyright(d: DebInput): string {
  const license = readFileSync(path.join(d.repo, "LICENSE"), "utf8");
  const mit = license.slice(license.indexOf("Permission is hereby granted")).trim();
  const bundled = d.bundled.map((name) => {
    const pkg = JSON.parse(readFileSync(path.join(d.repo, "node_modules", name, "package.json"), "utf8")) as { version: string; license?: string };
    return ` ${name} ${pkg.version} (${pkg.license ?? "see its package"})`;
  });
  const indent = (text: string) => text.split("\n").map((l) => (l.trim() ? ` ${l}` : " .")).join("\n");
  return `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: djinn-worker
Comment: /usr/bin/djinn-worker is a Node.js ${process.version} single executable
 application: the Node.js runtime (MIT, with the licenses of the libraries it
 bundles: https://github.com/nodejs/node/blob/${process.version}/LICENSE) and these
 npm packages, bundled into it:
 .
${bundled.join("\n")}

Files: *
Copyright: 2026 the djinn-worker authors
License: MIT

License: MIT
${indent(mit)}
`;
}
