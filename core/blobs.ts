import { type Context, isMiss, missError, requireDigest, requireName, type RouteRequest } from "./context.ts";
import { OciError } from "./errors.ts";
import type { BlobLocation } from "./layout.ts";
import { onStreamEnd } from "./limits.ts";
import { type ByteRange, parseRange } from "./range.ts";

/**
 * GET/HEAD /v2/<name>/blobs/<digest>: a byte range of the archive (or of the blob cache),
 * streamed, never buffered. One Range gives 206; several give multipart/byteranges.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-blobs
 */
export async function getBlob(request: RouteRequest, ctx: Context): Promise<Response> {
  const name = requireName(request.params.name);
  const digest = requireDigest(request.params.digest);
  // The archive may be replaced between lookup and open: look up once more, then give up.
  for (let attempt = 0; attempt < 2; attempt++) {
    const hit = await ctx.lookup.blob(name, digest);
    if (isMiss(hit)) throw await missError(ctx, name, "BLOB_UNKNOWN", hit, { name, digest });
    // A blob whose bytes were found not to match its digest stays unknown until its archive changes.
    const bad = ctx.verifier?.badReason(hit.archive, digest);
    if (bad) throw new OciError("BLOB_UNKNOWN", { name, digest, reason: bad });
    const response = await blobResponse(request, hit.location, digest, ctx, hit.archive);
    if (response) return response;
    ctx.store.forget(hit.archive.path);
  }
  throw new OciError("UNKNOWN", { digest, reason: "the archive changed while it was being read; try again" });
}

/** What a body stream needs besides its bytes: the slot it holds and the digest check. */
interface Serving {
  ctx: Context;
  archive: { path: string };
  digest: string;
}

async function blobResponse(request: Request, location: BlobLocation, digest: string, ctx: Context, archive: { path: string }): Promise<Response | undefined> {
  const serving: Serving = { ctx, archive, digest };
  const size = location.size;
  const headers: Record<string, string> = {
    "Content-Type": "application/octet-stream",
    "Docker-Content-Digest": digest,
    "Accept-Ranges": "bytes",
    ETag: `"${digest}"`,
    "Cache-Control": "max-age=31536000",
  };
  const head = request.method === "HEAD";
  const range = parseRange(request.headers.get("Range"), size);
  if (range === "unsatisfiable") {
    throw new OciError("RANGE_INVALID", { size, range: request.headers.get("Range") }, { "Content-Range": `bytes */${size}` });
  }
  if (range === undefined) {
    headers["Content-Length"] = String(size);
    return send(location, [{ start: 0, end: size }], head, 200, headers, serving);
  }
  if ("start" in range) {
    headers["Content-Length"] = String(range.end - range.start);
    headers["Content-Range"] = `bytes ${range.start}-${range.end - 1}/${size}`;
    return send(location, [range], head, 206, headers, serving);
  }
  return multipart(location, range.ranges, head, headers, serving);
}

async function send(
  location: BlobLocation,
  ranges: ByteRange[],
  head: boolean,
  status: number,
  headers: Record<string, string>,
  serving: Serving,
): Promise<Response | undefined> {
  if (head) return new Response(null, { status, headers });
  const [{ start, end }] = ranges;
  const { ctx, archive, digest } = serving;
  const release = (await ctx.gate?.acquire()) ?? (() => {});
  let body: ReadableStream<Uint8Array> | undefined;
  try {
    body = await location.fs.stream(location.path, location.offset + start, location.offset + end, { expect: location.expect });
  } catch (err) {
    release();
    throw err;
  }
  if (!body) return release(), undefined;
  const full = start === 0 && end === location.size;
  const guarded = ctx.verifier
    ? ctx.verifier.guard(body, { archive, file: archive.path, digest, location, start, end, full, onEnd: release })
    : onStreamEnd(body, release);
  return new Response(guarded, { status, headers });
}

/** RFC 9110 §14.6: each part has its own Content-Type and Content-Range. */
async function multipart(location: BlobLocation, ranges: ByteRange[], head: boolean, headers: Record<string, string>, serving: Serving): Promise<Response | undefined> {
  const boundary = `oci-${crypto.randomUUID()}`;
  const encoder = new TextEncoder();
  const size = location.size;
  const partHead = (r: ByteRange, first: boolean) =>
    encoder.encode(`${first ? "" : "\r\n"}--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${r.start}-${r.end - 1}/${size}\r\n\r\n`);
  const tail = encoder.encode(`\r\n--${boundary}--\r\n`);
  const heads = ranges.map((r, i) => partHead(r, i === 0));
  const length = heads.reduce((n, h, i) => n + h.byteLength + ranges[i].end - ranges[i].start, tail.byteLength);
  const { "Content-Type": _, ...rest } = headers;
  const out = { ...rest, "Content-Type": `multipart/byteranges; boundary=${boundary}`, "Content-Length": String(length) };
  if (head) return new Response(null, { status: 206, headers: out });
  const release = (await serving.ctx.gate?.acquire()) ?? (() => {});
  try {
    const response = await multipartBody(location, ranges, heads, tail, out);
    if (!response?.body) return release(), undefined;
    return new Response(onStreamEnd(response.body, release), { status: response.status, headers: response.headers });
  } catch (err) {
    release();
    throw err;
  }
}

async function multipartBody(
  location: BlobLocation,
  ranges: ByteRange[],
  heads: Uint8Array[],
  tail: Uint8Array,
  out: Record<string, string>,
): Promise<Response | undefined> {
  // Open every part first so a replaced archive is detected before the status is sent.
  const streams: ReadableStream<Uint8Array>[] = [];
  for (const r of ranges) {
    let s: ReadableStream<Uint8Array> | undefined;
    try {
      s = await location.fs.stream(location.path, location.offset + r.start, location.offset + r.end, { expect: location.expect });
    } catch (err) {
      await Promise.all(streams.map((x) => x.cancel()));
      throw err;
    }
    if (!s) {
      await Promise.all(streams.map((x) => x.cancel()));
      return undefined;
    }
    streams.push(s);
  }
  let index = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (true) {
        if (!reader) {
          if (index === streams.length) {
            controller.enqueue(tail);
            controller.close();
            return;
          }
          controller.enqueue(heads[index]);
          reader = streams[index++].getReader();
          return;
        }
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          // One part failed: release the parts not started yet, then fail the body.
          await Promise.all(streams.slice(index).map((s) => s.cancel(err).catch(() => {})));
          throw err;
        }
        if (!next.done) return controller.enqueue(next.value);
        reader = undefined;
      }
    },
    async cancel(reason) {
      await Promise.all([reader?.cancel(reason), ...streams.slice(index).map((s) => s.cancel(reason))]);
    },
  });
  return new Response(body, { status: 206, headers: out });
}
