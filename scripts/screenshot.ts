// docs/web-build.png, the README's picture of a build page: a real daemon runs a small os build
// with coloured output and an artifact on throwaway PostgreSQL and Redis, `djinn-worker web`
// serves it, and Debian's chromium (headless, driven by puppeteer-core) takes the picture.
// Usage: npm run screenshot   (or node build/scripts/screenshot.js [--out FILE])
import fs from "node:fs/promises";
import path from "node:path";
import puppeteer from "puppeteer-core";
import { Suite } from "../test/helpers/daemon-suite.js";
import { repoRoot } from "../test/helpers/env.js";
import { webEnv } from "../test/helpers/web.js";

const CHROMIUM = "/usr/bin/chromium";
const outIndex = process.argv.indexOf("--out");
const out = outIndex > 0 ? path.resolve(process.argv[outIndex + 1]) : path.join(repoRoot, "docs", "web-build.png");

/** A job's commands, quoted for YAML. */
const commands = (...lines: string[]) => lines.map((l) => `      - ${JSON.stringify(l)}`).join("\n");

/** Escapes as variables: the commands the page echoes read as a person would write them. */
const STYLES = { BOLD: "1", ITALIC: "3", UNDERLINE: "4", GREEN: "1;32", YELLOW: "33", GREY: "38;5;244", ORANGE: "38;2;255;135;0", RESET: "0" };

const MANIFEST = `namespace: acme/webapp
driver:
  type: os
env:
${Object.entries(STYLES).map(([name, sgr]) => `  - "${name}=\\e[${sgr}m"`).join("\n")}
stages: [build, test]
jobs:
  - stage: build
    name: compile
    commands:
${commands(
  'echo "${BOLD}Compiling${RESET} 42 modules"',
  'echo "${GREY}  src/server.ts  src/routes.ts  src/db.ts ...${RESET}"',
  'echo "${YELLOW}warning${RESET}: src/db.ts:17: unused import ${ITALIC}PoolClient${RESET}"',
  "mkdir -p dist && head -c 180000 /dev/urandom > dist/webapp.tar.gz",
  'echo "${GREEN}Built${RESET} dist/webapp.tar.gz in 1.2s"',
)}
    artifacts:
      - dist/webapp.tar.gz => webapp.tar.gz
  - stage: test
    name: unit
    commands:
${commands(
  'for t in "parses a config file" "refuses a bad token" "streams a log"; do echo "${GREEN}  ✓${RESET} $t"; done',
  'echo "${ORANGE}  ○${RESET} skipped: needs a GPU"',
  'echo "${GREEN}3 passed${RESET}, ${ORANGE}1 skipped${RESET}; deploying with ${UNDERLINE}$DEPLOY_TOKEN${RESET}"',
)}
`;

const suite = new Suite();
await suite.start();
try {
  const w = await webEnv(suite);
  try {
    const daemon = await w.t.daemon();
    const id = await w.t.submit(MANIFEST, ["--secret", "DEPLOY_TOKEN=never-shown-4711"]);
    await daemon.waitForMsg("build finished", { build: id }, 60_000);
    const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"] });
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 1000, height: 800, deviceScaleFactor: 1 });
      await page.goto(`${w.url}/builds/${id}`, { waitUntil: "load" });
      const status = await page.$eval('[data-status-for="build"]', (el) => el.getAttribute("data-status"));
      if (status !== "passed") throw new Error(`build ${id} is ${status}, not passed: no picture taken`);
      // Down to the last job's output; the manifest below it is left out.
      const bottom = await page.$$eval("section.job", (els) => Math.ceil(els[els.length - 1].getBoundingClientRect().bottom + window.scrollY + 8));
      await fs.mkdir(path.dirname(out), { recursive: true });
      await page.screenshot({ path: out as `${string}.png`, clip: { x: 0, y: 0, width: 1000, height: bottom } });
    } finally {
      await browser.close();
    }
  } finally {
    await w.stop();
  }
} finally {
  await suite.stop();
}
console.log(`wrote ${path.relative(process.cwd(), out)}`);
