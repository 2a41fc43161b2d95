/** The access log line both runtime adapters write: one `request` line per request, once it is over. */
import type { LogFields, Logger } from "../../core/log.ts";

export interface RequestRecord {
  method: string;
  /** The request target as received: path and query. */
  path: string;
  status: number;
  /** The response's Content-Length header (absent for a chunked body). */
  contentLength: string | number | null | undefined;
  /** `performance.now()` when the request arrived. */
  started: number;
  remote?: string;
  /** The client went away (or the server gave up) before the response was sent in full. */
  aborted: boolean;
}

export function accessLogFields(r: RequestRecord, now = performance.now()): LogFields {
  return {
    method: r.method,
    path: r.path,
    status: r.status,
    bytes: r.method === "HEAD" ? 0 : Number(r.contentLength ?? 0),
    ms: Math.round((now - r.started) * 100) / 100,
    remote: r.remote,
    ...(r.aborted ? { aborted: true } : {}),
  };
}

export function logRequest(logger: Logger, record: RequestRecord): void {
  if (logger.enabled?.("info") === false) return;
  logger.info("request", accessLogFields(record));
}
