/**
 * `--metrics-port`: /metrics, /healthz and /readyz on their own plain-HTTP listener, so probes
 * and Prometheus need neither the registry's TLS nor its credentials. Requests are logged at
 * debug level (kubelet probes every few seconds).
 */
import { createServer, type Server } from "node:http";
import type { Logger } from "../../core/log.ts";
import type { Registry } from "../../core/registry.ts";
import { accessLogFields } from "../shared/access-log.ts";
import { checkHtpasswdFile } from "../shared/operations.ts";
import type { ServerOptions } from "../shared/options.ts";
import { configFileSystem, loadTls } from "./tls.ts";

export async function serveOperations(registry: Registry, port: number, host: string, logger: Logger): Promise<{ server: Server; url: string }> {
  const server = createServer(async (req, res) => {
    const started = performance.now();
    try {
      const response = await registry.operations(new Request(`http://${req.headers.host ?? "localhost"}${req.url ?? "/"}`, { method: req.method }));
      const body = req.method === "HEAD" ? "" : await response.text();
      response.headers.forEach((value, key) => res.setHeader(key, value));
      res.writeHead(response.status).end(body);
    } catch (e) {
      logger.error("operations request failed", { path: req.url, error: (e as Error).message });
      if (!res.headersSent) res.writeHead(500).end();
    }
    logger.debug("request", accessLogFields({ method: req.method ?? "", path: req.url ?? "", status: res.statusCode, contentLength: res.getHeader("content-length") as string | undefined, started, remote: req.socket.remoteAddress, aborted: false }));
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(new Error(`--metrics-port ${port}: ${e.message}`));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  return { server, url: `http://${host.includes(":") ? `[${host}]` : host}:${bound}` };
}

/** Startup checks of `--htpasswd`, `--tls-cert` and `--tls-key`: a one-line reason, or `undefined`. */
export async function preflight(options: ServerOptions): Promise<string | undefined> {
  const auth = await checkHtpasswdFile(options, configFileSystem);
  if (auth) return auth;
  const { tlsCert, tlsKey } = options;
  if (tlsCert && tlsKey) {
    try {
      await loadTls({ tlsCert, tlsKey });
    } catch (e) {
      return `--tls-cert ${tlsCert} / --tls-key ${tlsKey}: ${(e as Error).message}`;
    }
  }
  return undefined;
}
