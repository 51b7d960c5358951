// The shared vocabularies, each from its one home: addresses, path confinement, shell quoting and
// queue names. No service, no engine.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, test } from "node:test";
import { getEventListeners } from "node:events";
import { sleep } from "../internal/timers/timers.js";
import { ConfineError, confinedPath, isInside, resolveInside } from "../internal/fs/confine.js";
import { engineAddress, isPort, serverAddress, splitHostPort } from "../internal/net/address.js";
import { hostQemuArch } from "../internal/config/config.js";
import { buildIdOfKillChannel, configuredDrivers, deadList, driverTypeOfQueue, killChannel, processingList, queueDriverOf, queueDriverOfList, queueList } from "../internal/queue/names.js";
import type { DriverConfig } from "../internal/config/config.js";
import { isShellName, shellQuote, singleQuote } from "../internal/shell/quote.js";

describe("addresses", () => {
  test("host:port, host, [v6]:port, [v6] and :port split into host and port", () => {
    assert.deepEqual(splitHostPort("db.example:5433"), { host: "db.example", port: 5433 });
    assert.deepEqual(splitHostPort("db.example"), { host: "db.example", port: undefined });
    assert.deepEqual(splitHostPort("[::1]:6380"), { host: "::1", port: 6380 });
    assert.deepEqual(splitHostPort("[::1]"), { host: "::1", port: undefined });
    assert.deepEqual(splitHostPort(":9110"), { host: "", port: 9110 });
    for (const bad of ["a:b:c", "::1", "host:port", "[::1]:x", "a[b:1", "host:"]) assert.equal(splitHostPort(bad), undefined, bad);
  });

  test("ports are 1-65535; a listener may ask for 0", () => {
    assert.deepEqual([0, 1, 65535, 65536, 1.5].map((p) => isPort(p)), [false, true, true, false, false]);
    assert.equal(isPort(0, true), true);
  });

  test("a server's address defaults its host to 127.0.0.1 and its port to the server's own", () => {
    assert.deepEqual(serverAddress("db:6000", 5432), { host: "db", port: 6000 });
    assert.deepEqual(serverAddress("db", 5432), { host: "db", port: 5432 });
    assert.deepEqual(serverAddress(":6000", 5432), { host: "127.0.0.1", port: 6000 });
    assert.deepEqual(serverAddress("[::1]", 6379), { host: "::1", port: 6379 });
    // Not an address: taken whole as a host name, for the connection to refuse by name.
    assert.deepEqual(serverAddress("a:b:c", 6379), { host: "a:b:c", port: 6379 });
  });

  test("a Docker Engine address: a unix socket, or a host and port over HTTP or TLS", () => {
    assert.deepEqual(engineAddress("unix:///var/run/docker.sock"), { socketPath: "/var/run/docker.sock" });
    assert.deepEqual(engineAddress("tcp://10.0.0.5"), { host: "10.0.0.5", port: 2375, protocol: "http" });
    assert.deepEqual(engineAddress("http://docker.lan:8080"), { host: "docker.lan", port: 8080, protocol: "http" });
    assert.deepEqual(engineAddress("https://docker.lan"), { host: "docker.lan", port: 2376, protocol: "https" });
    for (const bad of ["/var/run/docker.sock", "ssh://h", "unix://", "tcp://", "tcp://h:x", "docker.lan:2375"]) assert.equal(engineAddress(bad), undefined, bad);
  });
});

describe("path confinement", () => {
  test("names resolve under their root; absolute names, .. and the root itself are refused", () => {
    const root = "/srv/store";
    assert.equal(confinedPath(root, "a/b.txt"), "/srv/store/a/b.txt");
    assert.equal(confinedPath(root, "a//./b"), "/srv/store/a/b");
    const refusals: [string, RegExp][] = [
      ["", /^invalid name ""$/],
      ["a\0b", /^invalid name/],
      ["/etc/passwd", /^name "\/etc\/passwd" is absolute: names are relative to the images$/],
      ["../x", /^name "\.\.\/x" reaches outside the images$/],
      ["a/../../x", /reaches outside the images$/],
      ["a\\..\\..\\x", /reaches outside the images$/],
      [".", /reaches outside the images$/],
      ["a/..", /reaches outside the images$/],
    ];
    for (const [name, message] of refusals) {
      assert.throws(() => confinedPath(root, name, "the images"), (err: Error) => err instanceof ConfineError && message.test(err.message), JSON.stringify(name));
    }
    assert.throws(() => confinedPath(root, "../x"), /reaches outside \/srv\/store$/);
  });

  test("inside means the root or below it, never a sibling that shares its prefix", () => {
    assert.equal(isInside("/w", "/w"), true);
    assert.equal(isInside("/w", "/w/a/b"), true);
    assert.equal(isInside("/w", "/w2/a"), false);
    assert.equal(isInside("/w", "/"), false);
    assert.equal(resolveInside("/w", "a/../b"), "/w/b");
    assert.equal(resolveInside("/w", "/w/abs"), "/w/abs");
    assert.equal(resolveInside("/w", "../w2"), undefined);
    assert.equal(resolveInside("/w", "/etc"), undefined);
  });
});

describe("shell quoting", () => {
  test("a quoted value reaches the shell as it is, whatever it holds", () => {
    for (const value of ["plain", "", "it's", "'", "''", "a b", "$HOME `id` \\ \"q\"", "new\nline", "-n", "*"]) {
      const echoed = execFileSync("sh", ["-c", `printf '%s|%s' ${singleQuote(value)} ${shellQuote(value)}`], { encoding: "utf8" });
      assert.equal(echoed, `${value}|${value}`, JSON.stringify(value));
    }
    assert.equal(shellQuote("https://example.com/repo.git"), "https://example.com/repo.git");
    assert.equal(shellQuote("a b"), "'a b'");
    assert.equal(singleQuote("it's"), `'it'\\''s'`);
  });

  test("shell variable names", () => {
    assert.deepEqual(["A", "_a1", "PATH"].map(isShellName), [true, true, true]);
    assert.deepEqual(["", "1A", "A-B", "A B", "É"].map(isShellName), [false, false, false, false, false]);
  });
});

describe("queue names", () => {
  test("lists, the dead list, processing lists and kill channels, as docs/queue.md names them", () => {
    assert.equal(queueList("djinn", "docker"), "djinn_docker");
    assert.equal(deadList("djinn"), "djinn_dead");
    assert.equal(processingList("djinn_docker", "host-1-ab"), "djinn_docker:processing:host-1-ab");
    assert.equal(killChannel(42), "kill-42");
    assert.equal(buildIdOfKillChannel(killChannel(42)), 42);
    for (const other of ["kill-", "kill-4x", "xkill-4", "kill-42 "]) assert.equal(buildIdOfKillChannel(other), undefined, other);
  });

  test("a queue list of the installation is told from its other lists and from another installation's", () => {
    assert.equal(queueDriverOfList("djinn", queueList("djinn", "os")), "os");
    assert.equal(queueDriverOfList("djinn", queueList("djinn", "docker")), "docker");
    assert.equal(queueDriverOfList("djinn", queueList("djinn", "qemu-aarch64")), "qemu-aarch64", "a qemu queue of another arch waits for another host");
    assert.equal(queueDriverOfList("djinn", deadList("djinn")), undefined);
    assert.equal(queueDriverOfList("djinn", processingList(queueList("djinn", "os"), "w1")), undefined);
    assert.equal(queueDriverOfList("djinn", queueList("djinn_other", "os")), undefined, "prefix djinn_other is another installation");
    assert.equal(queueDriverOfList("djinn", queueList("djinn_other", "qemu-x86_64")), undefined);
    assert.equal(queueDriverOfList("djinn", "djinnos"), undefined);
  });

  test("a qemu build is queued under this host's arch, and that queue is served by the qemu driver", () => {
    assert.equal(queueDriverOf("qemu"), `qemu-${hostQemuArch()}`);
    assert.equal(driverTypeOfQueue(queueDriverOf("qemu")), "qemu");
    for (const type of ["docker", "ssh", "os"]) assert.equal(driverTypeOfQueue(queueDriverOf(type)), type);
    const drivers = { os: {}, qemu: {}, docker: {}, warnings: [] } as unknown as DriverConfig;
    assert.deepEqual(configuredDrivers(drivers), ["docker", `qemu-${hostQemuArch()}`, "os"]);
  });
});

describe("timers", { timeout: 10_000 }, () => {
  test("sleep ends at once when its signal aborts, and at once for a signal aborted before", async () => {
    const abort = new AbortController();
    const waiting = sleep(60_000, { signal: abort.signal });
    abort.abort();
    await waiting;
    await sleep(60_000, { signal: abort.signal });
    assert.equal(getEventListeners(abort.signal, "abort").length, 0, "the wait leaves no listener behind");
  });
});
