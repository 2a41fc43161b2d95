import { ACCEPT_MANIFESTS } from "./oci-layout.ts";

// Send the same request to two registries and list every difference that matters to a client:
// status, Content-Type, Docker-Content-Digest, Content-Length, Content-Range, body bytes, and the
// error codes of an error body.
export interface Probe {
  title: string;
  method: "GET" | "HEAD";
  path: string;
  headers?: Record<string, string>;
  /**
   * "full" (default): everything above. "status": the status only (used where distribution's
   * answer is a router miss or a known bug). "json": like full, but the body is compared as
   * parsed JSON and Link headers as parsed URLs. "tags": like json, with the `tags` arrays
   * sorted (distribution 2.8 lists tags in storage order, the spec says lexical).
   */
  compare?: "full" | "status" | "json" | "tags";
  /**
   * A documented divergence: instead of comparing, check our answer alone: `status`, the error
   * `codes`, the parsed JSON `body`, the `link` (Link header, null for none).
   */
  ours?: { status: number | number[]; codes?: string[]; body?: unknown; link?: string | null; headers?: Record<string, string | null>; why: string };
}

export interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
  /** Set when the connection broke while reading the body (distribution's 416 announces the
   * blob's Content-Length and then sends a short text). */
  bodyError?: string;
}

export async function send(base: string, probe: Probe): Promise<Answer> {
  const response = await fetch(base + probe.path, { method: probe.method, headers: probe.headers, redirect: "manual" });
  try {
    return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
  } catch (error) {
    const cause = (error as Error).cause as Error | undefined;
    return { status: response.status, headers: response.headers, body: Buffer.alloc(0), bodyError: `${(error as Error).message}${cause ? ` (${cause.message})` : ""}` };
  }
}

const ALL_MANIFESTS_ACCEPT = ACCEPT_MANIFESTS;

const essence = (contentType: string | null) => contentType?.split(";")[0]!.trim().toLowerCase() ?? null;

export function errorCodes(answer: Answer): string[] | undefined {
  if (essence(answer.headers.get("content-type")) !== "application/json" || answer.body.length === 0) return undefined;
  try {
    const parsed = JSON.parse(answer.body.toString("utf8")) as { errors?: { code?: string }[] };
    return parsed.errors?.map((e) => e.code ?? "?");
  } catch {
    return undefined;
  }
}

function parseJson(answer: Answer): unknown {
  try {
    return JSON.parse(answer.body.toString("utf8")) as unknown;
  } catch {
    return answer.body.toString("utf8");
  }
}

function parseLink(link: string | null): string | null {
  if (!link) return link;
  const match = /<([^>]*)>\s*;\s*rel="?next"?/.exec(link);
  if (!match) return link;
  const url = new URL(match[1]!, "http://x");
  const params = [...url.searchParams.entries()].sort(([a], [b]) => a.localeCompare(b));
  return `${url.pathname}?${params.map(([k, v]) => `${k}=${v}`).join("&")}; rel=next`;
}

/** `GET /v2/x/manifests/v1 [Accept: ...] [Range: ...]`; "no Accept" for manifest requests without one. */
export function probeLabel(probe: Probe): string {
  const headers = Object.entries(probe.headers ?? {})
    .map(([name, value]) => (name.toLowerCase() === "accept" && value === ALL_MANIFESTS_ACCEPT ? "Accept: (all manifest types)" : `${name}: ${value}`))
    .join(", ");
  const noAccept = /\/manifests\//.test(probe.path) && !probe.headers?.Accept ? " (no Accept)" : "";
  return `${probe.method} ${probe.path}${headers ? ` [${headers}]` : ""}${noAccept}`;
}

/** Differences between `ours` and `reference` for one probe, as readable lines (empty when equal). */
export function differences(probe: Probe, ours: Answer, reference: Answer): string[] {
  const diffs: string[] = [];
  const label = probeLabel(probe);
  const differ = (what: string, a: unknown, b: unknown) => {
    if (JSON.stringify(a) !== JSON.stringify(b)) diffs.push(`${label}: ${what}: ours ${JSON.stringify(a)}, distribution ${JSON.stringify(b)}`);
  };

  if (ours.bodyError) diffs.push(`${label}: our body could not be read: ${ours.bodyError}`);
  if (probe.ours) {
    const statuses = Array.isArray(probe.ours.status) ? probe.ours.status : [probe.ours.status];
    if (!statuses.includes(ours.status)) diffs.push(`${label}: status ${ours.status}, expected ${statuses.join(" or ")} (${probe.ours.why})`);
    const expectOurs = (what: string, actual: unknown, wanted: unknown) => {
      if (JSON.stringify(actual) !== JSON.stringify(wanted)) diffs.push(`${label}: ${what}: ours ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)} (${probe.ours!.why})`);
    };
    if (probe.ours.codes && probe.method === "GET") expectOurs("error codes", errorCodes(ours), probe.ours.codes);
    if (probe.ours.body !== undefined) expectOurs("body", parseJson(ours), probe.ours.body);
    for (const [name, value] of Object.entries(probe.ours.headers ?? {})) expectOurs(name, ours.headers.get(name), value);
    if (probe.ours.link !== undefined) expectOurs("Link", parseLink(ours.headers.get("link")), parseLink(probe.ours.link));
    return diffs;
  }

  differ("status", ours.status, reference.status);
  if (probe.compare === "status" || ours.status !== reference.status) return diffs;

  const h = (answer: Answer, name: string) => answer.headers.get(name);
  if (ours.status >= 200 && ours.status < 300) {
    if (probe.compare === "json" || probe.compare === "tags") {
      differ("Content-Type", essence(h(ours, "content-type")), essence(h(reference, "content-type")));
      differ("Link", parseLink(h(ours, "link")), parseLink(h(reference, "link")));
      if (probe.method === "GET") {
        const parse = (a: Answer) => {
          const value = parseJson(a) as { tags?: string[] };
          if (probe.compare === "tags" && Array.isArray(value?.tags)) return { ...value, tags: [...value.tags].sort() };
          return value;
        };
        differ("body", parse(ours), parse(reference));
      }
      return diffs;
    }
    for (const name of ["content-type", "docker-content-digest", "content-length", "content-range", "accept-ranges"]) differ(name, h(ours, name), h(reference, name));
    if (probe.method === "GET" && !ours.body.equals(reference.body)) {
      diffs.push(`${label}: body differs (ours ${ours.body.length} bytes, distribution ${reference.body.length} bytes)`);
    }
    if (probe.method === "HEAD") differ("HEAD body length", ours.body.length, 0);
    return diffs;
  }
  if (ours.status === 416) {
    differ("Content-Range", h(ours, "content-range"), h(reference, "content-range"));
    return diffs;
  }
  // An error: distribution's JSON error bodies carry codes; its router misses are text/plain.
  const referenceCodes = errorCodes(reference);
  if (probe.method === "GET" && referenceCodes) {
    differ("Content-Type", essence(h(ours, "content-type")), essence(h(reference, "content-type")));
    differ("error codes", errorCodes(ours), referenceCodes);
  }
  return diffs;
}

/** Runs every probe against both registries; returns all differences. */
export async function compareRegistries(oursBase: string, referenceBase: string, probes: readonly Probe[]): Promise<string[]> {
  const diffs: string[] = [];
  for (const probe of probes) {
    const label = probeLabel(probe);
    const attempt = (base: string, who: string) =>
      send(base, probe).catch((error: Error) => {
        diffs.push(`${label}: ${who} request failed: ${error.message}${error.cause ? ` (${String((error.cause as Error).message ?? error.cause)})` : ""}`);
        return undefined;
      });
    const ours = await attempt(oursBase, "our");
    const reference = await attempt(referenceBase, "distribution");
    if (ours && reference) diffs.push(...differences(probe, ours, reference));
  }
  return diffs;
}
