// Imported before pg, for what pg asks when it loads: whether it runs in Cloudflare Workers. With
// no global navigator (Node.js 20 has none; 21 and later have one) it constructs a fetch Response
// to find out, which loads undici, http, http2 and zlib: some 12 MiB of memory that a worker
// waiting for builds never uses. The navigator of later Node.js versions answers it at once.
if (!("navigator" in globalThis)) {
  Object.defineProperty(globalThis, "navigator", {
    value: Object.freeze({ userAgent: `Node.js/${process.versions.node.split(".")[0]}` }),
    configurable: true,
    writable: true,
    enumerable: false,
  });
}
