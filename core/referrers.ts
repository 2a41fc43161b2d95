import { isBroken } from "./archives.ts";
import { type Context, requireDigest, requireName, type RouteRequest } from "./context.ts";
import { OciError } from "./errors.ts";
import { type Descriptor, MediaType } from "./media.ts";
import { jsonResponse } from "./respond.ts";

/**
 * GET /v2/<name>/referrers/<digest>[?artifactType=]: an image index of the manifests in the
 * name's archives whose `subject` is the digest (signatures, SBOMs, attestations). Each
 * descriptor carries its `artifactType` (the config media type when the manifest has none)
 * and the manifest's annotations. An unknown subject gives an empty index.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers
 */
export async function listReferrers(request: RouteRequest, ctx: Context): Promise<Response> {
  const name = requireName(request.params.name);
  const subject = requireDigest(request.params.digest);
  const { paths } = await ctx.lookup.candidates(name);
  if (paths.length === 0) throw new OciError("NAME_UNKNOWN", { name });
  const filter = new URL(request.url).searchParams.get("artifactType");
  const seen = new Set<string>();
  const manifests: Descriptor[] = [];
  for (const path of paths) {
    const archive = await ctx.store.open(path);
    if (!archive || isBroken(archive)) continue;
    for (const record of archive.manifests.values()) {
      if (record.json.subject?.digest !== subject || seen.has(record.digest)) continue;
      seen.add(record.digest);
      const artifactType = record.json.artifactType ?? record.json.config?.mediaType;
      if (filter !== null && artifactType !== filter) continue;
      manifests.push({
        mediaType: record.mediaType,
        digest: record.digest,
        size: record.bytes.byteLength,
        ...(artifactType !== undefined && { artifactType }),
        ...(record.json.annotations && { annotations: record.json.annotations }),
      });
    }
  }
  manifests.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  const headers: Record<string, string> = filter !== null ? { "OCI-Filters-Applied": "artifactType" } : {};
  return jsonResponse({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }, headers, MediaType.ociIndex);
}
