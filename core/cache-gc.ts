/**
 * The blob cache for gzip-compressed archives (OCI layouts and docker saves) is
 * content-addressed (`blobs/<alg>/<encoded>`), so layers shared between archives are stored
 * once. At each rescan, cached blobs that no current archive references are removed.
 */
import type { Archive } from "./archives.ts";
import { blobDigestOfPath } from "./archives.ts";
import type { WritableFileSystem } from "./fs.ts";
import type { Logger } from "./log.ts";

export async function collectGarbage(cache: WritableFileSystem, current: Archive[], logger: Logger): Promise<number> {
  const keep = new Set<string>();
  for (const archive of current) {
    if (archive.format !== "tar+gzip" && archive.format !== "docker-save+gzip") continue;
    for (const location of archive.blobs.values()) keep.add(location.path);
  }
  let removed = 0;
  for (const algorithm of (await cache.list("blobs")) ?? []) {
    for (const encoded of (await cache.list(`blobs/${algorithm}`)) ?? []) {
      const path = `blobs/${algorithm}/${encoded}`;
      if (!blobDigestOfPath(path) || keep.has(path)) continue;
      await cache.remove(path);
      removed++;
    }
  }
  if (removed) logger.info("cache blobs removed", { removed });
  return removed;
}
