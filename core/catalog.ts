import { type ArchiveStore, isBroken } from "./archives.ts";
import { type Context, type RouteRequest } from "./context.ts";
import type { FileSystem } from "./fs.ts";
import { joinPath } from "./fs.ts";
import { isValidName } from "./grammar.ts";
import { Lookup } from "./lookup.ts";
import { jsonResponse } from "./respond.ts";
import { paginate } from "./tags.ts";

/** Folders deeper than this are not walked. */
const MAX_DEPTH = 16;

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
      if (!info || `${info.id}/${info.mtimeMs}` !== stamp) return false;
    }
    return true;
  }

  private async walk(): Promise<string[]> {
    const stamps = new Map<string, string>();
    const names = new Set<string>();
    const consider = async (path: string, candidateNames: string[]) => {
      const wanted = candidateNames.filter((n) => n !== "" && isValidName(n) && !names.has(n));
      if (wanted.length === 0) return;
      const archive = await this.store.open(path).catch(() => undefined);
      if (!archive || isBroken(archive)) return;
      for (const name of wanted) if (Lookup.tagsIn(archive, name).size > 0) names.add(name);
    };
    const visit = async (dir: string, depth: number) => {
      const info = await this.fs.stat(dir === "" ? "." : dir);
      if (!info || info.kind !== "directory") return;
      stamps.set(dir, `${info.id}/${info.mtimeMs}`);
      const entries = ((await this.fs.list(dir === "" ? "." : dir)) ?? []).filter((n) => !n.startsWith(".")).sort();
      for (const entry of entries) {
        const path = joinPath(dir, entry);
        if (entry.endsWith(".oci")) {
          const stem = entry.slice(0, -4);
          const colon = stem.indexOf(":");
          // <dir>/<x>.oci serves <dir> (as <name>/*.oci) and <dir>/<x> (as <name>.oci);
          // <dir>/<base>:<tag>.oci serves <dir>/<base> (as <name>:*.oci).
          await consider(path, colon >= 0 ? [joinPath(dir, stem.slice(0, colon))] : [dir, joinPath(dir, stem)]);
        } else if (depth < MAX_DEPTH) {
          const child = await this.fs.stat(path);
          if (child?.kind !== "directory") continue;
          if (await this.fs.stat(joinPath(path, "index.json"))) await consider(path, [dir, path]);
          await visit(path, depth + 1);
        }
      }
    };
    await visit("", 0);
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
