// Start the registry as a subprocess on a free loopback port, wait until `GET /v2/` answers 200,
// and stop it with SIGTERM. The command that runs it is pluggable per runtime: Node's built CLI,
// and `deno run adapters/deno/main.ts`; suites that run against every runtime use describeRuntimes.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe } from "vitest";
import { DENO, denoMissing, OFFLINE_ENV } from "../deno/deno.ts";
import { run } from "./exec.ts";
import { inCI } from "./tools.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface RuntimeCommand {
  command: string;
  args: string[];
  /** Extra environment variables for the process. */
  env?: Record<string, string>;
}

export interface RuntimeDefinition {
  /** Work done once before the first start (for Node: build dist/ when it is stale). */
  prepare?: () => Promise<void>;
  /** The program and arguments that run the server with the given CLI flags. */
  command: (cliArgs: string[]) => RuntimeCommand;
  /** Why the runtime cannot run on this machine, or undefined when it can. */
  missing?: () => string | undefined;
}

const runtimes = new Map<string, RuntimeDefinition>();

/** Adds or replaces a runtime that `startServer({ runtime })` can use. */
export function registerRuntime(name: string, definition: RuntimeDefinition): void {
  runtimes.set(name, definition);
}

export function runtimeNames(): string[] {
  return [...runtimes.keys()];
}

registerRuntime("node", {
  prepare: () => ensureBuilt(),
  command: (cliArgs) => ({ command: process.execPath, args: [join(REPO_ROOT, "dist/node/cli.js"), ...cliArgs] }),
});

// The README's command: writes only to the cache folder; no network beyond the listening socket
// (OFFLINE_ENV makes any npm download fail).
registerRuntime("deno", {
  missing: denoMissing,
  command: (cliArgs) => {
    const cache = cliArgs[cliArgs.indexOf("--cache-dir") + 1];
    const write = cliArgs.includes("--cache-dir") && cache ? `--allow-write=${cache}` : "--allow-write";
    return { command: DENO, args: ["run", "--allow-read", write, "--allow-net", "--allow-env", join(REPO_ROOT, "adapters/deno/main.ts"), ...cliArgs], env: OFFLINE_ENV };
  },
});

/** The runtimes every server suite runs against. */
export const SERVER_RUNTIMES = ["node", "deno"] as const;

/** The command that runs `runtime` with these CLI flags (after its `prepare`). */
export async function runtimeCommand(runtime: string, cliArgs: string[]): Promise<RuntimeCommand> {
  const definition = runtimes.get(runtime);
  if (!definition) throw new Error(`unknown runtime ${runtime}; known: ${runtimeNames().join(", ")}`);
  await definition.prepare?.();
  return definition.command(cliArgs);
}

/**
 * Runs `body` once per runtime, each in a describe named after it (h3's describeMatrix). A
 * runtime missing here is skipped with the reason; in CI (CI=true) it fails the file instead.
 */
export function describeRuntimes(body: (runtime: string) => void, names: readonly string[] = SERVER_RUNTIMES): void {
  for (const runtime of names) {
    const reason = runtimes.get(runtime)?.missing?.();
    if (reason && inCI()) throw new Error(`CI=true and runtime ${runtime} is not available: ${reason}`);
    describe.skipIf(!!reason)(reason ? `${runtime} [skipped: ${reason}]` : runtime, () => body(runtime));
  }
}

// ---------------------------------------------------------------------------------------------
// Build dist/ when it is missing or older than its sources. Test files run in parallel worker
// processes, so one builds under a lock folder while the others wait for it.

const BUILD_SOURCES = ["core", "adapters", "package.json", "tsup.config.ts"];
const BUILD_OUTPUTS = ["dist/node/cli.js", "dist/deno/simple-oci-registry.js"];

function newestMtime(path: string): number {
  let st;
  try {
    st = statSync(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

/** True when an output (the Node CLI, the Deno single file) is missing or older than a file it is built from. */
export function buildIsStale(root = REPO_ROOT): boolean {
  const outputs = BUILD_OUTPUTS.map((output) => join(root, output));
  if (!outputs.every((output) => existsSync(output))) return true;
  const built = Math.min(...outputs.map((output) => statSync(output).mtimeMs));
  return BUILD_SOURCES.some((source) => newestMtime(join(root, source)) > built);
}

let built: Promise<void> | undefined;

/** Runs `npm run build` once per process, only when the build is stale. */
export function ensureBuilt(root = REPO_ROOT): Promise<void> {
  built ??= buildUnderLock(root).catch((error) => {
    built = undefined;
    throw error;
  });
  return built;
}

async function buildUnderLock(root: string): Promise<void> {
  if (!buildIsStale(root)) return;
  const lock = join(tmpdir(), `simple-oci-registry-build-${createHash("sha256").update(root).digest("hex").slice(0, 12)}.lock`);
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      try {
        if (Date.now() - statSync(lock).mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true }); // left by a killed run
      } catch {
        // gone meanwhile
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for another build (lock ${lock})`);
      await sleep(250);
    }
  }
  try {
    if (buildIsStale(root)) await run("npm", ["run", "build", "--silent"], { cwd: root, timeout: 300_000 });
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export interface StartServerOptions {
  /** The --dir to serve; when undefined no --dir flag is passed (the CLI's default applies). */
  dir: string | undefined;
  /** --cache-dir; a temp folder (removed by stop()) when not given. */
  cacheDir?: string;
  /** Extra CLI flags, after --dir/--port/--host/--cache-dir. */
  args?: string[];
  /** Extra environment variables for the server process. */
  env?: Record<string, string | undefined>;
  /** Runtime registered with registerRuntime (default "node"). */
  runtime?: string;
  /** --log-level (default "info"). */
  logLevel?: string;
  /** How long to wait for `GET /v2/` to answer 200 (default 30 s). */
  readyTimeoutMs?: number;
  /** Sends the readiness request and answers its status (default: plain `GET /v2/`); for TLS or credentials. */
  probe?: (port: number) => Promise<number>;
}

export interface RunningServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  /** `127.0.0.1:PORT`, for image references such as `${host}/hello:latest`. */
  host: string;
  pid: number;
  /** Everything the server wrote to stderr so far. */
  logs(): string;
  /** stderr parsed as JSON log lines (lines that are not JSON are skipped). */
  logLines(): Record<string, unknown>[];
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | string | null>;
  /** SIGTERM, wait for exit (SIGKILL after `graceMs`, default 15 s), remove a temp cache dir. */
  stop(graceMs?: number): Promise<number | string | null>;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const runtime = runtimes.get(options.runtime ?? "node");
  if (!runtime) throw new Error(`unknown runtime ${options.runtime}; known: ${runtimeNames().join(", ")}`);
  await runtime.prepare?.();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(runtime, options, await freePort());
    } catch (error) {
      lastError = error;
      if (!/EADDRINUSE/.test(String(error))) throw error;
    }
  }
  throw lastError;
}

async function startOnce(runtime: RuntimeDefinition, options: StartServerOptions, port: number): Promise<RunningServer> {
  const ownCache = options.cacheDir === undefined;
  const cacheDir = options.cacheDir ?? mkdtempSync(join(tmpdir(), "sor-cache-"));
  const cliArgs = [
    ...(options.dir === undefined ? [] : ["--dir", options.dir]),
    "--port",
    String(port),
    "--host",
    "127.0.0.1",
    "--cache-dir",
    cacheDir,
    "--log-level",
    options.logLevel ?? "info",
    ...(options.args ?? []),
  ];
  const { command, args, env } = runtime.command(cliArgs);
  const child = spawn(command, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let stderr = "";
  let stdout = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  const exited = new Promise<number | string | null>((resolveExit) => {
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolveExit(code ?? signal);
    });
    child.once("error", (error) => {
      children.delete(child);
      stderr += `\nspawn error: ${error.message}`;
      resolveExit(null);
    });
  });
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));

  const url = `http://127.0.0.1:${port}`;
  const cleanup = () => {
    if (ownCache) rmSync(cacheDir, { recursive: true, force: true });
  };
  const stop = async (graceMs = 15_000) => {
    if (!exitedEarly && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      try {
        await exited;
      } finally {
        clearTimeout(timer);
      }
    }
    cleanup();
    return exited;
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  let lastProblem = "no answer yet";
  for (;;) {
    if (exitedEarly) {
      cleanup();
      const code = await exited;
      throw new Error(`server exited (${code}) before answering GET /v2/: ${commandText(command, args)}\nstderr:\n${stderr}${stdout ? `\nstdout:\n${stdout}` : ""}`);
    }
    try {
      const status = options.probe
        ? await options.probe(port)
        : await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2_000) }).then(async (response) => {
            await response.arrayBuffer();
            return response.status;
          });
      if (status === 200) break;
      lastProblem = `GET /v2/ answered ${status}`;
    } catch (error) {
      lastProblem = String((error as Error).cause ?? error);
    }
    if (Date.now() > deadline) {
      await stop(2_000);
      throw new Error(`server not ready after ${options.readyTimeoutMs ?? 30_000} ms (${lastProblem}): ${commandText(command, args)}\nstderr:\n${stderr}`);
    }
    await sleep(50);
  }

  return {
    url,
    port,
    host: `127.0.0.1:${port}`,
    pid: child.pid!,
    logs: () => stderr,
    logLines: () =>
      stderr.split("\n").flatMap((line) => {
        if (!line.startsWith("{")) return [];
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    exited,
    stop,
  };
}

function commandText(command: string, args: string[]): string {
  return [command, ...args].join(" ");
}
