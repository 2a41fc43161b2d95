/** Helpers for the hostile-input tests: raw HTTP over node:net, a Node server on a temp folder, fd counts. */
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type RunningServer, serve } from "../../adapters/node/server.ts";
import type { ServerOptions } from "../../adapters/shared/options.ts";
import type { ArchiveLimits } from "../../core/archives.ts";
import type { ServingLimits } from "../../core/limits.ts";
import type { Logger } from "../../core/log.ts";

/** What real clients send as Accept for manifests (the registry may negotiate on it). */
export const MANIFEST_TYPES = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The connection ended before the body was complete (reset or closed early). */
  broken: boolean;
  /** Socket error code, if any (ECONNRESET...). */
  error?: string;
}

/**
 * Sends `request` as bytes (no URL normalisation, unlike fetch) and reads one response
 * (Content-Length framed, or until close). The connection is closed afterwards.
 */
export function rawRequest(port: number, request: string | Buffer, timeoutMs = 10_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let settled = false;
    const timer = setTimeout(() => {
      socket.destroy();
      if (!settled) (settled = true), reject(new Error(`raw request timed out: ${String(request).slice(0, 80)}`));
    }, timeoutMs);
    const finish = () => {
      if (settled) return;
      const all = Buffer.concat(chunks);
      const split = all.indexOf("\r\n\r\n");
      if (split < 0) {
        settled = true;
        clearTimeout(timer);
        resolve({ status: 0, headers: {}, body: all, broken: true, error });
        return;
      }
      const head = all.subarray(0, split).toString("latin1").split("\r\n");
      const status = Number(head[0].split(" ")[1]);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const body = all.subarray(split + 4);
      const length = headers["content-length"] === undefined ? undefined : Number(headers["content-length"]);
      const isHead = String(request).startsWith("HEAD ");
      if (length !== undefined && !isHead && body.length < length && !socket.destroyed && !socket.readableEnded) return; // wait for more
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const complete = isHead || length === undefined || body.length === length;
      resolve({ status, headers, body: isHead ? Buffer.alloc(0) : body.subarray(0, length ?? body.length), broken: !complete, error });
    };
    socket.on("data", (d) => {
      chunks.push(d);
      finish();
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
      finish();
    });
    socket.on("end", finish);
    socket.on("close", finish);
    socket.write(request);
  });
}

export const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
  `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;

export interface LogLine {
  level: string;
  msg: string;
  [key: string]: unknown;
}

export function collectingLogger(): { logger: Logger; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) => void logs.push({ ...fields, level, msg });
  return { logger: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") }, logs };
}

export interface TempServer {
  dir: string;
  cacheDir: string;
  server: RunningServer;
  port: number;
  logs: LogLine[];
  write(path: string, bytes: Uint8Array): string;
  close(): Promise<void>;
}

/** The Node server over a fresh temp folder. */
export async function tempServer(options: Partial<ServerOptions> & { limits?: Partial<ArchiveLimits & ServingLimits> } = {}): Promise<TempServer> {
  const dir = mkdtempSync(join(tmpdir(), "sor-hostile-"));
  const cacheDir = mkdtempSync(join(tmpdir(), "sor-hostile-cache-"));
  const { logger, logs } = collectingLogger();
  const server = await serve(
    { dir, cacheDir, port: 0, host: "127.0.0.1", rescanIntervalMs: 0, logLevel: "debug", shutdownGraceMs: 100, ...options } as ServerOptions,
    logger,
  );
  const port = Number(new URL(server.url).port);
  return {
    dir,
    cacheDir,
    server,
    port,
    logs,
    write(path, bytes) {
      const full = join(dir, path);
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, bytes);
      return full;
    },
    async close() {
      await server.close(100);
      rmSync(dir, { recursive: true, force: true });
      rmSync(cacheDir, { recursive: true, force: true });
    },
  };
}

/** Open file descriptors of this process that point at regular files under `under`. */
export function openFilesUnder(under: string): number {
  let n = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    if (readlinkSafe(`/proc/self/fd/${fd}`)?.startsWith(under)) n++;
  }
  return n;
}

function readlinkSafe(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined; // closed meanwhile
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until `check` holds (polling), or throws after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
