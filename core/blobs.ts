import { type Context, isMiss, missError, requireDigest, requireName, type RouteRequest } from "./context.ts";
import { OciError } from "./errors.ts";
import type { BlobLocation } from "./layout.ts";
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
    const response = await blobResponse(request, hit.location, digest);
    if (response) return response;
    ctx.store.forget(hit.archive.path);
  }
  throw new OciError("UNKNOWN", { digest, reason: "the archive changed while it was being read; try again" });
}

async function blobResponse(request: Request, location: BlobLocation, digest: string): Promise<Response | undefined> {
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
    return send(location, [{ start: 0, end: size }], head, 200, headers);
  }
  if ("start" in range) {
    headers["Content-Length"] = String(range.end - range.start);
    headers["Content-Range"] = `bytes ${range.start}-${range.end - 1}/${size}`;
    return send(location, [range], head, 206, headers);
  }
  return multipart(location, range.ranges, head, headers);
}

async function send(location: BlobLocation, ranges: ByteRange[], head: boolean, status: number, headers: Record<string, string>): Promise<Response | undefined> {
  if (head) return new Response(null, { status, headers });
  const [{ start, end }] = ranges;
  const body = await location.fs.stream(location.path, location.offset + start, location.offset + end, { expect: location.expect });
  if (!body) return undefined;
  return new Response(body, { status, headers });
}

/** RFC 9110 §14.6: each part has its own Content-Type and Content-Range. */
async function multipart(location: BlobLocation, ranges: ByteRange[], head: boolean, headers: Record<string, string>): Promise<Response | undefined> {
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
  // Open every part first so a replaced archive is detected before the status is sent.
  const streams: ReadableStream<Uint8Array>[] = [];
  for (const r of ranges) {
    const s = await location.fs.stream(location.path, location.offset + r.start, location.offset + r.end, { expect: location.expect });
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
        const { done, value } = await reader.read();
        if (!done) return controller.enqueue(value);
        reader = undefined;
      }
    },
    async cancel(reason) {
      await Promise.all([reader?.cancel(reason), ...streams.slice(index).map((s) => s.cancel(reason))]);
    },
  });
  return new Response(body, { status: 206, headers: out });
}
