#!/usr/bin/env node
// Runs the built edge Worker (functions/build, from scripts/build-edge.sh)
// locally in workerd, the open-source Workers runtime, through Miniflare,
// with the Cache API on. Prints exactly one line on stdout when it is
// ready:
//
//     EDGE_URL=http://127.0.0.1:NNNN
//
// and everything else (Miniflare, the Worker's console) on stderr. It stops
// on SIGTERM or SIGINT, and when its stdin is a pipe that closes (so a test
// harness that dies cannot leave it behind).
//
// Usage:
//   node functions/dev/serve.mjs [--port N] [--host 127.0.0.1] [--build DIR]
//        [--compatibility-date YYYY-MM-DD] [--var NAME=VALUE]... [--log-level LEVEL]
//
// --port 0 (the default) picks a free port. Worker vars and secrets come
// from --var, else from the environment variable of the same name, else
// from the local defaults below (which match the region core's and the
// upstash-gateway's own defaults). See docs/edge.md for the list.
//
// In front of workerd sits a small Node HTTP server (the "front"), which
// is what listens on --port. workerd's own listener has no read timeouts
// and takes loose framing; the front gives the local edge what Cloudflare
// gives the deployed one:
//   - a header timeout ($EDGE_HEADERS_TIMEOUT_MS, default 10000) and a
//     whole-request timeout ($EDGE_REQUEST_TIMEOUT_MS, default 30000): a
//     client sending one byte a second is cut off with 408;
//   - strict framing (Node's parser): Content-Length together with
//     Transfer-Encoding, a bare CR, an oversized header: 400/431;
//   - every such refusal has the project's JSON error body;
//   - X-Forwarded-For gets the connection's address appended, which is how
//     the Worker learns the client's address off Cloudflare (see
//     TRUSTED_PROXIES in docs/edge.md).
// WebSocket upgrades are piped through to workerd untouched.
//
// Miniflare is loaded from $EDGE_NODE_MODULES, else
// ${EDGE_TOOLS_DIR:-~/.cache/booking-edge}/npm/node_modules (where
// scripts/edge-toolchain.sh installs it), else the usual Node resolution.

import http from "node:http";
import net from "node:net";
import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import { existsSync, fstatSync, readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

// Names the Worker reads (see functions/src/config.rs), with local defaults.
// Secrets have defaults only here, for local runs; the Worker itself has none.
const VARS = {
  REGIONS: '{"dev":"http://127.0.0.1:8080"}',
  RATE_LIMITS: "",
  DENY_LIST: "",
  CACHE_TTLS: "",
  REGION_TIMEOUT_MS: "",
  REGION_PAYMENT_TIMEOUT_MS: "",
  DIRECTORY_REFRESH_MS: "",
  // The global catalog service (titles, search); unset = none.
  CATALOG_URL: "",
  BREAKER_FAILURES: "",
  BREAKER_OPEN_MS: "",
  MAX_BODY_BYTES: "",
  UPSTASH_TIMEOUT_MS: "",
  KEY_PREFIX: "",
  UPSTASH_REDIS_REST_URL: "http://127.0.0.1:8079",
  UPSTASH_REDIS_REST_TOKEN: "local-dev-token",
  ADMISSION_KEY: "dev-only-admission-key-change-me",
  ADMISSION_KEYS_PREVIOUS: "",
  JWT_SECRET: "dev-only-secret-change-me",
  TRUST_CF_CONNECTING_IP: "",
  TRUSTED_PROXIES: "",
  // Live seat map objects per show; unset = 1 (one upstream socket per show).
  LIVE_BUCKETS: "",
  // Local runs sign buyers in by e-mail alone (wrangler.toml: "false").
  DEV_SIGNIN: "true",
};

// Front-server settings (not Worker vars): --var NAME=VALUE, else the
// environment.
const FRONT_SETTINGS = ["EDGE_HEADERS_TIMEOUT_MS", "EDGE_REQUEST_TIMEOUT_MS"];

function fail(message) {
  process.stderr.write(`[serve.mjs] error: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    port: 0,
    host: "127.0.0.1",
    build: resolve(here, "..", "build"),
    compatibilityDate: "2026-04-26",
    logLevel: "info",
    vars: {},
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case "--port": {
        const p = Number(value());
        if (!Number.isInteger(p) || p < 0 || p > 65535) fail("--port must be 0-65535");
        opts.port = p;
        break;
      }
      case "--host": opts.host = value(); break;
      case "--build": opts.build = resolve(value()); break;
      case "--compatibility-date": opts.compatibilityDate = value(); break;
      case "--log-level": opts.logLevel = value(); break;
      case "--var": {
        const kv = value();
        const eq = kv.indexOf("=");
        if (eq <= 0) fail(`--var expects NAME=VALUE, got ${JSON.stringify(kv)}`);
        opts.vars[kv.slice(0, eq)] = kv.slice(eq + 1);
        break;
      }
      case "-h":
      case "--help":
        process.stderr.write(
          "usage: serve.mjs [--port N] [--host H] [--build DIR] [--compatibility-date D] " +
            "[--var NAME=VALUE]... [--log-level none|error|warn|info|debug]\n",
        );
        process.exit(0);
      default:
        fail(`unknown argument ${JSON.stringify(arg)} (see --help)`);
    }
  }
  return opts;
}

async function loadMiniflare() {
  const roots = [
    process.env.EDGE_NODE_MODULES,
    join(process.env.EDGE_TOOLS_DIR || join(homedir(), ".cache", "booking-edge"), "npm", "node_modules"),
  ].filter(Boolean);
  for (const root of roots) {
    if (existsSync(join(root, "miniflare", "package.json"))) {
      const require = createRequire(join(root, "noop.js"));
      return import(pathToFileURL(require.resolve("miniflare")).href);
    }
  }
  try {
    return await import("miniflare");
  } catch {
    fail(
      `miniflare not found in ${roots.join(" or ")}: run scripts/edge-toolchain.sh ` +
        "(or scripts/build-edge.sh) first, or set EDGE_NODE_MODULES",
    );
  }
}

const opts = parseArgs(process.argv.slice(2));
const script = join(opts.build, "index.js");
if (!existsSync(script)) fail(`${script} does not exist: build the Worker with scripts/build-edge.sh`);

const bindings = {};
for (const [name, fallback] of Object.entries(VARS)) {
  const v = opts.vars[name] ?? process.env[name] ?? fallback;
  if (v !== "") bindings[name] = v;
}
for (const [name, v] of Object.entries(opts.vars)) {
  if (!(name in VARS) && !FRONT_SETTINGS.includes(name)) bindings[name] = v;
}

const { Miniflare, Log, LogLevel } = await loadMiniflare();
const level = { none: LogLevel.NONE, error: LogLevel.ERROR, warn: LogLevel.WARN, info: LogLevel.INFO, debug: LogLevel.DEBUG }[opts.logLevel];
if (level === undefined) fail("--log-level must be none, error, warn, info or debug");

// Miniflare logs with console.log; stdout is reserved for the EDGE_URL line.
class StderrLog extends Log {
  log(message) {
    process.stderr.write(message + "\n");
  }
}

const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: opts.build,
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
  compatibilityDate: opts.compatibilityDate,
  bindings,
  cache: true,
  // The live seat map's fan-out (wrangler.toml's [[durable_objects.bindings]]):
  // in memory, like a fresh deploy.
  durableObjects: { LIVE_SHOWS: "LiveShow" },
  // A fixed request.cf, instead of Miniflare fetching one from the internet.
  cf: { colo: "DEV", country: "XX", asn: 0 },
  // workerd listens on a private port; the front server below is public.
  host: "127.0.0.1",
  port: 0,
  log: new StderrLog(level),
  // The Worker's console.* (workerd's stdout and stderr) goes to stderr too.
  handleRuntimeStdio(stdout, stderr) {
    stdout.pipe(process.stderr);
    stderr.pipe(process.stderr);
  },
});

let stopping = false;
async function stop(why) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`[serve.mjs] stopping (${why})\n`);
  const force = setTimeout(() => process.exit(1), 5000);
  force.unref();
  try {
    await mf.dispose();
  } finally {
    process.exit(0);
  }
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGHUP", () => stop("SIGHUP"));

let url;
try {
  url = await mf.ready;
} catch (e) {
  process.stderr.write(`[serve.mjs] workerd did not start: ${e?.stack ?? e}\n`);
  process.exit(1);
}

// Miniflare runs workerd as a child process. If this process is killed
// outright (SIGKILL: no chance to dispose), workerd would live on and keep
// its port; a detached watchdog ends it once this process is gone (Linux,
// where /proc lists our children).
function childPids(ppid) {
  const pids = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === ppid) pids.push(Number(d));
    } catch {}
  }
  return pids;
}
if (existsSync("/proc/self/stat")) {
  const kids = childPids(process.pid);
  if (kids.length > 0) {
    spawn(
      "sh",
      ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill ${kids.join(" ")} 2>/dev/null; exit 0`],
      { detached: true, stdio: "ignore" },
    ).unref();
  }
}

// Watch stdin only when it is a pipe or socket (a harness holding its end):
// from a terminal or /dev/null, "end" would mean nothing.
let stdinKind = null;
try {
  const st = fstatSync(0);
  stdinKind = st.isFIFO() ? "pipe" : st.isSocket() ? "socket" : null;
} catch {}
if (stdinKind) {
  process.stdin.on("data", () => {});
  process.stdin.on("end", () => stop("stdin closed"));
  process.stdin.on("error", () => stop("stdin error"));
  process.stdin.resume();
}

const front = await startFront(url, opts.host, opts.port);
process.stderr.write(
  `[serve.mjs] serving ${script} (cities: ${Object.keys(JSON.parse(bindings.REGIONS || "{}")).join(", ")})\n`,
);
process.stdout.write(`EDGE_URL=http://${opts.host}:${front.address().port}\n`);

// The project's JSON error body, for refusals the front makes itself.
function errorBody(code, message) {
  return JSON.stringify({ error: { code, message } });
}

function positiveMs(name, fallback) {
  const raw = opts.vars[name] ?? process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 100) fail(`${name} must be an integer of at least 100 (ms)`);
  return v;
}

// Appends the connection's address to X-Forwarded-For.
function forwardedFor(existing, peer) {
  const hop = (peer || "").replace(/^::ffff:/, "");
  return existing ? `${existing}, ${hop}` : hop;
}

function startFront(upstream, host, port) {
  const headersTimeout = positiveMs("EDGE_HEADERS_TIMEOUT_MS", 10_000);
  const requestTimeout = positiveMs("EDGE_REQUEST_TIMEOUT_MS", 30_000);
  const server = http.createServer(
    {
      headersTimeout,
      requestTimeout: Math.max(requestTimeout, headersTimeout),
      // Timeouts are checked on this interval (Node's default is 30 s).
      connectionsCheckingInterval: 250,
      keepAliveTimeout: 5_000,
    },
    (req, res) => {
      // Node's parser takes a CR alone inside a header value; HTTP does not
      // (RFC 9112 §2.2), and a proxy further on might split on it.
      if (req.rawHeaders.some((h) => h.includes("\r"))) {
        const body = errorBody("bad_request", "the request is not valid HTTP/1.1 (bare CR in a header)");
        res.writeHead(400, { "content-type": "application/json", "content-length": Buffer.byteLength(body), connection: "close" });
        return res.end(body);
      }
      const headers = { ...req.headers };
      headers["x-forwarded-for"] = forwardedFor(req.headers["x-forwarded-for"], req.socket.remoteAddress);
      const up = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
        (ur) => {
          res.writeHead(ur.statusCode, ur.rawHeaders);
          ur.pipe(res);
        },
      );
      up.on("error", () => {
        if (res.headersSent) return res.destroy();
        const body = errorBody("edge_unavailable", "the edge runtime did not answer; retry shortly");
        res.writeHead(503, { "content-type": "application/json", "retry-after": "1", "content-length": Buffer.byteLength(body) });
        res.end(body);
      });
      req.pipe(up);
    },
  );
  // Framing errors, timeouts and oversized headers: answer with the
  // project's JSON error (Node's default is a bare status line), then close.
  server.on("clientError", (err, socket) => {
    if (!socket.writable || err.code === "ECONNRESET") return socket.destroy();
    const [status, reason, code, message] =
      err.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large", "headers_too_large", "the request headers are too large"]
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout", "request_timeout", "the request was not received in time"]
          : [400, "Bad Request", "bad_request", "the request is not valid HTTP/1.1 (framing)"];
    const body = errorBody(code, message);
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  // WebSockets: replay the upgrade request to workerd and splice the sockets.
  server.on("upgrade", (req, socket, head) => {
    const up = net.connect(Number(upstream.port), upstream.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (req.rawHeaders[i].toLowerCase() === "x-forwarded-for") continue;
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      }
      lines.push(`X-Forwarded-For: ${forwardedFor(req.headers["x-forwarded-for"], socket.remoteAddress)}`);
      up.write(lines.join("\r\n") + "\r\n\r\n");
      if (head && head.length) up.write(head);
      socket.pipe(up).pipe(socket);
    });
    const close = () => {
      socket.destroy();
      up.destroy();
    };
    up.on("error", close);
    socket.on("error", close);
  });
  return new Promise((ok, bad) => {
    server.once("error", bad);
    server.listen(port, host, () => ok(server));
  });
}
