/**
 * Binds the core fetch handler to node:http through @whatwg-node/server, with an access log
 * line per request and a graceful shutdown.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Server as HttpsServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServerAdapter } from "@whatwg-node/server";
import type { Answer } from "../../core/answer.ts";
import type { Logger } from "../../core/log.ts";
import { createRegistry, type Registry } from "../../core/registry.ts";
import { logRequest } from "../shared/access-log.ts";
import { operationsOptions } from "../shared/operations.ts";
import type { ServerOptions } from "../shared/options.ts";
import { nodeFileSystem } from "./fs.ts";
import { nodeHasher } from "./hash.ts";
import { serveOperations } from "./operations.ts";
import { configFileSystem, createTlsServer } from "./tls.ts";
import { sendAnswer, sendResponse } from "./send.ts";

export interface RunningServer {
  server: Server | HttpsServer;
  registry: Registry;
  url: string;
  /** `--metrics-port`: where /metrics, /healthz and /readyz are (else on `url`). */
  operationsUrl?: string;
  /** Stop accepting, let in-flight requests finish within `graceMs`, then close the rest. */
  close(graceMs?: number): Promise<void>;
}

export function defaultCacheDir(): string {
  return join(tmpdir(), "simple-oci-registry-cache");
}

export async function serve(options: ServerOptions, logger: Logger): Promise<RunningServer> {
  const registry = createRegistry({
    images: nodeFileSystem(options.dir, {
      // A cached manifest request costs two or three stats; requests read together share them.
      statsPerTurn: true,
      symlinks: {
        allowedRoots: options.allowSymlinkRoots,
        onRefused: (path, realPath) => logger.warn("symlink leads outside --dir, ignored", { file: path, target: realPath }),
      },
    }),
    cache: nodeFileSystem(options.cacheDir ?? defaultCacheDir(), { writable: true }),
    logger,
    createHasher: nodeHasher,
    rescanIntervalMs: options.rescanIntervalMs,
    limits: options.limits,
    ...operationsOptions(options, configFileSystem),
  });
  const adapter = createServerAdapter(async (request: Request) => {
    const response = await registry.fetch(request);
    if (response.statusText) return response;
    // Web Responses carry no reason phrase unless given; send Node's usual one ("200 OK").
    return new Response(response.body, { status: response.status, statusText: STATUS_CODES[response.status], headers: response.headers });
  });
  const inFlight = new Set<ServerResponse>();
  // Without the access log (info off), a manifest answer computed at once is written and left:
  // its bytes are in memory and go out with one writeHead/end, so there is nothing to follow.
  const logging = logger.enabled?.("info") !== false;

  const fail = (req: IncomingMessage, res: ServerResponse, err: unknown) => {
    logger.error("response failed", { path: req.url, error: (err as Error)?.message ?? String(err) });
    if (!res.headersSent) res.writeHead(500).end();
    else res.destroy();
  };

  const write = (req: IncomingMessage, res: ServerResponse, answer: Answer) => {
    try {
      sendAnswer(res, answer);
    } catch (err) {
      fail(req, res, err);
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    // Manifest GET/HEAD: answered as plain data, without a Web Request and Response (registry.ts `quick`).
    const quick = registry.quick({ method: req.method ?? "", target: req.url ?? "", header: (name) => headerOf(req, name) });
    if (quick && !logging && !(quick instanceof Promise)) {
      write(req, res, quick);
      return;
    }
    inFlight.add(res);
    // Set when the answer is written from plain data (writeHead's header object is not read back by getHeader).
    let contentLength: string | undefined;
    res.on("close", () => {
      inFlight.delete(res);
      logRequest(logger, {
        method: req.method ?? "",
        path: req.url ?? "",
        status: res.statusCode,
        contentLength: contentLength ?? (res.getHeader("content-length") as string | number | undefined),
        started,
        remote: req.socket.remoteAddress,
        // Set just before "finish": the response was handed to the socket in full.
        aborted: !res.writableFinished,
      });
    });
    if (quick) {
      const send = (answer: Answer) => {
        contentLength = answer.headers["Content-Length"];
        write(req, res, answer);
      };
      if (quick instanceof Promise) quick.then(send).catch((err) => fail(req, res, err));
      else send(quick);
      return;
    }
    // Our own writer, not whatwg-node's: a body that fails resets the connection (see send.ts).
    Promise.resolve(adapter.handleNodeRequestAndResponse(req, res))
      .then((response) => sendResponse(req, res, response, logger))
      .catch((err) => fail(req, res, err));
  };
  const { tlsCert, tlsKey, watchIntervalMs } = options;
  const tls = tlsCert && tlsKey ? await createTlsServer({ tlsCert, tlsKey, watchIntervalMs }, handle, logger) : undefined;
  const server = tls?.server ?? createServer(handle);
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const url = `${tls ? "https" : "http"}://${host}:${port}`;
  const operations = options.metricsPort === undefined ? undefined : await serveOperations(registry, options.metricsPort, options.metricsHost ?? options.host, logger);

  const close = async (graceMs = options.shutdownGraceMs) => {
    registry.close();
    tls?.watcher.stop();
    operations?.server.close();
    operations?.server.closeAllConnections();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Keep-alive connections become idle as their downloads finish: close them as they do.
    server.closeIdleConnections();
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    const timer = setTimeout(() => {
      if (inFlight.size) logger.warn("shutdown grace period over, closing connections", { inFlight: inFlight.size });
      server.closeAllConnections();
    }, graceMs);
    await closed;
    clearInterval(sweep);
    clearTimeout(timer);
  };
  return { server, registry, url, operationsUrl: operations?.url, close };
}

/** A request header as `Headers.get` gives it: repeated values joined with ", ". */
function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}
