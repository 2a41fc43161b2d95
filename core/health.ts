/**
 * Liveness, readiness and the operational endpoints.
 *
 * - `GET /healthz`: 200 while the process answers. It never touches the image folder, so an NFS
 *   outage makes the pod unready, not restarted in a loop.
 * - `GET /readyz`: 200 once the first scan of the folder is done and the folder can be listed
 *   now (within `timeoutMs`: a hung NFS mount answers 503, not never); otherwise 503 with why.
 * - `GET /metrics`: Prometheus text.
 * These answer without credentials: kubelet's probes and Prometheus carry none.
 */
import type { FileSystem } from "./fs.ts";
import type { Metrics } from "./metrics.ts";

export interface Readiness {
  ready: boolean;
  /** One line per check that failed (empty when ready). */
  reasons: string[];
}

export class Health {
  private readonly fs: FileSystem;
  private readonly timeoutMs: number;
  /** Set when the first scan has finished (whatever it found). */
  scanned = false;

  constructor(fs: FileSystem, options: { timeoutMs?: number; scanned?: boolean } = {}) {
    this.fs = fs;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.scanned = options.scanned ?? false;
  }

  async readiness(): Promise<Readiness> {
    const reasons: string[] = [];
    if (!this.scanned) reasons.push("the first scan of the image folder is not done yet");
    const folder = await this.folderReadable();
    if (folder) reasons.push(folder);
    return { ready: reasons.length === 0, reasons };
  }

  /** `undefined` when the image folder can be listed, else why not. */
  private async folderReadable(): Promise<string | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`the image folder did not answer within ${this.timeoutMs} ms`), this.timeoutMs);
    });
    const listing = this.fs.list(".").then(
      (names) => (names === undefined ? "the image folder does not exist" : undefined),
      (e: Error) => `the image folder cannot be listed: ${e.message}`,
    );
    try {
      return await Promise.race([listing, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

const text = (status: number, body: string, head: boolean, type = "text/plain; charset=utf-8") =>
  new Response(head ? null : body, { status, headers: { "Content-Type": type, "Content-Length": String(new TextEncoder().encode(body).byteLength), "Cache-Control": "no-store" } });

/**
 * `/healthz`, `/readyz` and `/metrics`; `undefined` for any other path (so it can sit in front
 * of the registry on the main port, or alone on `--metrics-port`).
 */
export function operationsHandler(health: Health, metrics: Metrics): (request: Request) => Promise<Response | undefined> {
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (pathname !== "/healthz" && pathname !== "/readyz" && pathname !== "/metrics") return undefined;
    const head = request.method === "HEAD";
    if (!head && request.method !== "GET") return text(405, "method not allowed\n", false);
    if (pathname === "/healthz") return text(200, "ok\n", head);
    if (pathname === "/metrics") return text(200, metrics.render(), head, "text/plain; version=0.0.4; charset=utf-8");
    const { ready, reasons } = await health.readiness();
    return ready ? text(200, "ok\n", head) : text(503, reasons.map((r) => `not ready: ${r}\n`).join(""), head);
  };
}
