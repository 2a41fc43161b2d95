/**
 * A response as plain data (status, headers, bytes): what the manifest route computes before
 * any Web `Response` exists. `fetch` turns it into a Response; `Registry.quick` hands it to
 * an adapter that can write it to its socket directly (adapters/node/server.ts), which spares
 * a manifest request the Web Request and Response objects (most of its cost; BENCHMARKS.md).
 */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  /** `null` for HEAD, 304 and other empty answers. */
  body: Uint8Array | string | null;
}

/**
 * The request an adapter sees before it builds a Web Request: the method, the request target
 * as received (path and query, not normalised) and a header reader (lowercase names; repeated
 * headers joined with ", " as `Headers.get` joins them).
 */
export interface PlainRequest {
  method: string;
  target: string;
  /** Called as a plain function (not as a method of the request). */
  header: (name: string) => string | null | undefined;
}

export function toResponse(answer: Answer): Response {
  return new Response(answer.body as BodyInit | null, { status: answer.status, headers: answer.headers });
}
