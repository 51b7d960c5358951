// The web view in a real browser (Debian's chromium, headless, driven by puppeteer-core): the list,
// a running build whose output appears line by line and whose status turns to passed, an
// artifact downloaded through the page, and hostile output shown as text. No sleeps: every wait
// is for a condition in the page or an event of the browser.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import puppeteer, { type Browser } from "puppeteer-core";
import { daemonSuite, servicesSkip } from "./helpers/daemon-suite.js";
import { requireService } from "./helpers/env.js";
import { runCli } from "./helpers/services.js";
import { webEnv } from "./helpers/web.js";

const CHROMIUM = "/usr/bin/chromium";
const skip = servicesSkip() || requireService("chromium", existsSync(CHROMIUM) ? undefined : `${CHROMIUM} not found (apt-get install chromium)`);

const HOSTILE = `<script>alert(1)</script>\n"><img src=x onerror=alert(2)>\n`;

describe("the web view in a browser", { skip }, () => {
  const suite = daemonSuite();
  let browser: Browser;
  before(async () => {
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"] });
  });
  after(() => browser?.close());

  it("shows a running build's lines live until it passes, downloads its artifact, renders hostile output as text", { timeout: 60_000 }, async (ctx) => {
    const w = await webEnv(suite);
    ctx.after(() => w.stop());
    const d = await w.t.daemon();
    const go = path.join(w.t.dir, "go");
    const manifest = [
      "namespace: web-browser",
      "driver:",
      "  type: os",
      "stages: [build, colour]",
      "jobs:",
      "  - stage: build",
      "    name: ticks",
      "    commands:",
      `      - ${JSON.stringify(`n=0; while [ ! -e ${go} ]; do n=$((n+1)); echo "tick $n"; sleep 0.2; done`)}`,
      `      - ${JSON.stringify(`printf '%b' ${JSON.stringify(HOSTILE)}`)}`,
      '      - "head -c 50000 /dev/urandom > blob.bin; echo finished"',
      "    artifacts: [blob.bin]",
      "  - stage: colour",
      "    name: colour",
      "    commands:",
      `      - ${JSON.stringify("printf '\\033[1;31mbold red\\033[0m plain\\n'")}`,
      "",
    ].join("\n");
    const id = await w.t.submit(manifest);
    const job = await jobId(w.t.pool, id);
    const output = `pre.output[data-job="${job}"]`;

    const page = await browser.newPage();
    const cspViolations: string[] = [];
    const dialogs: string[] = [];
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on("dialog", (dlg) => {
      dialogs.push(dlg.message());
      void dlg.dismiss();
    });

    await page.goto(`${w.url}/`);
    await page.waitForSelector(`tr[data-build="${id}"]`);
    await Promise.all([page.waitForNavigation(), page.click(`a[href="/builds/${id}"]`)]);
    // The build runs: lines printed after the page was served appear without a reload.
    await page.waitForFunction((sel: string) => document.querySelector(sel)?.textContent?.includes("tick 1"), { timeout: 20_000 }, output);
    const shown = await page.$eval(output, (el) => (el.textContent ?? "").split("\n").filter((l) => l.startsWith("tick")).length);
    await page.waitForFunction((sel: string, n: number) => document.querySelector(sel)?.textContent?.includes(`tick ${n + 3}`), { timeout: 20_000 }, output, shown);
    assert.equal(await page.$eval('[data-status-for="build"]', (el) => el.getAttribute("data-status")), "running");

    await fs.writeFile(go, "");
    await page.waitForFunction(() => document.querySelector('[data-status-for="build"]')?.getAttribute("data-status") === "passed", { timeout: 30_000 });
    await d.waitForMsg("build finished", { build: id });
    const text = await page.$eval(output, (el) => el.textContent ?? "");
    assert.ok(text.includes(HOSTILE) && text.includes("finished"), "the hostile lines arrive live, as text");
    assert.equal(await page.$$eval("pre.output script, pre.output img", (els) => els.length), 0);
    // Every line once, in order: nothing lost or repeated between the page and its live updates.
    const stored = (await w.t.pool.query(`SELECT string_agg(o.data, '' ORDER BY o.id) AS text FROM job_output o JOIN jobs j ON j.id = o.job_id WHERE o.build_id = $1 AND j.name = 'ticks'`, [id])).rows[0].text;
    assert.equal(text, stored);
    assert.deepEqual(await boldRed(page), { text: "bold red", weight: "700", colour: "rgb(221, 51, 51)" }, "ANSI bold and red, as classes the policy allows");
    assert.deepEqual(await page.$$eval(`[data-status-for="job-${job}"]`, (els) => els.map((el) => el.textContent)), ["passed", "passed"]);
    const stage = (await w.t.pool.query(`SELECT stage_id FROM jobs WHERE id = $1`, [job])).rows[0].stage_id;
    assert.deepEqual(await page.$$eval(`[data-status-for="stage-${stage}"]`, (els) => els.map((el) => el.textContent)), ["passed"]);

    // After a reload the page has the artifact: downloaded through the browser, byte for byte.
    await page.reload();
    assert.equal(await page.$$eval("pre.output script, pre.output img", (els) => els.length), 0);
    assert.deepEqual(await boldRed(page), { text: "bold red", weight: "700", colour: "rgb(221, 51, 51)" });
    const downloads = path.join(w.t.dir, "downloads");
    await fs.mkdir(downloads);
    const cdp = await page.createCDPSession();
    await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: downloads, eventsEnabled: true });
    const completed = new Promise<void>((resolve, reject) =>
      cdp.on("Browser.downloadProgress", (e) => {
        if (e.state === "completed") resolve();
        if (e.state === "canceled") reject(new Error("download canceled"));
      }),
    );
    await page.click("a.artifact");
    await completed;
    const row = (await w.t.pool.query(`SELECT sha256 FROM artifacts WHERE build_id = $1`, [id])).rows[0];
    const file = await fs.readFile(path.join(downloads, "blob.bin"));
    assert.equal(createHash("sha256").update(file).digest("hex"), row.sha256);

    assert.deepEqual(dialogs, [], "no script of the build ran");
    assert.deepEqual(cspViolations, [], "nothing the pages use is refused by the Content-Security-Policy");
  });
  it("signs in, kills a running build and runs it again from the build page's buttons, its masked value nowhere on the page", { timeout: 90_000 }, async (ctx) => {
    const w = await webEnv(suite, ["public = false"]);
    ctx.after(() => w.stop());
    const password = "alice-Pa55word-1";
    const secret = "m4sked-Value-9157";
    const added = await runCli(["user", "add", "alice", "-config", w.t.cfg.worker], `${password}\n`);
    assert.equal(added.code, 0, added.stderr);
    const d = await w.t.daemon();
    const go = path.join(w.t.dir, "go");
    const digest = createHash("sha256").update(secret).digest("hex");
    const manifest = [
      "namespace: web-actions",
      "driver:",
      "  type: os",
      "stages: [build]",
      "jobs:",
      "  - stage: build",
      "    name: ticks",
      "    commands:",
      `      - ${JSON.stringify(`[ "$(printf %s "$TOKEN" | sha256sum | cut -c1-64)" = ${digest} ] && echo token-matches; echo "token=$TOKEN"`)}`,
      `      - ${JSON.stringify(`n=0; while [ ! -e ${go} ]; do n=$((n+1)); echo "tick $n"; sleep 0.2; done`)}`,
      "",
    ].join("\n");
    const id = await w.t.submit(manifest, ["--secret", `TOKEN=${secret}`]);
    await d.waitForMsg("build started", { build: id });

    const page = await browser.newPage();
    const dialogs: string[] = [];
    page.on("dialog", (dlg) => {
      dialogs.push(dlg.message());
      void dlg.dismiss();
    });
    // The forms work without JavaScript: sign-in and kill with it off.
    await page.setJavaScriptEnabled(false);
    await page.goto(`${w.url}/builds/${id}`);
    assert.equal(new URL(page.url()).pathname, "/sign-in", "a private installation asks who you are first");
    assert.equal(await page.$("form.kill"), null);
    await page.type('input[name="name"]', "alice");
    await page.type('input[name="password"]', password);
    await Promise.all([page.waitForNavigation(), page.click('form.sign-in button[type="submit"]')]);
    assert.equal(new URL(page.url()).pathname, `/builds/${id}`, "back where the viewer was going");
    const cookie = (await page.cookies()).find((c) => c.name === "djinn_session")!;
    assert.deepEqual([cookie.httpOnly, cookie.sameSite], [true, "Strict"]);
    assert.equal(await page.$eval(".who", (el) => el.textContent), "alice");
    await Promise.all([page.waitForNavigation(), page.click("form.kill button")]);
    assert.equal(new URL(page.url()).pathname, `/builds/${id}`);
    await d.waitForMsg("build finished", { build: id });
    await page.reload();
    assert.equal(await page.$eval('[data-status-for="build"]', (el) => el.getAttribute("data-status")), "killed");
    assert.equal(await page.$("form.kill"), null, "no kill button on a finished build");

    // Run again, with the script on: the new build's page follows it to its end.
    await page.setJavaScriptEnabled(true);
    await page.reload();
    await fs.writeFile(go, "");
    await Promise.all([page.waitForNavigation(), page.click("form.rerun button")]);
    const rerun = Number(/^\/builds\/(\d+)$/.exec(new URL(page.url()).pathname)?.[1]);
    assert.ok(rerun > id, `a new build: ${page.url()}`);
    await page.waitForFunction(() => document.querySelector('[data-status-for="build"]')?.getAttribute("data-status") === "passed", { timeout: 60_000 });
    const shown = await page.$eval(`pre.output[data-job="${await jobId(w.t.pool, rerun)}"]`, (el) => el.textContent ?? "");
    assert.match(shown, /token-matches\ntoken=xxxxxx\n/, "the re-run had the masked value, and shows it masked");
    const html = await page.content();
    assert.ok(!html.includes(secret), "the masked value is nowhere on the page");
    assert.match(html, /<code>TOKEN<\/code><\/td><td><code>xxxxxx<\/code>/);
    assert.deepEqual(dialogs, []);
  });
});

/** The colour job's first styled run of output as the browser shows it. */
async function boldRed(page: import("puppeteer-core").Page): Promise<{ text: string; weight: string; colour: string }> {
  await page.waitForFunction(() => [...document.querySelectorAll("pre.output span")].some((el) => el.textContent === "bold red"), { timeout: 20_000 });
  return page.$$eval("pre.output span", (els) => {
    const el = els.find((e) => e.textContent === "bold red")!;
    const style = getComputedStyle(el);
    return { text: el.textContent ?? "", weight: style.fontWeight, colour: style.color };
  });
}

async function jobId(pool: import("pg").Pool, build: number): Promise<number> {
  return Number((await pool.query(`SELECT id FROM jobs WHERE build_id = $1 AND name = 'ticks'`, [build])).rows[0].id);
}
