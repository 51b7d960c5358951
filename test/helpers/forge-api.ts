// A stand-in for the forges' commit status APIs on 127.0.0.1: it records every request (method,
// path, headers, JSON body) and answers as told (201, or a failure), so a suite sees exactly what
// djinn-worker web sends. Nothing leaves the machine.
import http from "node:http";

export interface ApiRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

export interface ForgeApi {
  /** The base URL; each forge's api_url is a path under it (/github, /gitlab/api/v4, /gitea/api/v1). */
  url: string;
  requests: ApiRequest[];
  /** The HTTP status every later request is answered with. */
  answer: number;
  /** How long each answer is held back: a slow forge, so that posts of several processes overlap. */
  delayMs: number;
  /** The first request (past or future) matching `pred`. */
  waitFor(pred: (r: ApiRequest) => boolean, what: string, timeoutMs?: number): Promise<ApiRequest>;
  close(): Promise<void>;
}

export async function startForgeApi(): Promise<ForgeApi> {
  const waiters: { pred: (r: ApiRequest) => boolean; resolve: (r: ApiRequest) => void }[] = [];
  const api: ForgeApi = {
    url: "",
    requests: [],
    answer: 201,
    delayMs: 0,
    waitFor(pred, what, timeoutMs = 120_000) {
      const seen = api.requests.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`forge API: no request for ${what} within ${timeoutMs} ms; got:\n${JSON.stringify(api.requests, null, 1)}`)), timeoutMs);
        waiters.push({ pred, resolve: (r) => (clearTimeout(timer), resolve(r)) });
      });
    },
    close: () =>
      new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        body = { unparsed: Buffer.concat(chunks).toString("utf8") };
      }
      const r: ApiRequest = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body };
      api.requests.push(r);
      const code = api.answer;
      const reply = () => res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(code < 300 ? { id: api.requests.length, ...body } : { message: "Service Unavailable" }));
      if (api.delayMs) setTimeout(reply, api.delayMs);
      else reply();
      for (const w of [...waiters]) {
        if (w.pred(r)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(r);
        }
      }
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  api.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return api;
}
