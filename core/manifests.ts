import { type Context, isMiss, missError, requireName, requireReference, type RouteRequest } from "./context.ts";

/**
 * GET/HEAD /v2/<name>/manifests/<reference>: the stored bytes, unchanged, with their own media type.
 * HEAD carries Docker-Content-Digest and Content-Length, which containerd needs for its fast path.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
 */
export async function getManifest(request: RouteRequest, ctx: Context): Promise<Response> {
  const name = requireName(request.params.name);
  const reference = requireReference(request.params.reference);
  const hit = await ctx.lookup.manifest(name, reference);
  if (isMiss(hit)) throw await missError(ctx, name, "MANIFEST_UNKNOWN", hit, { name, reference });
  const { record } = hit;
  const headers: Record<string, string> = {
    "Content-Type": record.mediaType,
    "Content-Length": String(record.bytes.byteLength),
    "Docker-Content-Digest": record.digest,
    ETag: `"${record.digest}"`,
  };
  return new Response(request.method === "HEAD" ? null : (record.bytes as Uint8Array<ArrayBuffer>), { status: 200, headers });
}
