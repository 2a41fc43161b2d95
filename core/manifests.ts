import { type Context, isMiss, missError, missErrorOf, requireName, requireReference, type RouteRequest } from "./context.ts";
import { errorAnswer, OciError } from "./errors.ts";
import { isIndexMediaType, MediaType } from "./media.ts";
import type { ManifestRecord } from "./layout.ts";
import type { Archive } from "./archives.ts";
import type { ManifestHit, Miss } from "./lookup.ts";
import { type Answer, toResponse } from "./answer.ts";

/**
 * GET/HEAD /v2/<name>/manifests/<reference>: the stored bytes, unchanged, with their own media type.
 * HEAD carries Docker-Content-Digest and Content-Length, which containerd needs for its fast path.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
 */
export async function getManifest(request: RouteRequest, ctx: Context): Promise<Response> {
  const name = requireName(request.params.name);
  const reference = requireReference(request.params.reference);
  return toResponse(await manifestAnswer(ctx, request.method, name, reference, (h) => request.headers.get(h)));
}

/**
 * The manifest route as plain data, for a name and reference already checked against the
 * grammar: `getManifest` for `fetch`, and `Registry.quick` for adapters that write answers directly.
 */
export async function manifestAnswer(
  ctx: Context,
  method: string,
  name: string,
  reference: string,
  header: (name: string) => string | null | undefined,
): Promise<Answer> {
  const hit = await ctx.lookup.manifest(name, reference);
  // Returned, not thrown: a 404 should cost no more than a hit, and an exception through the
  // async frames above costs more than the answer itself.
  if (isMiss(hit)) return errorAnswer(await missError(ctx, name, "MANIFEST_UNKNOWN", hit, { name, reference }), method);
  return hitAnswer(hit, method, reference, header);
}

/**
 * `manifestAnswer` without a promise, when the lookup's answer is cached and current
 * (`Lookup.manifestNow`); `null` otherwise. Throws an OciError as `manifestAnswer` would.
 */
export function manifestAnswerNow(
  ctx: Context,
  method: string,
  name: string,
  reference: string,
  header: (name: string) => string | null | undefined,
): Answer | null {
  const hit = ctx.lookup.manifestNow(name, reference);
  if (hit === null) return null;
  if (!isMiss(hit)) return hitAnswer(hit, method, reference, header);
  if (hit.nameExists === undefined) return null;
  // A cached miss is one object per name and reference while it lasts: its 404 is built once
  // (an error object and its JSON cost twice a hit's answer, and a 404 must cost no more).
  let answers = missAnswers.get(hit);
  if (!answers) missAnswers.set(hit, (answers = new Map()));
  let answer = answers.get(method);
  if (!answer) answers.set(method, (answer = errorAnswer(missErrorOf(hit.nameExists, name, "MANIFEST_UNKNOWN", hit, { name, reference }), method)));
  return answer;
}

/** 404 answers per cached miss and method. Shared between requests: no one may change them (beyond `finish` in registry.ts setting its header again). */
const missAnswers = new WeakMap<Miss, Map<string, Answer>>();

function hitAnswer(hit: ManifestHit, method: string, reference: string, header: (name: string) => string | null | undefined): Answer {
  const record = negotiate(hit.archive, hit.record, acceptedTypes(header("accept")), reference !== hit.record.digest);
  const etag = `"${record.digest}"`;
  const ifNoneMatch = header("if-none-match");
  if (ifNoneMatch != null && ifNoneMatch.split(",").some((v) => v.trim() === etag || v.trim() === record.digest)) {
    return { status: 304, headers: { "Docker-Content-Digest": record.digest, ETag: etag }, body: null };
  }
  const headers: Record<string, string> = {
    "Content-Type": record.mediaType,
    "Content-Length": String(record.bytes.byteLength),
    "Docker-Content-Digest": record.digest,
    ETag: etag,
  };
  return { status: 200, headers, body: method === "HEAD" ? null : (asciiText(record.bytes) ?? record.bytes) };
}

/**
 * A manifest's bytes as text when they are all ASCII (as good as every manifest), else `null`;
 * computed once per manifest. Same bytes on the wire either way; given text, Node writes the
 * status line, headers and body as one string in one `write`, where bytes take a gather write
 * (about 3% of a manifest request's CPU in an A/B with a bare server).
 */
function asciiText(bytes: Uint8Array): string | null {
  let text = asciiTexts.get(bytes);
  if (text === undefined) {
    text = bytes.every((b) => b < 0x80) ? asciiDecoder.decode(bytes) : null;
    asciiTexts.set(bytes, text);
  }
  return text;
}
const asciiTexts = new WeakMap<Uint8Array, string | null>();
const asciiDecoder = new TextDecoder();

/**
 * The media types an Accept header lists (parameters and q-values ignored, as distribution
 * does). Clients send the same few headers again and again: the parsed sets are remembered
 * (a bounded map, emptied when full), as parsing was a twentieth of a manifest GET's CPU.
 */
const acceptCache = new Map<string, ReadonlySet<string>>();
const ACCEPT_CACHE_MAX = 256;

let lastAccept: { key: string; types: ReadonlySet<string> } | undefined;

function acceptedTypes(accept: string | null | undefined): ReadonlySet<string> {
  const key = accept ?? "";
  // A client repeats one header: comparing it with the last is cheaper than hashing it for the map.
  if (lastAccept?.key === key) return lastAccept.types;
  const known = acceptCache.get(key);
  if (known) {
    lastAccept = { key, types: known };
    return known;
  }
  const types = new Set<string>();
  for (const part of key.split(",")) {
    const type = part.split(";")[0].trim().toLowerCase();
    if (type) types.add(type);
  }
  if (acceptCache.size >= ACCEPT_CACHE_MAX) acceptCache.clear();
  acceptCache.set(key, types);
  lastAccept = { key, types };
  return types;
}

/**
 * Accept negotiation as CNCF distribution does it (registry/handlers/manifests.go):
 * - an OCI manifest or OCI index the client does not accept: 404 MANIFEST_UNKNOWN;
 * - a Docker manifest list fetched by tag by a client that does not accept lists: the
 *   linux/amd64 image in it instead, if the client accepts Docker schema 2 (else 400 MANIFEST_INVALID);
 * - Docker schema 2 image manifests are served whatever the Accept header says (distribution
 *   would rewrite them to signed schema 1, which no current client needs).
 * `*\/*` does not count as accepting a manifest type, as in distribution.
 */
function negotiate(archive: Archive, record: ManifestRecord, accepted: ReadonlySet<string>, byTag: boolean): ManifestRecord {
  const type = record.mediaType;
  if (type === MediaType.ociManifest && !accepted.has(type)) {
    throw new OciError("MANIFEST_UNKNOWN", { digest: record.digest, reason: "OCI manifest found, but accept header does not support OCI manifests" });
  }
  if (type === MediaType.ociIndex && !accepted.has(type)) {
    throw new OciError("MANIFEST_UNKNOWN", { digest: record.digest, reason: "OCI index found, but accept header does not support OCI indexes" });
  }
  if (byTag && type === MediaType.dockerManifestList && !accepted.has(type)) {
    const child = (record.json.manifests ?? []).find((d) => d.platform?.os === "linux" && d.platform?.architecture === "amd64");
    const image = child && archive.manifests.get(child.digest);
    if (!image || isIndexMediaType(image.mediaType)) throw new OciError("MANIFEST_UNKNOWN", { digest: record.digest, reason: "manifest list has no linux/amd64 image" });
    if (image.mediaType === MediaType.dockerManifest && !accepted.has(MediaType.dockerManifest)) {
      throw new OciError("MANIFEST_INVALID", { digest: image.digest, reason: "Schema 2 manifest not supported by client" });
    }
    return image;
  }
  return record;
}
