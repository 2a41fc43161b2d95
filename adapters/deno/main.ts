#!/usr/bin/env -S deno run --allow-read --allow-write --allow-net --allow-env
/**
 * `deno run ... adapters/deno/main.ts`: the Node CLI's flags, environment variables, startup
 * errors, exit codes and log lines, on Deno. Also the entry of the single-file build
 * (`dist/deno/simple-oci-registry.js`).
 */
import { FLAGS, parseArgs, UsageError } from "../shared/options.ts";
import { jsonLogger } from "../shared/logger.ts";
import { runCheck } from "./check.ts";
import { preflight } from "./operations.ts";
import { envVar, type RunningServer, serve, StartupError } from "./server.ts";

const stderr = (line: string) => console.error(line);
const write = (stream: { writeSync(p: Uint8Array): number }) => (text: string) => {
  const bytes = new TextEncoder().encode(text);
  for (let done = 0; done < bytes.length; ) done += stream.writeSync(bytes.subarray(done));
};

async function main(): Promise<number> {
  // Only the variables the options name, and only those Deno may read: `--allow-env` is optional.
  const env = Object.fromEntries(Object.values(FLAGS).flatMap((spec) => (spec.env ? [[spec.env, envVar(spec.env)]] : [])));
  if (Deno.args[0] === "check") return runCheck(Deno.args.slice(1), env, write(Deno.stdout), write(Deno.stderr));
  let parsed;
  try {
    parsed = parseArgs(Deno.args, env);
  } catch (e) {
    if (e instanceof UsageError) {
      stderr(`simple-oci-registry: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (parsed.kind !== "run") {
    console.log(parsed.text);
    return 0;
  }
  const { options } = parsed;
  let reason: string | undefined;
  try {
    if (!(await Deno.stat(options.dir)).isDirectory) reason = "is not a folder";
  } catch (e) {
    reason = e instanceof Deno.errors.NotFound ? "does not exist" : (e as Error).message;
  }
  if (reason) {
    stderr(`simple-oci-registry: --dir ${options.dir} ${reason}`);
    return 1;
  }
  try {
    for await (const _ of Deno.readDir(options.dir)) break;
  } catch (e) {
    stderr(`simple-oci-registry: --dir ${options.dir} is not readable: ${(e as Error).message}`);
    return 1;
  }

  const problem = await preflight(options);
  if (problem) {
    stderr(`simple-oci-registry: ${problem}`);
    return 1;
  }

  const logger = jsonLogger(options.logLevel, stderr);
  let running: RunningServer;
  try {
    running = await serve(options, logger);
  } catch (e) {
    if (e instanceof StartupError) stderr(`simple-oci-registry: ${e.message}`);
    else stderr(`simple-oci-registry: cannot listen on ${options.host}:${options.port}: ${(e as Error).message}`);
    return 1;
  }
  logger.info("listening", { url: running.url, dir: options.dir, ...(running.operationsUrl && { operations: running.operationsUrl }) });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: Deno.Signal) => {
      if (stopping) return;
      stopping = true;
      logger.info("shutting down", { signal, graceMs: options.shutdownGraceMs });
      running.close().then(() => {
        logger.info("stopped");
        resolve(0);
      });
    };
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      try {
        Deno.addSignalListener(signal, () => stop(signal));
      } catch {
        // SIGTERM cannot be listened for on Windows.
      }
    }
  });
}

const report = (msg: string, error: unknown) =>
  stderr(JSON.stringify({ time: new Date().toISOString(), level: "error", msg, error: String((error as Error)?.stack ?? error) }));
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  report("uncaught exception", event.error);
});
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  report("unhandled rejection", event.reason);
});

main().then(
  (code) => Deno.exit(code),
  (e) => {
    report("fatal", e);
    Deno.exit(1);
  },
);
