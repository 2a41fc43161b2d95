#!/usr/bin/env -S deno run --allow-read --allow-write --allow-net --allow-env
/**
 * `deno run ... adapters/deno/main.ts`: the Node CLI's flags, environment variables, startup
 * errors, exit codes and log lines, on Deno. Also the entry of the single-file build
 * (`dist/deno/simple-oci-registry.js`).
 */
import { FLAGS, parseArgs, UsageError } from "../shared/options.ts";
import { jsonLogger } from "../shared/logger.ts";
import { envVar, type RunningServer, serve } from "./server.ts";

const stderr = (line: string) => console.error(line);

async function main(): Promise<number> {
  // Only the variables the options name, and only those Deno may read: `--allow-env` is optional.
  const env = Object.fromEntries(Object.values(FLAGS).flatMap((spec) => (spec.env ? [[spec.env, envVar(spec.env)]] : [])));
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

  const logger = jsonLogger(options.logLevel, stderr);
  let running: RunningServer;
  try {
    running = serve(options, logger);
  } catch (e) {
    stderr(`simple-oci-registry: cannot listen on ${options.host}:${options.port}: ${listenError(e, options.host, options.port)}`);
    return 1;
  }
  logger.info("listening", { url: running.url, dir: options.dir });

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

/** Node's wording for the usual listen failures, so both runtimes report them alike. */
function listenError(e: unknown, host: string, port: number): string {
  const at = `${host}:${port}`;
  if (e instanceof Deno.errors.AddrInUse) return `listen EADDRINUSE: address already in use ${at}`;
  if (e instanceof Deno.errors.AddrNotAvailable) return `listen EADDRNOTAVAIL: address not available ${at}`;
  if (e instanceof Deno.errors.PermissionDenied) return `listen EACCES: permission denied ${at}`;
  return (e as Error)?.message ?? String(e);
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

main().then((code) => Deno.exit(code));
