/**
 * Finds which archive serves `<name>:<reference>`, following the lookup order (relative to
 * the image folder):
 *   1. <name>/<reference>.oci   2. <name>/*.oci   3. <name>:<reference>.oci
 *   4. <name>:*.oci             5. <name>.oci
 * `*` expands in name order; names starting with `.` are skipped (partial copies).
 *
 * Found references are cached with the stamps (mtime, identity) of the two folders they were
 * found through, so a repeated request costs three `stat` calls: the two folders and the
 * archive. When a folder changed, candidates newer than the cached archive are checked and
 * one that holds the reference replaces it. Misses are cached the same way, so a 404 costs no
 * more than a hit.
 */
import { type Archive, type ArchiveStore, isBroken } from "./archives.ts";
import type { FileInfo, FileSystem } from "./fs.ts";
import { joinPath } from "./fs.ts";
import { isValidTag, looksLikeDigest } from "./grammar.ts";
import { hasRefAnnotation, type ManifestRecord, type BlobLocation } from "./layout.ts";

interface DirListing {
  stamp: string;
  names: string[];
}

interface Candidates {
  paths: string[];
  /** Folder stamps these candidates were computed from. */
  stamps: string[];
}

interface CachedHit<T> {
  stamps: string[];
  path?: string;
  info?: FileInfo;
  value?: T;
}

export interface ManifestHit {
  archive: Archive;
  record: ManifestRecord;
}

export interface BlobHit {
  archive: Archive;
  location: BlobLocation;
}

/** A miss, with the problems of broken candidate archives (for the error detail and logs). */
export interface Miss {
  problems: string[];
}

const stampOf = (info: FileInfo | undefined) => (info && info.kind === "directory" ? `${info.id}/${info.mtimeMs}` : "-");

export class Lookup {
  private readonly dirs = new Map<string, DirListing>();
  private readonly hits = new Map<string, CachedHit<unknown>>();
  private readonly fs: FileSystem;
  private readonly store: ArchiveStore;
  /** Entries kept in the reference cache at most; the oldest is dropped past it. */
  maxCached = 50_000;

  constructor(fs: FileSystem, store: ArchiveStore) {
    this.fs = fs;
    this.store = store;
  }

  /** Forget every cached listing and reference (the periodic rescan). */
  clear(): void {
    this.dirs.clear();
    this.hits.clear();
  }

  private async listing(dir: string): Promise<DirListing> {
    const stamp = stampOf(await this.fs.stat(dir === "" ? "." : dir));
    const cached = this.dirs.get(dir);
    if (cached && cached.stamp === stamp) return cached;
    const names = stamp === "-" ? [] : ((await this.fs.list(dir === "" ? "." : dir)) ?? []);
    const listing = { stamp, names: names.filter((n) => n.endsWith(".oci") && !n.startsWith(".")).sort() };
    this.dirs.set(dir, listing);
    return listing;
  }

  private static dirsOf(name: string): [string, string, string] {
    const slash = name.lastIndexOf("/");
    const parent = slash < 0 ? "" : name.slice(0, slash);
    const base = name.slice(slash + 1);
    return [name, parent, base];
  }

  private async stamps(name: string): Promise<string[]> {
    const [own, parent] = Lookup.dirsOf(name);
    const [a, b] = await Promise.all([this.fs.stat(own), this.fs.stat(parent === "" ? "." : parent)]);
    return [stampOf(a), stampOf(b)];
  }

  /** Candidate archive paths for a name (and reference), in lookup order. */
  async candidates(name: string, reference?: string): Promise<Candidates> {
    const [own, parent, base] = Lookup.dirsOf(name);
    const [a, b] = await Promise.all([this.listing(own), this.listing(parent)]);
    const paths: string[] = [];
    if (reference !== undefined && a.names.includes(`${reference}.oci`)) paths.push(joinPath(own, `${reference}.oci`));
    for (const n of a.names) paths.push(joinPath(own, n));
    if (reference !== undefined && b.names.includes(`${base}:${reference}.oci`)) paths.push(joinPath(parent, `${base}:${reference}.oci`));
    for (const n of b.names) if (n.startsWith(`${base}:`)) paths.push(joinPath(parent, n));
    if (b.names.includes(`${base}.oci`)) paths.push(joinPath(parent, `${base}.oci`));
    return { paths: [...new Set(paths)], stamps: [a.stamp, b.stamp] };
  }

  /** The tag a candidate's file name gives it (`<name>/<tag>.oci`, `<name>:<tag>.oci`), if any. */
  static fileTag(name: string, path: string): string | undefined {
    const [own, parent, base] = Lookup.dirsOf(name);
    let stem: string | undefined;
    if (path.startsWith(`${own}/`) && path.endsWith(".oci")) stem = path.slice(own.length + 1, -4);
    else {
      const prefix = joinPath(parent, `${base}:`);
      if (path.startsWith(prefix) && path.endsWith(".oci")) stem = path.slice(prefix.length, -4);
    }
    return stem !== undefined && !stem.includes("/") && isValidTag(stem) ? stem : undefined;
  }

  /** Tags an archive holds for a name, including the one its file name gives. */
  static tagsIn(archive: Archive, name: string): Map<string, string> {
    const tags = archive.tagsFor(name);
    const fileTag = Lookup.fileTag(name, archive.path);
    if (fileTag === undefined || tags.has(fileTag)) return tags;
    const [only] = archive.entries;
    if (archive.entries.length !== 1 || hasRefAnnotation(only.annotations)) return tags;
    return new Map([...tags, [fileTag, only.digest]]);
  }

  private static manifestIn(archive: Archive, name: string, reference: string): ManifestRecord | undefined {
    const digest = looksLikeDigest(reference) ? reference : Lookup.tagsIn(archive, name).get(reference);
    return digest === undefined ? undefined : archive.manifests.get(digest);
  }

  async manifest(name: string, reference: string): Promise<ManifestHit | Miss> {
    return this.find(`m\0${name}\0${reference}`, name, reference, (archive) => {
      const record = Lookup.manifestIn(archive, name, reference);
      return record && { archive, record };
    });
  }

  async blob(name: string, digest: string): Promise<BlobHit | Miss> {
    return this.find(`b\0${name}\0${digest}`, name, undefined, (archive) => {
      const location = archive.blobs.get(digest);
      return location && { archive, location };
    });
  }

  /** All tags of a name, sorted; `undefined` when no candidate file exists for the name. */
  async tags(name: string): Promise<string[] | undefined> {
    const { paths } = await this.candidates(name);
    if (paths.length === 0) return undefined;
    const tags = new Set<string>();
    for (const path of paths) {
      const archive = await this.store.open(path);
      if (archive && !isBroken(archive)) for (const tag of Lookup.tagsIn(archive, name).keys()) tags.add(tag);
    }
    return [...tags].sort();
  }

  /** Whether any candidate file exists for a name. */
  async exists(name: string): Promise<boolean> {
    return (await this.candidates(name)).paths.length > 0;
  }

  private async find<T extends { archive: Archive }>(
    key: string,
    name: string,
    reference: string | undefined,
    holds: (archive: Archive) => T | undefined,
  ): Promise<T | Miss> {
    const cached = this.hits.get(key) as CachedHit<T> | undefined;
    if (cached) {
      const stamps = await this.stamps(name);
      const foldersUnchanged = stamps.every((s, i) => s === cached.stamps[i]);
      if (cached.path === undefined) {
        if (foldersUnchanged) return { problems: [] };
      } else {
        const archive = await this.store.open(cached.path);
        const value = archive && !isBroken(archive) ? holds(archive) : undefined;
        if (value) {
          if (foldersUnchanged) return value;
          const newer = await this.newerHolder(name, reference, cached.path, archive!.info.mtimeMs, holds);
          const winner = newer ?? value;
          this.remember(key, { stamps, path: winner.archive.path, info: winner.archive.info, value: winner });
          return winner;
        }
      }
    }
    return this.search(key, name, reference, holds);
  }

  /** A candidate newer than the cached archive that also holds the reference. */
  private async newerHolder<T extends { archive: Archive }>(
    name: string,
    reference: string | undefined,
    current: string,
    mtimeMs: number,
    holds: (archive: Archive) => T | undefined,
  ): Promise<T | undefined> {
    const { paths } = await this.candidates(name, reference);
    let best: T | undefined;
    for (const path of paths) {
      if (path === current) continue;
      const info = await this.fs.stat(path);
      if (!info || info.mtimeMs <= mtimeMs || (best && info.mtimeMs <= best.archive.info.mtimeMs)) continue;
      const archive = await this.store.open(path, info);
      const value = archive && !isBroken(archive) ? holds(archive) : undefined;
      if (value) best = value;
    }
    return best;
  }

  private async search<T extends { archive: Archive }>(
    key: string,
    name: string,
    reference: string | undefined,
    holds: (archive: Archive) => T | undefined,
  ): Promise<T | Miss> {
    const { paths, stamps } = await this.candidates(name, reference);
    const problems: string[] = [];
    for (const path of paths) {
      const archive = await this.store.open(path);
      if (!archive) continue;
      if (isBroken(archive)) {
        problems.push(`${path}: ${archive.error}`);
        continue;
      }
      const value = holds(archive);
      if (value) {
        this.remember(key, { stamps, path, info: archive.info, value });
        return value;
      }
    }
    // Misses in folders with broken files are not cached: the file may be mid-copy.
    if (problems.length === 0) this.remember(key, { stamps });
    return { problems };
  }

  private remember(key: string, hit: CachedHit<unknown>): void {
    this.hits.delete(key);
    if (this.hits.size >= this.maxCached) this.hits.delete(this.hits.keys().next().value!);
    this.hits.set(key, hit);
  }
}
