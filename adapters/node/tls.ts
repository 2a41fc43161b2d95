/**
 * HTTPS for the Node adapter: `--tls-cert` and `--tls-key` (PEM), read at start and reloaded
 * while the server runs when either file changes (`server.setSecureContext`: new connections
 * get the new certificate, open ones keep theirs). A pair that does not load (a key that does
 * not match, a half-written file) is logged and the previous one stays in use.
 */
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createSecureContext } from "node:tls";
import type { Logger } from "../../core/log.ts";
import { DEFAULT_WATCH_INTERVAL_MS } from "../shared/operations.ts";
import { readWhole, splitPath, watchFiles, type FileWatcher, type WatchedFile } from "../shared/watch.ts";
import { nodeFileSystem } from "./fs.ts";

export interface TlsFiles {
  tlsCert: string;
  tlsKey: string;
  watchIntervalMs?: number;
}

/**
 * A FileSystem for the files the operator names (`--htpasswd`, `--tls-cert`, `--tls-key`),
 * rooted at the file's folder. Symlinks may lead anywhere: these paths come from the operator,
 * not from the image folder (certbot's live/ links into ../../archive/, Secrets into ..data/).
 */
export const configFileSystem = (folder: string) => nodeFileSystem(folder, { symlinks: { allowedRoots: ["/"] } });

const watched = (path: string): WatchedFile => {
  const [folder, name] = splitPath(path);
  return { fs: configFileSystem(folder), path: name };
};

/** Certificate and key as `tls.createSecureContext` takes them; throws with the reason when they do not load. */
export async function loadTls(files: TlsFiles): Promise<{ cert: Buffer; key: Buffer }> {
  const [cert, key] = await Promise.all([readWhole(watched(files.tlsCert)), readWhole(watched(files.tlsKey))]);
  const pair = { cert: Buffer.from(cert), key: Buffer.from(key) };
  createSecureContext(pair); // throws on a bad PEM or a key that does not match
  return pair;
}

/** An HTTPS server with the pair loaded, reloading it when the files change. */
export async function createTlsServer(
  files: TlsFiles,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  logger: Logger,
): Promise<{ server: HttpsServer; watcher: FileWatcher }> {
  const server = createHttpsServer(await loadTls(files), handler);
  const watcher = watchFiles(
    [watched(files.tlsCert), watched(files.tlsKey)],
    files.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS,
    ([cert, key]) => {
      const pair = { cert: Buffer.from(cert), key: Buffer.from(key) };
      createSecureContext(pair);
      server.setSecureContext(pair);
      logger.info("tls certificate reloaded", { cert: files.tlsCert });
    },
    (error) => logger.error("tls certificate not reloaded, keeping the previous one", { cert: files.tlsCert, error: error.message }),
  );
  return { server, watcher };
}
