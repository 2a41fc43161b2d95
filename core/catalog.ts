import { type ArchiveStore, isBroken } from "./archives.ts";
import { type Context, type RouteRequest } from "./context.ts";
import type { FileInfo, FileSystem } from "./fs.ts";
import { Lookup } from "./lookup.ts";
import { jsonResponse } from "./respond.ts";
import { listArchives, MAX_SCAN_DEPTH, namesServedBy } from "./scan.ts";
import { paginate } from "./tags.ts";

const stampOf = (info: FileInfo) => `${info.id}/${info.mtimeMs}`;

/**
 * The names `/v2/_catalog` lists: every name for which some candidate file (by the lookup
 * rules) holds at least one tag. Built by walking the image folder; the walk is kept with the
 * stamps of every folder it listed and redone when one changed, and dropped at each rescan.
 */
export class Catalog {
  private cached?: { stamps: Map<string, string>; names: string[] };
  private walking?: Promise<string[]>;
  private readonly fs: FileSystem;
  private readonly store: ArchiveStore;

  constructor(fs: FileSystem, store: ArchiveStore) {
    this.fs = fs;
    this.store = store;
  }

  clear(): void {
    this.cached = undefined;
  }

  async names(): Promise<string[]> {
    if (this.cached && (await this.unchanged(this.cached.stamps))) return this.cached.names;
    this.walking ??= this.walk().finally(() => (this.walking = undefined));
    return this.walking;
  }

  private async unchanged(stamps: Map<string, string>): Promise<boolean> {
    for (const [dir, stamp] of stamps) {
      const info = await this.fs.stat(dir === "" ? "." : dir);
      if (!info || stampOf(info) !== stamp) return false;
    }
    return true;
  }

  private async walk(): Promise<string[]> {
    const stamps = new Map<string, string>();
    const root = await this.fs.stat(".");
    if (root) stamps.set("", stampOf(root));
    const { archives } = await listArchives(this.fs, MAX_SCAN_DEPTH, (dir, info) => stamps.set(dir, stampOf(info)));
    const names = new Set<string>();
    for (const path of archives) {
      const wanted = namesServedBy(path).filter((n) => !names.has(n));
      if (wanted.length === 0) continue;
      const archive = await this.store.open(path).catch(() => undefined);
      if (!archive || isBroken(archive)) continue;
      for (const name of wanted) if (Lookup.tagsIn(archive, name).size > 0) names.add(name);
    }
    const sorted = [...names].sort();
    this.cached = { stamps, names: sorted };
    return sorted;
  }
}

/**
 * GET /v2/_catalog?n=&last=: the names with at least one tag, sorted, paginated like tags/list.
 * (A distribution extension: https://distribution.github.io/distribution/spec/api/#catalog)
 */
export async function listCatalog(request: RouteRequest, ctx: Context): Promise<Response> {
  const all = await ctx.catalog.names();
  const { items, link } = paginate(all, new URL(request.url), "/v2/_catalog");
  return jsonResponse({ repositories: items }, link ? { Link: link } : {});
}
