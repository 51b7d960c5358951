// The web view's pure parts, engine-free: escaping, byte ranges, download names, query parameters,
// the ring of ready events a build's viewers share.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { contentDisposition, parseRange } from "../internal/web/download.js";
import { escapeHtml, formatDuration, html, Html } from "../internal/web/html.js";
import { ANSI_STYLE, nearestPalette, paletteRgb } from "../internal/web/ansi.js";
import { ansiConverter } from "../internal/web/output.js";
import { parseCursor, parseFilter, parseId, WebError } from "../internal/web/params.js";
import { tailOf } from "../internal/web/queries.js";
import { EventRing, RingCursor, type RingEvent } from "../internal/web/ring.js";
import { Turns } from "../internal/web/fanout.js";

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
  /** What a cursor gives until it waits: each event's kind and row ("behind" ends the list). */
  function drain(c: RingCursor): string[] {
    const out: string[] = [];
    for (let e = c.next(); e !== undefined; e = c.next()) {
      if (e === "behind") return [...out, "behind"];
      out.push(`${e.kind}${e.kind === "output" || e.kind === "end" ? ` ${e.row}` : ""}`);
    }
    return out;
  }
  const bytes = (n: number) => Buffer.alloc(n, 120);

  test("a ring keeps its newest events within its size; its base moves with the output rows it drops", () => {
    const ring = new EventRing(10, 310);
    assert.equal(ring.base, 10);
    ring.push("output", 11, bytes(100));
    ring.push("status", 11, bytes(10));
    ring.push("output", 14, bytes(100));
    ring.push("output", 15, bytes(100));
    assert.deepEqual([ring.base, ring.firstSeq, ring.nextSeq, ring.bytes], [10, 0, 4, 310]);
    ring.push("output", 17, bytes(100));
    assert.equal(ring.base, 11, "row 11 was dropped: a viewer before it is behind");
    assert.equal(ring.at(0), "gone");
    assert.equal((ring.at(2) as RingEvent).row, 14);
    assert.equal(ring.at(5), undefined, "not pushed yet");
    assert.ok(ring.bytes <= 310);
    ring.push("output", 20, bytes(1000));
    assert.deepEqual([ring.firstSeq, ring.base, ring.bytes], [5, 17, 1000], "the newest is kept however large");
    const counted = new EventRing(0, 1e9, 3);
    for (let row = 1; row <= 5; row++) counted.push("output", row, bytes(1));
    assert.deepEqual([counted.firstSeq, counted.base], [2, 2], "and at most maxEvents events");
  });

  test("a cursor gets every later row once and in order, the newest status first, then what follows", () => {
    const ring = new EventRing(0, 1e6);
    ring.push("output", 3, bytes(1));
    ring.push("status", 3, bytes(1));
    ring.push("output", 5, bytes(1));
    ring.push("ping", 5, bytes(1));
    ring.push("status", 5, bytes(1));
    const fresh = new RingCursor(ring, 0);
    assert.deepEqual(drain(fresh), ["status", "output 3", "output 5"], "statuses older than the join are replaced by the newest");
    const page = new RingCursor(ring, 4);
    assert.deepEqual(drain(page), ["status", "output 5"], "rows the page has are passed over");
    ring.push("output", 8, bytes(1));
    ring.push("ping", 8, bytes(1));
    ring.push("status", 8, bytes(1));
    ring.push("end", 8, bytes(1));
    ring.close();
    assert.deepEqual(drain(fresh), ["output 8", "ping", "status", "end 8"]);
    assert.deepEqual(drain(page), ["output 8", "ping", "status", "end 8"]);
    assert.deepEqual(drain(new RingCursor(ring, 9)), ["status", "end 8"], "a cursor past every row still gets the end");
  });

  test("a cursor behind the ring's start says so, and joins again once it has the dropped rows", () => {
    const ring = new EventRing(0, 250);
    const slow = new RingCursor(ring, 0);
    const fast = new RingCursor(ring, 0);
    const seen: number[] = [];
    for (let row = 1; row <= 10; row++) {
      ring.push("output", row, bytes(100));
      const e = fast.next();
      assert.ok(e && e !== "behind" && e.row === row, `the fast viewer keeps up at row ${row}`);
    }
    assert.equal(ring.base, 8);
    assert.equal(slow.next(), "behind");
    // What the database gives it: the rows up to the base, then the ring again.
    for (let row = slow.row + 1; row <= 8; row++) {
      seen.push(row);
      slow.row = row;
    }
    slow.join();
    for (let e = slow.next(); e; e = slow.next()) {
      assert.notEqual(e, "behind");
      seen.push((e as RingEvent).row);
    }
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // Dropped statuses alone do not put a viewer behind.
    const statuses = new EventRing(0, 20);
    const c = new RingCursor(statuses, 0);
    for (let i = 0; i < 5; i++) statuses.push("status", 0, bytes(10));
    assert.deepEqual(drain(c), ["status"], "the newest status, once");
  });

  test("before a push drops an event a viewer still needs, the ring's reader waits for it; a stuck one is let go after the wait", async () => {
    const ring = new EventRing(0, 250);
    const slow = new RingCursor(ring, 0);
    const stuck = new RingCursor(ring, 0);
    const gone = new RingCursor(ring, 0);
    gone.close();
    ring.push("output", 1, bytes(100));
    ring.push("output", 2, bytes(100));
    await ring.room(10, 60_000);
    assert.equal(ring.firstSeq, 0, "room for 10 bytes drops nothing: no wait");
    // Row 3 would drop row 1, which neither reading cursor has written yet.
    let roomy = false;
    const waiting = ring.room(100, 60_000).then(() => (roomy = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(roomy, false, "it waits for the slow viewers");
    assert.equal((slow.next() as RingEvent).row, 1);
    stuck.close();
    await waiting;
    ring.push("output", 3, bytes(100));
    assert.deepEqual([ring.base, (slow.next() as RingEvent).row, (slow.next() as RingEvent).row], [1, 2, 3], "nothing the slow viewer needed was dropped");
    // A viewer that does not move holds the reader back only for the wait; then it is let go, and behind.
    const lagging = new RingCursor(ring, 1);
    const soon = async (p: Promise<void>) => {
      let done = false;
      void p.then(() => (done = true));
      await new Promise((r) => setImmediate(r));
      return done;
    };
    const held = ring.room(100, 20);
    assert.equal(await soon(held), false, "it waits for the viewer that needs row 2");
    await held;
    ring.push("output", 4, bytes(100));
    assert.equal(lagging.next(), "behind");
    assert.equal(await soon(ring.room(100, 60_000)), true, "the viewer let go no longer holds the reader back");
  });

  test("a dropped event's buffer is used again only once no viewer writes it", () => {
    const ring = new EventRing(0, 3 * 10_000);
    const text = (c: string) => c.repeat(10_000);
    const first = ring.encode(text("a"));
    ring.push("output", 1, first);
    const c = new RingCursor(ring, 0);
    const e1 = c.next() as RingEvent;
    ring.writing(e1);
    for (let row = 2; row <= 4; row++) ring.push("output", row, ring.encode(text(String(row))));
    assert.equal(ring.base, 1, "row 1 was dropped while a viewer writes it");
    const during = ring.encode(text("x"));
    assert.ok(during.buffer !== first.buffer, "a buffer under a write is not used again");
    assert.equal(first.toString(), text("a"), "and keeps its bytes");
    ring.written(e1);
    ring.push("output", 5, during);
    const after = ring.encode(text("y"));
    assert.ok(after.buffer === first.buffer, "its write done, the buffer holds a new event");
    assert.equal(after.toString(), text("y"));
  });

  test("a waiter on a ring wakes at the next event, at its close, or when its viewer leaves", async () => {
    const ring = new EventRing(0, 1e6);
    const gone = new AbortController();
    const waits = [ring.changed(0, new AbortController().signal), ring.changed(0, gone.signal)];
    gone.abort();
    await waits[1];
    ring.push("output", 1, bytes(1));
    await waits[0];
    await ring.changed(0, new AbortController().signal);
    const closing = ring.changed(1, new AbortController().signal);
    ring.close();
    await closing;
    ring.push("output", 2, bytes(1));
    assert.equal(ring.nextSeq, 1, "nothing is pushed after the close");
  });

  test("turns: no more than the given number run at once, the rest in order of arrival", async () => {
    const turns = new Turns(2);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const gates = Array.from({ length: 5 }, () => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    });
    const runs = gates.map((g, i) =>
      turns.run(async () => {
        running++;
        most = Math.max(most, running);
        order.push(i);
        await g.promise;
        running--;
      }),
    );
    for (const g of gates) {
      await new Promise((r) => setImmediate(r));
      g.resolve();
    }
    await Promise.all(runs);
    assert.equal(most, 2);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    await assert.rejects(turns.run(() => Promise.reject(new Error("no connection"))), /no connection/);
    assert.equal(await turns.run(async () => 7), 7, "a failed turn gives its place back");
  });
});

test("a tail cut inside a row starts at the next line, and never splits a character", { timeout: 10_000 }, () => {
  assert.equal(tailOf("first\nsecond\nthird\n", 0), "first\nsecond\nthird\n");
  assert.equal(tailOf("first\nsecond\nthird\n", 2), "second\nthird\n");
  assert.equal(tailOf("first\nsecond\nthird\n", 6), "second\nthird\n");
  assert.equal(tailOf("éé\nü\n", 1), "ü\n");
  assert.equal(tailOf("no line end", 3), "");
});
