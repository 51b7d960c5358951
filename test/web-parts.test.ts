// The web view's pure parts, engine-free: escaping, byte ranges, download names, query parameters.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { contentDisposition, parseRange } from "../internal/web/download.js";
import { escapeHtml, formatDuration, html, Html } from "../internal/web/html.js";
import { ANSI_STYLE, nearestPalette, paletteRgb } from "../internal/web/ansi.js";
import { ansiConverter } from "../internal/web/output.js";
import { parseCursor, parseFilter, parseId, WebError } from "../internal/web/params.js";
import { tailOf } from "../internal/web/queries.js";

describe("web parts", () => {
  test("html escapes every interpolation that is not already markup", () => {
    const name = `"><img src=x onerror=alert(1)>&'`;
    assert.equal(html`<a title="${name}">${name}</a>`.text, `<a title="&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;&#39;">&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;&#39;</a>`);
    assert.equal(html`<p>${[html`<b>${"<i>"}</b>`, null, false, 3]}</p>`.text, "<p><b>&lt;i&gt;</b>3</p>");
    assert.equal(html`${new Html("<br>")}`.text, "<br>");
    assert.equal(escapeHtml("<script>"), "&lt;script&gt;");
  });

  test("ANSI output becomes classes, its text escaped", () => {
    assert.equal(ansiConverter().ansi_to_html("\x1b[32mok\x1b[0m <script>"), '<span class="ansi-green-fg">ok</span> &lt;script&gt;');
  });

  test("bold, italic, underline, 256 colours and truecolor become classes the style sheet has, never a style attribute", () => {
    const a = ansiConverter();
    assert.equal(a.ansi_to_html("\x1b[1;31mbold red\x1b[0m \x1b[3mi\x1b[23;4mu\x1b[0m\x1b[2mf\x1b[0m"), '<span class="ansi-red-fg ansi-bold">bold red</span> <span class="ansi-italic">i</span><span class="ansi-underline">u</span><span class="ansi-faint">f</span>');
    assert.equal(a.ansi_to_html("\x1b[38;5;196;48;5;240mx\x1b[0m"), '<span class="ansi-196-fg ansi-240-bg">x</span>');
    // A truecolor is the palette's nearest: a near red is 196 (255,0,0), a mid grey 244 (128,128,128).
    assert.equal(a.ansi_to_html("\x1b[38;2;250;10;5;48;2;128;128;130m<script>\"'&\x1b[0m"), '<span class="ansi-196-fg ansi-244-bg">&lt;script&gt;&quot;&#39;&amp;</span>');
    // The state carries across chunks, as output arrives.
    assert.equal(a.ansi_to_html("\x1b[1;38;5;33m"), "");
    assert.equal(a.ansi_to_html("next"), '<span class="ansi-33-fg ansi-bold">next</span>');
    for (let n = 16; n < 256; n++) {
      assert.equal(nearestPalette(paletteRgb(n)), n, `palette entry ${n} is its own nearest`);
      assert.ok(ANSI_STYLE.includes(`.ansi-${n}-fg{`) && ANSI_STYLE.includes(`.ansi-${n}-bg{`), `a rule for ${n}`);
    }
    let all = "";
    for (let code = 0; code < 110; code++) all += ansiConverter().ansi_to_html(`\x1b[${code}mx \x1b[38;2;${code};${2 * code};${255 - code}my\x1b[48;5;${code * 2}mz`);
    assert.ok(!all.includes("style="), "no style attribute, which the Content-Security-Policy refuses");
    for (const cls of new Set([...all.matchAll(/class="([^"]+)"/g)].flatMap((m) => m[1].split(" ")))) assert.ok(ANSI_STYLE.includes(`.${cls}`), `a rule for .${cls}`);
  });

  test("a Range header is one range of the file, the whole file, or unsatisfiable", () => {
    assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=90-1000", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=-10", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=-1000", 100), { start: 0, end: 99 });
    assert.equal(parseRange(undefined, 100), "whole");
    assert.equal(parseRange("bytes=0-1,5-6", 100), "whole");
    assert.equal(parseRange("items=0-1", 100), "whole");
    assert.equal(parseRange("bytes=9-3", 100), "whole");
    assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
    assert.equal(parseRange("bytes=-0", 100), "unsatisfiable");
    assert.equal(parseRange("bytes=0-", 0), "unsatisfiable");
  });

  test("Content-Disposition keeps to the name's last part, ASCII in filename, exact in filename*", () => {
    assert.equal(contentDisposition("dist/app.tar.gz"), `attachment; filename="app.tar.gz"; filename*=UTF-8''app.tar.gz`);
    assert.equal(contentDisposition('a"b\\c;\r\nd é.txt'), `attachment; filename="a_b_c___d _.txt"; filename*=UTF-8''a%22b%5Cc%3B%0D%0Ad%20%C3%A9.txt`);
  });

  test("ids, filters and cursors: one line for what is wrong", () => {
    assert.equal(parseId("42", "job"), 42);
    for (const bad of ["0", "-1", "1.5", "x", "99999999999999999999", ""]) assert.throws(() => parseId(bad, "job"), (e: Error) => e instanceof WebError && e.statusCode === 400 && e.message === `${JSON.stringify(bad)} is not a job id (a positive integer)`);
    assert.deepEqual(parseFilter({ status: "failed", namespace: "a/b", before: "10" }), { status: "failed", namespace: "a/b", before: 10 });
    assert.deepEqual(parseFilter({ status: "", namespace: "" }), {});
    assert.throws(() => parseFilter({ status: "skipped" }), /status "skipped" is not a build status/);
    assert.throws(() => parseFilter({ namespace: ["a", "b"] }), /query parameter namespace given more than once/);
    assert.equal(parseCursor("17", "3"), 17);
    assert.equal(parseCursor(undefined, "3"), 3);
    assert.equal(parseCursor(undefined, undefined), 0);
    assert.throws(() => parseCursor("x", undefined), /"x" is not an output row id/);
  });

  test("durations read as people say them", () => {
    assert.deepEqual([400, 5000, 65_000, 3_720_000].map(formatDuration), ["0.4s", "5s", "1m 5s", "1h 2m"]);
  });
});

test("a tail cut inside a row starts at the next line, and never splits a character", { timeout: 10_000 }, () => {
  assert.equal(tailOf("first\nsecond\nthird\n", 0), "first\nsecond\nthird\n");
  assert.equal(tailOf("first\nsecond\nthird\n", 2), "second\nthird\n");
  assert.equal(tailOf("first\nsecond\nthird\n", 6), "second\nthird\n");
  assert.equal(tailOf("éé\nü\n", 1), "ü\n");
  assert.equal(tailOf("no line end", 3), "");
});
