/**
 * Binds the core fetch handler to `Deno.serve`, with the Node adapter's access log line and
 * graceful shutdown: stop accepting, let downloads in flight finish within a grace period, then
 * cut the ones still running.
 */
import type { Logger } from "../../core/log.ts";
import { createRegistry, type Registry } from "../../core/registry.ts";
import { logRequest } from "../shared/access-log.ts";
import type { ServerOptions } from "../shared/options.ts";
import { denoFileSystem } from "./fs.ts";
import { denoHasher } from "./hash.ts";

export interface RunningServer {
  server: Deno.HttpServer<Deno.NetAddr>;
  registry: Registry;
  url: string;
  /**
   * Stop accepting, let in-flight requests finish within `graceMs`, then cut the rest. Deno has
   * no way to drop a connection whose client stopped reading once shutdown has begun, so such
   * a connection stays open until the process exits (which the CLI then does).
   */
  close(graceMs?: number): Promise<void>;
}

/** `<tmp>/simple-oci-registry-cache`, with the temp folder found as Node's `os.tmpdir()` finds it. */
export function defaultCacheDir(): string {
  const windows = Deno.build.os === "windows";
  const names = windows ? ["TEMP", "TMP"] : ["TMPDIR", "TMP", "TEMP"];
  const found = names.map(envVar).find((v) => v);
  const tmp = found ?? (windows ? `${envVar("SystemRoot") ?? "C:\\Windows"}\\temp` : "/tmp");
  return `${tmp.length > 1 ? tmp.replace(/[\\/]+$/, "") : tmp}${windows ? "\\" : "/"}simple-oci-registry-cache`;
}

/** An environment variable, or `undefined` when it is unset or Deno was not allowed to read it. */
export function envVar(name: string): string | undefined {
  return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted" ? Deno.env.get(name) : undefined;
}

export function serve(options: ServerOptions, logger: Logger): RunningServer {
  const registry = createRegistry({
    images: denoFileSystem(options.dir),
    cache: denoFileSystem(options.cacheDir ?? defaultCacheDir(), { writable: true }),
    logger,
    createHasher: denoHasher,
    rescanIntervalMs: options.rescanIntervalMs,
  });
  // Aborted when the grace period is over: every response body still streaming is cut.
  const cut = new AbortController();
  let inFlight = 0;

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ port: options.port, hostname: options.host, onListen: () => {} }, async (request, info) => {
      const started = performance.now();
      inFlight++;
      const url = new URL(request.url);
      const remote = info.remoteAddr.hostname; // readable only while the request is open
      const response = await registry.fetch(request);
      const body = response.body && guard(response.body, url.pathname + url.search, logger, cut.signal);
      info.completed.then(
        () => body?.failed ?? false,
        () => true,
      ).then((aborted) => {
        inFlight--;
        logRequest(logger, {
          method: request.method,
          path: url.pathname + url.search,
          status: response.status,
          contentLength: response.headers.get("content-length"),
          started,
          remote,
          aborted,
        });
      });
      if (!body) return response;
      return new Response(body.stream, { status: response.status, statusText: response.statusText, headers: response.headers });
    });
  } catch (e) {
    registry.close();
    throw e;
  }
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const url = `http://${host}:${server.addr.port}`;

  const close = async (graceMs = options.shutdownGraceMs) => {
    registry.close();
    const finished = server.shutdown();
    if (await settlesWithin(finished, graceMs)) return;
    logger.warn("shutdown grace period over, closing connections", { inFlight });
    cut.abort(new Error("shutdown grace period over"));
    // A cut body ends its connection at Deno's next read of it; a client that stopped reading
    // never lets that happen, so do not wait for it long.
    await settlesWithin(finished, 1000);
  };
  return { server, registry, url, close };
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The response body as Deno.serve sends it: a body that fails (an archive truncated under a
 * download) is logged as the Node adapter logs it and breaks the transfer, a client that goes
 * away cancels it (releasing its file), and `cut` ends it when the shutdown grace period is over.
 * One chunk is read per pull, so a slow client holds no more than that in memory.
 */
function guard(body: ReadableStream<Uint8Array>, path: string, logger: Logger, cut: AbortSignal): { stream: ReadableStream<Uint8Array>; readonly failed: boolean } {
  const reader = body.getReader();
  let onCut: (() => void) | undefined;
  let failed = false;
  const release = () => cut.removeEventListener("abort", onCut!);
  const stream = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        onCut = () => {
          failed = true;
          controller.error(cut.reason);
          reader.cancel(cut.reason).catch(() => {});
        };
        if (cut.aborted) onCut();
        else cut.addEventListener("abort", onCut, { once: true });
      },
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            release();
            controller.close();
          } else controller.enqueue(value);
        } catch (err) {
          release();
          if (cut.aborted) return;
          failed = true;
          logger.warn("response aborted", { path, error: (err as Error)?.message ?? String(err) });
          controller.error(err);
        }
      },
      cancel(reason) {
        release();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return {
    stream,
    get failed() {
      return failed;
    },
  };
}
