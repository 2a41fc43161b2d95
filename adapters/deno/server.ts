/**
 * Binds the core fetch handler to `Deno.serve` as the Node adapter binds it to node:http: the
 * same registry options, access log line, HTTPS with certificate reload, `--metrics-port`, and
 * graceful shutdown (stop accepting, let downloads in flight finish within a grace period, then
 * cut the ones still running).
 */
import type { Logger } from "../../core/log.ts";
import { createRegistry, type Registry } from "../../core/registry.ts";
import { toResponse } from "../../core/answer.ts";
import { logRequest } from "../shared/access-log.ts";
import { DEFAULT_WATCH_INTERVAL_MS, operationsOptions } from "../shared/operations.ts";
import type { ServerOptions } from "../shared/options.ts";
import { watchFiles } from "../shared/watch.ts";
import { ServedChunks } from "./chunks.ts";
import { denoFileSystem } from "./fs.ts";
import { denoHasher } from "./hash.ts";
import { serveOperations } from "./operations.ts";
import { configFileSystem, loadTls, pemPair, watched } from "./tls.ts";

export interface RunningServer {
  /** The listener now accepting connections (a new one after a certificate reload). */
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  registry: Registry;
  url: string;
  /** `--metrics-port`: where /metrics, /healthz and /readyz are (else on `url`). */
  operationsUrl?: string;
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

/** A start-up failure that is not about the address: its message is the whole reason. */
export class StartupError extends Error {}

/** Node's wording for the usual listen failures, so both runtimes report them alike. */
export function listenError(e: unknown, host: string, port: number): Error {
  const at = `${host}:${port}`;
  if (e instanceof Deno.errors.AddrInUse) return new Error(`listen EADDRINUSE: address already in use ${at}`);
  if (e instanceof Deno.errors.AddrNotAvailable) return new Error(`listen EADDRNOTAVAIL: address not available ${at}`);
  if (e instanceof Deno.errors.PermissionDenied) return new Error(`listen EACCES: permission denied ${at}`);
  return e instanceof Error ? e : new Error(String(e));
}

export async function serve(options: ServerOptions, logger: Logger): Promise<RunningServer> {
  const registry = createRegistry({
    images: denoFileSystem(options.dir, {
      symlinks: {
        allowedRoots: options.allowSymlinkRoots,
        onRefused: (path, realPath) => logger.warn("symlink leads outside --dir, ignored", { file: path, target: realPath }),
      },
    }),
    cache: denoFileSystem(options.cacheDir ?? defaultCacheDir(), { writable: true }),
    logger,
    createHasher: denoHasher,
    rescanIntervalMs: options.rescanIntervalMs,
    limits: options.limits,
    ...operationsOptions(options, configFileSystem),
  });
  // Aborted when the grace period is over: every response body still streaming is cut.
  const cut = new AbortController();
  let inFlight = 0;

  // The access log is written when the response is done; without it (info off) a manifest
  // answer, bytes already in memory, needs no completion tracking and no remote address.
  const logging = logger.enabled?.("info") !== false;
  const handler = (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response | Promise<Response> => {
    const started = performance.now();
    const path = targetOf(request.url);
    // Manifest GET/HEAD as plain data (registry.ts `quick`): no router, no Response to unwrap.
    // quick declines any target that is not canonical; fetch then gets the Request as it is.
    const quick = registry.quick({ method: request.method, target: path, header: (name) => request.headers.get(name) });
    if (quick && !logging) return quick instanceof Promise ? quick.then(toResponse) : toResponse(quick);
    return answer(request, info, path, started, quick);
  };
  const answer = async (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>, path: string, started: number, quick: ReturnType<Registry["quick"]>) => {
    inFlight++;
    const remote = info.remoteAddr.hostname; // readable only while the request is open
    const response = quick ? toResponse(await quick) : await registry.fetch(request);
    // A quick answer's body is bytes already in memory: nothing that can fail midway to guard.
    const body = !quick && response.body ? guard(response.body, path, logger, cut.signal) : undefined;
    info.completed.then(
      () => body?.failed ?? false,
      () => true,
    ).then((aborted) => {
      inFlight--;
      logRequest(logger, {
        method: request.method,
        path,
        status: response.status,
        contentLength: response.headers.get("content-length"),
        started,
        remote,
        aborted,
      });
    });
    if (!body) return response;
    return new Response(body.stream, { status: response.status, statusText: response.statusText, headers: response.headers });
  };

  const { tlsCert, tlsKey } = options;
  const tls = tlsCert && tlsKey ? { tlsCert, tlsKey } : undefined;
  const listen = (port: number, pair?: Deno.TlsCertifiedKeyPem) => Deno.serve({ port, hostname: options.host, onListen: () => {}, ...pair }, handler);
  let current: Deno.HttpServer<Deno.NetAddr>;
  let pair: Deno.TlsCertifiedKeyPem | undefined;
  try {
    if (tls) pair = await loadTls(tls);
    current = listen(options.port, pair);
  } catch (e) {
    registry.close();
    const addressProblem = [Deno.errors.AddrInUse, Deno.errors.AddrNotAvailable, Deno.errors.PermissionDenied, Deno.errors.NotCapable].some((c) => e instanceof c);
    // Deno checks the pair only here (Node's preflight does it with createSecureContext).
    if (tls && !addressProblem) throw new StartupError(`--tls-cert ${tls.tlsCert} / --tls-key ${tls.tlsKey}: ${(e as Error).message}`);
    throw listenError(e, options.host, options.port);
  }
  const retired = new Set<Promise<void>>();

  // A changed certificate. Deno.serve cannot swap it in place (and a second listener on the
  // port needs --unstable-net), so the listener is replaced: the old one stops accepting and its
  // connections finish, a new one binds the port with the new pair (new connections are refused
  // for that moment). A pair Deno refuses puts the previous one back.
  const rebind = async (next: Deno.TlsCertifiedKeyPem) => {
    const port = current.addr.port;
    const draining = current.shutdown();
    retired.add(draining);
    void draining.finally(() => retired.delete(draining));
    for (let attempt = 0; ; attempt++) {
      try {
        current = listen(port, next);
        return;
      } catch (e) {
        if (!(e instanceof Deno.errors.AddrInUse) || attempt >= 100) throw e;
        await new Promise((resolve) => setTimeout(resolve, 10)); // the old listener is closing
      }
    }
  };
  const watcher =
    tls &&
    watchFiles(
      [watched(tls.tlsCert), watched(tls.tlsKey)],
      options.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS,
      async ([cert, key]) => {
        const next = pemPair(cert, key);
        try {
          await rebind(next);
        } catch (e) {
          await rebind(pair!);
          throw e;
        }
        pair = next;
        logger.info("tls certificate reloaded", { cert: tls.tlsCert });
      },
      (error) => logger.error("tls certificate not reloaded, keeping the previous one", { cert: tls.tlsCert, error: error.message }),
    );

  let operations: ReturnType<typeof serveOperations> | undefined;
  if (options.metricsPort !== undefined) {
    const host = options.metricsHost ?? options.host;
    try {
      operations = serveOperations(registry, options.metricsPort, host, logger);
    } catch (e) {
      await current.shutdown();
      watcher?.stop();
      registry.close();
      throw new Error(`--metrics-port ${options.metricsPort}: ${listenError(e, host, options.metricsPort).message}`);
    }
  }

  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const url = `${tls ? "https" : "http"}://${host}:${current.addr.port}`;

  const close = async (graceMs = options.shutdownGraceMs) => {
    registry.close();
    watcher?.stop();
    void operations?.server.shutdown();
    const finished = Promise.all([current.shutdown(), ...retired]);
    if (await settlesWithin(finished, graceMs)) return;
    logger.warn("shutdown grace period over, closing connections", { inFlight });
    cut.abort(new Error("shutdown grace period over"));
    // A cut body ends its connection at Deno's next read of it; a client that stopped reading
    // never lets that happen, so do not wait for it long.
    await settlesWithin(finished, 1000);
  };
  return {
    get server() {
      return current;
    },
    registry,
    url,
    operationsUrl: operations?.url,
    close,
  };
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
 * One chunk is read per pull, so a slow client holds no more than that in memory. File chunks
 * go back to their stream for reuse once Deno.serve is known to be done with them (chunks.ts).
 */
function guard(body: ReadableStream<Uint8Array>, path: string, logger: Logger, cut: AbortSignal): { stream: ReadableStream<Uint8Array>; readonly failed: boolean } {
  const reader = body.getReader();
  const served = new ServedChunks();
  let onCut: (() => void) | undefined;
  let failed = false;
  const release = () => {
    cut.removeEventListener("abort", onCut!);
    served.drop();
  };
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
          } else {
            controller.enqueue(value);
            served.served(value);
          }
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

/** The request target (path and query) of a Request's absolute URL, as received. */
function targetOf(url: string): string {
  const slash = url.indexOf("/", url.indexOf("//") + 2);
  return slash < 0 ? "/" : url.slice(slash);
}
