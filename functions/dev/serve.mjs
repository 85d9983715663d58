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
// Miniflare is loaded from $EDGE_NODE_MODULES, else
// ${EDGE_TOOLS_DIR:-~/.cache/booking-edge}/npm/node_modules (where
// scripts/edge-toolchain.sh installs it), else the usual Node resolution.

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
};

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
  if (!(name in VARS)) bindings[name] = v;
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
  // A fixed request.cf, instead of Miniflare fetching one from the internet.
  cf: { colo: "DEV", country: "XX", asn: 0 },
  host: opts.host,
  port: opts.port,
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

process.stderr.write(
  `[serve.mjs] serving ${script} (cities: ${Object.keys(JSON.parse(bindings.REGIONS || "{}")).join(", ")})\n`,
);
process.stdout.write(`EDGE_URL=${url.origin}\n`);
