/**
 * `--metrics-port`: /metrics, /healthz and /readyz on their own plain-HTTP listener (requests
 * logged at debug level), and the start-up checks of `--htpasswd` and the TLS files, as
 * adapters/node/operations.ts does them.
 */
import type { Logger } from "../../core/log.ts";
import type { Registry } from "../../core/registry.ts";
import { accessLogFields } from "../shared/access-log.ts";
import { checkHtpasswdFile } from "../shared/operations.ts";
import type { ServerOptions } from "../shared/options.ts";
import { configFileSystem, loadTls } from "./tls.ts";

export function serveOperations(registry: Registry, port: number, host: string, logger: Logger): { server: Deno.HttpServer<Deno.NetAddr>; url: string } {
  const server = Deno.serve({ port, hostname: host, onListen: () => {} }, async (request, info) => {
    const started = performance.now();
    const remote = info.remoteAddr.hostname;
    const response = await registry.operations(request);
    const url = new URL(request.url);
    logger.debug("request", accessLogFields({ method: request.method, path: url.pathname + url.search, status: response.status, contentLength: response.headers.get("content-length"), started, remote, aborted: false }));
    return response;
  });
  return { server, url: `http://${host.includes(":") ? `[${host}]` : host}:${server.addr.port}` };
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
