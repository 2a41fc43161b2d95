/**
 * Prometheus metrics as plain objects, rendered to the text exposition format
 * (https://prometheus.io/docs/instrumenting/exposition_formats/). Runtime-free: no client
 * library, no timers. `instrument` wraps a fetch handler to count requests, response bytes,
 * durations and downloads in flight; `observeLogger` turns the archive store's log events into
 * counters; `source` adds values read at scrape time (the lookup cache's hit and miss counts).
 */
import type { LogFields, Logger } from "./log.ts";

const PREFIX = "simple_oci_registry_";

/** Seconds. Manifests answer in milliseconds; layer downloads take seconds to minutes. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
export const INDEX_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300];

type Labels = Record<string, string>;

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const labelText = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};
const num = (n: number) => (Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(12))));

export class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    this.series(labels).value += by;
  }
  /** The series for these labels (created at 0), for callers that keep it rather than label every increment. */
  series(labels: Labels): { value: number } {
    const key = labelText(labels);
    let entry = this.values.get(key);
    if (!entry) this.values.set(key, (entry = { labels, value: 0 }));
    return entry;
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }
  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) lines.push(`${this.name} 0`);
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${num(value)}`);
    return lines;
  }
}

export class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}
  observe(labels: Labels, value: number): void {
    this.observer(labels)(value);
  }
  /** A function that observes a value for these labels, for callers that keep it. */
  observer(labels: Labels): (value: number) => void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    const series = s;
    const buckets = this.buckets;
    return (value) => {
      for (let i = 0; i < buckets.length; i++) if (value <= buckets[i]) series.counts[i]++;
      series.sum += value;
      series.count++;
    };
  }
  count(labels: Labels = {}): number {
    return this.series.get(labelText(labels))?.count ?? 0;
  }
  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const { labels, counts, sum, count } of this.series.values()) {
      this.buckets.forEach((le, i) => lines.push(`${this.name}_bucket${labelText({ ...labels, le: num(le) })} ${counts[i]}`));
      lines.push(`${this.name}_bucket${labelText({ ...labels, le: "+Inf" })} ${count}`);
      lines.push(`${this.name}_sum${labelText(labels)} ${num(sum)}`);
      lines.push(`${this.name}_count${labelText(labels)} ${count}`);
    }
    return lines;
  }
}

/** A value read when metrics are scraped. */
interface Source {
  name: string;
  help: string;
  type: "counter" | "gauge";
  read: () => number;
}

/** What a route is, for labels: a fixed, small set (never the repository name). */
export type Route = "base" | "manifest" | "blob" | "tags" | "catalog" | "referrers" | "other" | "metrics" | "healthz" | "readyz" | "not_found";

export function routeOf(pathname: string): Route {
  if (pathname === "/v2" || pathname === "/v2/") return "base";
  if (pathname === "/metrics") return "metrics";
  if (pathname === "/healthz") return "healthz";
  if (pathname === "/readyz") return "readyz";
  if (!pathname.startsWith("/v2/")) return "not_found";
  if (/\/manifests\/[^/]+$/.test(pathname)) return "manifest";
  if (/\/blobs\/[^/]+$/.test(pathname)) return "blob";
  if (/\/tags\/list$/.test(pathname)) return "tags";
  if (/\/referrers\/[^/]+$/.test(pathname)) return "referrers";
  if (pathname === "/v2/_catalog") return "catalog";
  return "other";
}

export class Metrics {
  readonly requests = new Counter(`${PREFIX}http_requests_total`, "HTTP requests answered, by route, method and status.");
  readonly responseBytes = new Counter(`${PREFIX}http_response_bytes_total`, "Response body bytes sent, by route.");
  readonly requestDuration = new Histogram(`${PREFIX}http_request_duration_seconds`, "Time from request to the last byte of the response, by route.", DURATION_BUCKETS);
  readonly archivesIndexed = new Counter(`${PREFIX}archives_indexed_total`, "Archives indexed (a plain tar's headers read, or a gzipped one unpacked), by format.");
  readonly indexDuration = new Histogram(`${PREFIX}archive_index_duration_seconds`, "Time taken to index one archive.", INDEX_BUCKETS);
  readonly archiveErrors = new Counter(`${PREFIX}archive_errors_total`, "Archives found unusable (unreadable, not an OCI layout, corrupt).");
  readonly imageErrors = new Counter(`${PREFIX}image_errors_total`, "Images left unservable inside an otherwise usable archive (digest mismatch, missing blob).");
  readonly authFailures = new Counter(`${PREFIX}auth_failures_total`, "Requests refused for missing or wrong credentials, by reason.");
  /** Blob bodies being sent right now. */
  downloadsInFlight = 0;
  private readonly sources: Source[] = [];
  private readonly recorders = new Map<string, { requests: { value: number }; bytes?: { value: number }; duration: (seconds: number) => void }>();
  private readonly now: () => number;

  constructor(options: { now?: () => number } = {}) {
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Counts one answered request. The series for a route, method and status are looked up once
   * and kept: labelling every increment anew was a twentieth of a manifest GET's CPU.
   */
  record(route: Route, method: string, status: number, bytes: number, seconds: number): void {
    const key = `${route} ${method} ${status}`;
    let r = this.recorders.get(key);
    if (!r) {
      // Methods come from the HTTP parser (a fixed set); the bound is a guard all the same.
      if (this.recorders.size >= 1024) this.recorders.clear();
      this.recorders.set(key, (r = { requests: this.requests.series({ route, method, status: String(status) }), duration: this.requestDuration.observer({ route }) }));
    }
    r.requests.value++;
    if (bytes > 0) (r.bytes ??= this.responseBytes.series({ route })).value += bytes;
    r.duration(seconds);
  }

  /** Milliseconds on the clock `record` is given durations from (performance.now unless a test sets it). */
  clock(): number {
    return this.now();
  }

  /** Adds a value read at scrape time (names get the `simple_oci_registry_` prefix). */
  source(name: string, type: Source["type"], help: string, read: () => number): void {
    this.sources.push({ name: `${PREFIX}${name}`, type, help, read });
  }

  render(): string {
    const lines = [
      ...this.requests.render(),
      ...this.responseBytes.render(),
      ...this.requestDuration.render(),
      `# HELP ${PREFIX}downloads_in_flight Blob downloads whose body is being sent.`,
      `# TYPE ${PREFIX}downloads_in_flight gauge`,
      `${PREFIX}downloads_in_flight ${this.downloadsInFlight}`,
      ...this.archivesIndexed.render(),
      ...this.indexDuration.render(),
      ...this.archiveErrors.render(),
      ...this.imageErrors.render(),
      ...this.authFailures.render(),
    ];
    for (const s of this.sources) lines.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`, `${s.name} ${num(s.read())}`);
    return `${lines.join("\n")}\n`;
  }

  /**
   * A logger that also counts the archive store's events ("archive indexed" with its `ms`,
   * "archive unusable", "image unservable": the log lines the README documents).
   */
  observeLogger(logger: Logger): Logger {
    const tap = (msg: string, fields?: LogFields) => {
      if (msg === "archive indexed") {
        this.archivesIndexed.inc({ format: String(fields?.format ?? "unknown") });
        if (typeof fields?.ms === "number") this.indexDuration.observe({}, fields.ms / 1000);
      } else if (msg === "archive unusable") this.archiveErrors.inc();
      else if (msg === "image unservable") this.imageErrors.inc();
    };
    return {
      debug: (m, f) => logger.debug(m, f),
      info: (m, f) => (tap(m, f), logger.info(m, f)),
      warn: (m, f) => logger.warn(m, f),
      error: (m, f) => (tap(m, f), logger.error(m, f)),
    };
  }

  /**
   * Wraps a fetch handler: each request is counted when its response body has been sent (or
   * the client went away), with the bytes actually sent and the time to the last byte.
   */
  instrument(handler: (request: Request) => Promise<Response>): (request: Request) => Promise<Response> {
    return async (request) => {
      const started = this.now();
      const route = routeOf(new URL(request.url).pathname);
      const download = route === "blob" && request.method === "GET";
      if (download) this.downloadsInFlight++;
      let status = 500;
      let done = false;
      const finish = (bytes: number) => {
        if (done) return;
        done = true;
        if (download) this.downloadsInFlight--;
        this.record(route, request.method, status, bytes, (this.now() - started) / 1000);
      };
      let response: Response;
      try {
        response = await handler(request);
      } catch (e) {
        finish(0);
        throw e;
      }
      status = response.status;
      // Only blob bodies stream. The rest (manifests, errors, lists) are small and written in one
      // go: counted from their Content-Length now, not through a counting stream and a second
      // Response per request (a quarter of a manifest GET's CPU on Node; issue 4).
      if (route !== "blob" || request.method === "HEAD" || response.status === 204 || response.status === 304) {
        finish(request.method === "HEAD" ? 0 : Number(response.headers.get("Content-Length") ?? 0));
        return response;
      }
      if (!response.body) {
        finish(0);
        return response;
      }
      return new Response(countBytes(response.body, finish), { status: response.status, statusText: response.statusText, headers: response.headers });
    };
  }
}

/** Passes a body through, calling `done(bytes)` once when it ends, fails or is cancelled. */
function countBytes(body: ReadableStream<Uint8Array>, done: (bytes: number) => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done: end, value } = await reader.read();
          if (end) {
            done(bytes);
            controller.close();
            return;
          }
          bytes += value.byteLength;
          controller.enqueue(value);
        } catch (e) {
          done(bytes);
          controller.error(e);
        }
      },
      cancel(reason) {
        done(bytes);
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
