/**
 * createRegistry(options) -> { fetch }: the whole pull API as a Web fetch handler over a
 * FileSystem. Adapters (Node, Deno) pass in the file systems, a logger and a hasher.
 */
import { Router } from "itty-router";
import type { Answer, PlainRequest } from "./answer.ts";
import { ArchiveStore, type ArchiveLimits } from "./archives.ts";
import { HtpasswdAuth, type HtpasswdOptions } from "./auth.ts";
import { getBlob } from "./blobs.ts";
import { collectGarbage } from "./cache-gc.ts";
import type { Context, RouteRequest } from "./context.ts";
import { errorAnswer, errorResponse, OciError } from "./errors.ts";
import type { FileSystem, WritableFileSystem } from "./fs.ts";
import { defaultHasher, type HasherFactory } from "./hash.ts";
import { Health, operationsHandler } from "./health.ts";
import { type Logger, silentLogger } from "./log.ts";
import { budgetedCache, defaultServingLimits, type ServingLimits, StreamGate } from "./limits.ts";
import { Lookup } from "./lookup.ts";
import { getManifest, manifestAnswer, manifestAnswerNow } from "./manifests.ts";
import { isValidName, isValidReference } from "./grammar.ts";
import { Metrics } from "./metrics.ts";
import { namespaceFolder, requestNamespace } from "./namespace.ts";
import { scanFolder } from "./scan.ts";
import { listTags } from "./tags.ts";
import { BlobVerifier } from "./verify.ts";
import { Catalog, listCatalog } from "./catalog.ts";
import { listReferrers } from "./referrers.ts";

export interface RegistryOptions {
  /** The image folder (`--dir`). */
  images: FileSystem;
  /** Where gzip-compressed archives are unpacked (`--cache-dir`). Without it they are reported as unusable. */
  cache?: WritableFileSystem;
  logger?: Logger;
  createHasher?: HasherFactory;
  /** How often every cached listing and archive is revalidated; 0 turns the timer off. Default 10 minutes. */
  rescanIntervalMs?: number;
  /** Archive limits (entries, JSON sizes, decompressed size) and serving limits (open blobs, cache size). */
  limits?: Partial<ArchiveLimits & ServingLimits>;
  /** Basic auth on every /v2 route against an htpasswd file (`--htpasswd`); off when absent. */
  htpasswd?: HtpasswdOptions;
  /** With containerd's `?ns=<registry>`, look under `<dir>/<registry>/` first (`--ns-dirs`). */
  nsDirs?: boolean;
  /** Answer /metrics, /healthz and /readyz in `fetch` too (default true; false with `--metrics-port`). */
  operationsOnMainPort?: boolean;
  /** Index every archive in the folder at start; /readyz answers 503 until done (default false). */
  initialScan?: boolean;
}

export interface Registry {
  fetch(request: Request): Promise<Response>;
  /**
   * The hot route without Web objects: a manifest GET or HEAD whose request target is already
   * in canonical form (a valid name and reference; nothing a URL parser would rewrite) is
   * answered as plain data, with the same lookup, negotiation, auth, errors, headers and
   * metrics as `fetch`. The answer comes without a promise when the lookup has it cached and
   * nothing it depends on changed (the usual case under load). `undefined` for anything
   * else: the adapter then calls `fetch`.
   */
  quick(request: PlainRequest): Answer | Promise<Answer> | undefined;
  /** Revalidate everything now and drop unreferenced blobs from the cache (what the timer does). */
  rescan(): Promise<void>;
  /** Stop the rescan timer. */
  close(): void;
  /** /metrics, /healthz and /readyz alone (404 for anything else), for `--metrics-port`. */
  operations(request: Request): Promise<Response>;
  metrics: Metrics;
  health: Health;
  /** Settles when the first scan is done (at once without `initialScan`). */
  scanned: Promise<void>;
}

export const DEFAULT_RESCAN_INTERVAL_MS = 10 * 60 * 1000;

const API_VERSION = { "Docker-Distribution-API-Version": "registry/2.0" };

/** A manifest route's request target (path part) as `quick` takes it; anything else goes to `fetch`. */
const MANIFEST_TARGET = /^\/v2\/([a-z0-9._/-]+)\/manifests\/([A-Za-z0-9_.:=+-]+)$/;

export function createRegistry(options: RegistryOptions): Registry {
  const metrics = new Metrics();
  const logger = metrics.observeLogger(options.logger ?? silentLogger);
  const createHasher = options.createHasher ?? defaultHasher;
  const limits = { ...defaultServingLimits, ...options.limits };
  const cache = options.cache && budgetedCache(options.cache, limits.maxCacheBytes);
  const store = new ArchiveStore({ fs: options.images, cache, createHasher, logger, limits: options.limits });
  const lookup = new Lookup(options.images, store);
  const catalog = new Catalog(options.images, store);
  const ctx: Context = { lookup, store, catalog, logger, createHasher };
  metrics.source("lookup_cache_hits_total", "counter", "Lookups answered from the reference cache.", () => lookup.stats.hits);
  metrics.source("lookup_cache_misses_total", "counter", "Lookups that searched the candidate archives.", () => lookup.stats.misses);
  const health = new Health(options.images, { scanned: !options.initialScan });
  const scanned = options.initialScan ? scanFolder(options.images, store, logger).then(() => void (health.scanned = true)) : Promise.resolve();
  const operations = operationsHandler(health, metrics);
  const auth = options.htpasswd && new HtpasswdAuth(options.htpasswd, { logger, createHasher });
  if (auth) auth.onFailure = (reason) => metrics.authFailures.inc({ reason });
  const authenticate = async (request: RouteRequest) => {
    if (!auth || !/^\/v2(\/|$)/.test(new URL(request.url).pathname)) return;
    const denied = await auth.check(request.headers.get("Authorization"), new URL(request.url).pathname);
    if (denied) throw denied;
  };
  const contextFor = (request: Request): Context => {
    const root = options.nsDirs ? requestNamespace(request) : undefined;
    return root ? { ...ctx, lookup: lookup.within(root) } : ctx;
  };

  const wrap = (handler: (request: RouteRequest, ctx: Context) => Promise<Response>) => (request: RouteRequest) => handler(request, contextFor(request));
  ctx.gate = new StreamGate(limits);
  ctx.verifier = new BlobVerifier(createHasher, logger);
  const unsupported = () => {
    throw new OciError("UNSUPPORTED", { reason: "this registry is read-only" });
  };

  const router = Router<RouteRequest>({
    before: [authenticate],
    catch: (err: unknown, request: RouteRequest) => {
      if (err instanceof OciError) return errorResponse(err, request.method);
      logger.error("request failed", { method: request.method, url: request.url, error: (err as Error)?.message ?? String(err) });
      return errorResponse(new OciError("UNKNOWN", { reason: "internal error; see the registry's log" }), request.method);
    },
    finally: [
      (response: Response | undefined, request: RouteRequest) => {
        const res = response ?? errorResponse(new OciError("NOT_FOUND", { path: new URL(request.url).pathname }), request.method);
        for (const [k, v] of Object.entries(API_VERSION)) res.headers.set(k, v);
        return res;
      },
    ],
  });

  // https://github.com/opencontainers/distribution-spec/blob/main/spec.md#determining-support
  const base = () => new Response("{}", { status: 200, headers: { "Content-Type": "application/json", "Content-Length": "2" } });
  router
    .get("/v2", base)
    .head("/v2", () => new Response(null, { status: 200, headers: { "Content-Type": "application/json", "Content-Length": "2" } }))
    .get("/v2/:name+/manifests/:reference", wrap(getManifest))
    .head("/v2/:name+/manifests/:reference", wrap(getManifest))
    .get("/v2/:name+/blobs/:digest", wrap(getBlob))
    .head("/v2/:name+/blobs/:digest", wrap(getBlob))
    .get("/v2/_catalog", wrap(listCatalog))
    .get("/v2/:name+/tags/list", wrap(listTags))
    .get("/v2/:name+/referrers/:digest", wrap(listReferrers))
    .all("/v2/*", (request: RouteRequest) => {
      if (request.method !== "GET" && request.method !== "HEAD") return unsupported();
      return undefined;
    });

  let timer: ReturnType<typeof setInterval> | undefined;
  let rescanning: Promise<void> | undefined;
  const rescan = () =>
    (rescanning ??= (async () => {
      try {
        lookup.clear();
        catalog.clear();
        const current = await store.revalidate();
        if (options.cache && store.busy === 0) await collectGarbage(options.cache, current, logger);
        logger.info("rescan done", { archives: current.length });
      } catch (e) {
        logger.error("rescan failed", { error: (e as Error).message });
      } finally {
        rescanning = undefined;
      }
    })());
  const interval = options.rescanIntervalMs ?? DEFAULT_RESCAN_INTERVAL_MS;
  if (interval > 0) {
    timer = setInterval(() => void rescan(), interval);
    (timer as { unref?: () => void }).unref?.();
  }

  const quick = (request: PlainRequest): Answer | Promise<Answer> | undefined => {
    const { method, target } = request;
    if (method !== "GET" && method !== "HEAD") return undefined;
    const q = target.indexOf("?");
    const path = q < 0 ? target : target.slice(0, q);
    const m = MANIFEST_TARGET.exec(path);
    // Only targets a URL parser leaves as they are (no dot segments, escapes or fragments), so
    // that `quick` and `fetch` see the same name and reference.
    if (!m || !isValidName(m[1]) || !isValidReference(m[2]) || target.includes("#")) return undefined;
    return answerManifest(request, path, q < 0 ? undefined : target.slice(q + 1), m[1], m[2]);
  };
  const failure = (err: unknown, request: PlainRequest): Answer => {
    if (!(err instanceof OciError)) logger.error("request failed", { method: request.method, url: request.target, error: (err as Error)?.message ?? String(err) });
    return errorAnswer(err instanceof OciError ? err : new OciError("UNKNOWN", { reason: "internal error; see the registry's log" }), request.method);
  };
  const finish = (request: PlainRequest, answer: Answer, started: number): Answer => {
    // (Answers to cached misses are shared between requests: this sets the same value again.)
    Object.assign(answer.headers, API_VERSION);
    const bytes = request.method === "HEAD" ? 0 : Number(answer.headers["Content-Length"] ?? 0);
    metrics.record("manifest", request.method, answer.status, bytes, (metrics.clock() - started) / 1000);
    return answer;
  };
  const contextIn = (query: string | undefined): Context => {
    const root = options.nsDirs && query !== undefined ? namespaceFolder(new URLSearchParams(query).get("ns")) : undefined;
    return root ? { ...ctx, lookup: lookup.within(root) } : ctx;
  };
  // Without a promise when the lookup's answer is cached and current (and no password is to be
  // checked): the usual manifest request of a busy registry. Otherwise the same steps, awaited.
  const answerManifest = (request: PlainRequest, path: string, query: string | undefined, name: string, reference: string): Answer | Promise<Answer> => {
    const started = metrics.clock();
    if (!auth) {
      let now: Answer | null;
      try {
        now = manifestAnswerNow(contextIn(query), request.method, name, reference, request.header);
      } catch (err) {
        now = failure(err, request);
      }
      if (now) return finish(request, now, started);
    }
    return answerManifestLater(request, path, query, name, reference, started);
  };
  const answerManifestLater = async (request: PlainRequest, path: string, query: string | undefined, name: string, reference: string, started: number): Promise<Answer> => {
    let answer: Answer;
    try {
      const denied = auth && (await auth.check(request.header("authorization"), path));
      if (denied) throw denied;
      answer = await manifestAnswer(contextIn(query), request.method, name, reference, request.header);
    } catch (err) {
      answer = failure(err, request);
    }
    return finish(request, answer, started);
  };

  const onMainPort = options.operationsOnMainPort ?? true;
  return {
    quick,
    fetch: metrics.instrument(async (request: Request) => {
      const answer = onMainPort ? await operations(request) : undefined;
      if (answer) return answer;
      try {
        return await router.fetch(request as RouteRequest);
      } catch (e) {
        // Only reached if the error handler itself failed: never let an exception escape.
        logger.error("unhandled", { error: (e as Error)?.message });
        return errorResponse(new OciError("UNKNOWN"), request.method);
      }
    }),
    rescan,
    close: () => clearInterval(timer),
    operations: metrics.instrument(async (request: Request) => (await operations(request)) ?? new Response("not found\n", { status: 404 })),
    metrics,
    health,
    scanned,
  };
}
