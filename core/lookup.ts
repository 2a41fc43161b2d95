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
 *
 * `within(root)` gives a view for containerd's `?ns=<registry>` (`--ns-dirs`): the candidates
 * under `<root>/` come first, then the usual ones. Views share the caches.
 */
import { type Archive, type ArchiveStore, isBroken } from "./archives.ts";
import type { FileInfo, FileSystem } from "./fs.ts";
import { joinPath } from "./fs.ts";
import { isValidTag, looksLikeDigest } from "./grammar.ts";
import { hasRefAnnotation, type ManifestRecord, type BlobLocation } from "./layout.ts";

interface DirListing {
  stamp: string;
  /** `.oci` entries, sorted. */
  names: string[];
  /** Other visible entries: possible unpacked layout folders. */
  others: Set<string>;
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
  /** For a miss: whether the name had candidate files (unchanged while the stamps are). */
  nameExists?: boolean;
  /** For a miss: the Miss `manifestNow` answers, one object while the entry lasts. */
  miss?: Miss;
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
  /**
   * Whether any candidate file exists for the name, as the search found (and the cached miss
   * remembers: the candidates depend only on the two folders its stamps cover). Lets a 404
   * tell NAME_UNKNOWN from MANIFEST_UNKNOWN without listing the folders again.
   */
  nameExists?: boolean;
}

const stampOf = (info: FileInfo | undefined) => (info && info.kind === "directory" ? `${info.id}/${info.mtimeMs}` : "-");

const sameStamps = (a: string[], b: string[]) => a.length === b.length && a.every((s, i) => s === b[i]);

/** Caches shared by a Lookup and its `within` views. */
interface LookupState {
  dirs: Map<string, DirListing>;
  hits: Map<string, CachedHit<unknown>>;
  /** `foldersOf` per root and name. */
  folders: Map<string, string[]>;
  /** Requests answered from the reference cache, and ones that searched the candidates. */
  stats: { hits: number; misses: number };
}

export class Lookup {
  private readonly dirs: Map<string, DirListing>;
  private readonly hits: Map<string, CachedHit<unknown>>;
  private readonly state: LookupState;
  private readonly fs: FileSystem;
  private readonly store: ArchiveStore;
  /** A folder (`<registry>` of `?ns=`) searched before the usual candidates; "" for none. */
  readonly root: string;
  /** Entries kept in the reference cache at most; the oldest is dropped past it. */
  maxCached = 50_000;

  constructor(fs: FileSystem, store: ArchiveStore, view?: { state: LookupState; root: string }) {
    this.fs = fs;
    this.store = store;
    this.state = view?.state ?? { dirs: new Map(), hits: new Map(), folders: new Map(), stats: { hits: 0, misses: 0 } };
    this.dirs = this.state.dirs;
    this.hits = this.state.hits;
    this.root = view?.root ?? "";
  }

  /** This lookup with the candidates under `<root>/` first (`root` is one folder name, checked by the caller). */
  within(root: string): Lookup {
    const view = new Lookup(this.fs, this.store, { state: this.state, root });
    view.maxCached = this.maxCached;
    return view;
  }

  /** Cache hits and misses since start. */
  get stats(): { hits: number; misses: number } {
    return this.state.stats;
  }

  private get roots(): string[] {
    return this.root === "" ? [""] : [this.root, ""];
  }

  /** Forget every cached listing and reference (the periodic rescan). */
  clear(): void {
    this.dirs.clear();
    this.hits.clear();
    this.state.folders.clear();
  }

  private async listing(dir: string): Promise<DirListing> {
    const stamp = stampOf(await this.fs.stat(dir === "" ? "." : dir));
    const cached = this.dirs.get(dir);
    if (cached && cached.stamp === stamp) return cached;
    const names = stamp === "-" ? [] : ((await this.fs.list(dir === "" ? "." : dir)) ?? []);
    const visible = names.filter((n) => !n.startsWith("."));
    const listing = { stamp, names: visible.filter((n) => n.endsWith(".oci")).sort(), others: new Set(visible.filter((n) => !n.endsWith(".oci"))) };
    this.dirs.set(dir, listing);
    return listing;
  }

  /**
   * Whether a folder is an unpacked layout now. Not cached with the listing: a folder is often
   * created first and filled later (skopeo copy ... oci:DIR), which its parent's mtime misses.
   */
  private async isLayout(path: string): Promise<boolean> {
    return (await this.fs.stat(joinPath(path, "index.json")))?.kind === "file";
  }

  /** The name's own folder, its parent folder (both under `root`) and its last component. */
  private static dirsOf(name: string, root = ""): [string, string, string] {
    const slash = name.lastIndexOf("/");
    const parent = slash < 0 ? "" : name.slice(0, slash);
    const base = name.slice(slash + 1);
    return [joinPath(root, name), joinPath(root, parent), base];
  }

  /**
   * The stamps of the folders covering a name's candidates, pairwise [own, parent] per root.
   * Given the previous stamps, an own folder that was absent is not stat'ed again while its
   * parent is unchanged: creating it would have changed the parent (one stat fewer per request
   * for the usual `<name>.oci` layout).
   */
  private async stamps(name: string, previous?: string[]): Promise<string[]> {
    const folders = this.foldersOf(name);
    const stamps: string[] = [];
    for (let i = 0; i < folders.length; i += 2) {
      const parent = stampOf(await this.fs.stat(folders[i + 1]));
      const own = previous?.[i] === "-" && previous[i + 1] === parent ? "-" : stampOf(await this.fs.stat(folders[i]));
      stamps.push(own, parent);
    }
    return stamps;
  }

  /** `stamps` without a promise, when the file system answers `statNow`; `null` otherwise. */
  private stampsNow(name: string, previous: string[]): string[] | null {
    const statNow = this.fs.statNow;
    if (!statNow) return null;
    const folders = this.foldersOf(name);
    const stamps: string[] = [];
    for (let i = 0; i < folders.length; i += 2) {
      const parentInfo = statNow.call(this.fs, folders[i + 1]);
      if (parentInfo === null) return null;
      const parent = stampOf(parentInfo);
      let own = "-";
      if (previous[i] !== "-" || previous[i + 1] !== parent) {
        const ownInfo = statNow.call(this.fs, folders[i]);
        if (ownInfo === null) return null;
        own = stampOf(ownInfo);
      }
      stamps.push(own, parent);
    }
    return stamps;
  }

  /** The folders whose stamps cover a name's candidates (own and parent, per root), remembered per name. */
  private foldersOf(name: string): string[] {
    const key = `${this.root}\0${name}`;
    let folders = this.state.folders.get(key);
    if (!folders) {
      folders = this.roots.flatMap((root) => {
        const [own, parent] = Lookup.dirsOf(name, root);
        return [own, parent === "" ? "." : parent];
      });
      if (this.state.folders.size >= this.maxCached) this.state.folders.clear();
      this.state.folders.set(key, folders);
    }
    return folders;
  }

  /** Candidate archive paths for a name (and reference), in lookup order. */
  async candidates(name: string, reference?: string): Promise<Candidates> {
    const paths: string[] = [];
    const stamps: string[] = [];
    for (const root of this.roots) {
      const [own, parent, base] = Lookup.dirsOf(name, root);
      const [a, b] = await Promise.all([this.listing(own), this.listing(parent)]);
      if (reference !== undefined && a.names.includes(`${reference}.oci`)) paths.push(joinPath(own, `${reference}.oci`));
      // An unpacked layout folder stands beside its .oci counterpart (the store skips other folders).
      if (reference !== undefined && a.others.has(reference) && (await this.isLayout(joinPath(own, reference)))) paths.push(joinPath(own, reference));
      for (const n of a.names) paths.push(joinPath(own, n));
      for (const n of [...a.others].sort()) if (await this.isLayout(joinPath(own, n))) paths.push(joinPath(own, n));
      if (reference !== undefined && b.names.includes(`${base}:${reference}.oci`)) paths.push(joinPath(parent, `${base}:${reference}.oci`));
      for (const n of b.names) if (n.startsWith(`${base}:`)) paths.push(joinPath(parent, n));
      if (b.names.includes(`${base}.oci`)) paths.push(joinPath(parent, `${base}.oci`));
      if (b.others.has(base) && (await this.isLayout(own))) paths.push(own);
      stamps.push(a.stamp, b.stamp);
    }
    return { paths: [...new Set(paths)], stamps };
  }

  /**
   * The tag a candidate's file name gives it (`<name>/<tag>.oci`, `<name>:<tag>.oci`), if any;
   * with `root`, also for a candidate under `<root>/`.
   */
  static fileTag(name: string, path: string, root = ""): string | undefined {
    const [own, parent, base] = Lookup.dirsOf(name);
    let stem: string | undefined;
    if (path.startsWith(`${own}/`)) stem = path.endsWith(".oci") ? path.slice(own.length + 1, -4) : path.slice(own.length + 1);
    else {
      const prefix = joinPath(parent, `${base}:`);
      if (path.startsWith(prefix) && path.endsWith(".oci")) stem = path.slice(prefix.length, -4);
    }
    if (stem !== undefined && !stem.includes("/") && isValidTag(stem)) return stem;
    return root !== "" && path.startsWith(`${root}/`) ? Lookup.fileTag(name, path.slice(root.length + 1)) : undefined;
  }

  /** Tags an archive holds for a name, including the one its file name gives (see `fileTag` for `root`). */
  static tagsIn(archive: Archive, name: string, root = ""): Map<string, string> {
    const tags = archive.tagsFor(name);
    const fileTag = Lookup.fileTag(name, archive.path, root);
    if (fileTag === undefined || tags.has(fileTag)) return tags;
    const [only] = archive.entries;
    if (archive.entries.length !== 1 || hasRefAnnotation(only.annotations)) return tags;
    return new Map([...tags, [fileTag, only.digest]]);
  }

  private static manifestIn(archive: Archive, name: string, reference: string, root = ""): ManifestRecord | undefined {
    const digest = looksLikeDigest(reference) ? reference : Lookup.tagsIn(archive, name, root).get(reference);
    return digest === undefined ? undefined : archive.manifests.get(digest);
  }

  async manifest(name: string, reference: string): Promise<ManifestHit | Miss> {
    return this.find(Lookup.manifestKey(this.root, name, reference), name, reference, (archive) => {
      const record = Lookup.manifestIn(archive, name, reference, this.root);
      return record && { archive, record };
    });
  }

  /**
   * `manifest` without a promise when the answer is cached and nothing it depends on changed
   * (the same folder stamps and the same indexed archive, by `statNow`); `null` otherwise, and
   * the caller awaits `manifest`. What the cached request of a busy registry takes.
   */
  manifestNow(name: string, reference: string): ManifestHit | Miss | null {
    const cached = this.hits.get(Lookup.manifestKey(this.root, name, reference)) as CachedHit<ManifestHit> | undefined;
    if (!cached) return null;
    const stamps = this.stampsNow(name, cached.stamps);
    if (stamps === null || !sameStamps(stamps, cached.stamps)) return null;
    if (cached.path === undefined) {
      this.state.stats.hits++;
      // The same object each time: the caller may remember its answer to it (see manifests.ts).
      return (cached.miss ??= { problems: [], nameExists: cached.nameExists });
    }
    if (!cached.value || this.store.openNow(cached.path) !== cached.value.archive) return null;
    this.state.stats.hits++;
    return cached.value;
  }

  private static manifestKey(root: string, name: string, reference: string): string {
    return `m\0${root}\0${name}\0${reference}`;
  }

  async blob(name: string, digest: string): Promise<BlobHit | Miss> {
    return this.find(`b\0${this.root}\0${name}\0${digest}`, name, undefined, (archive) => {
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
      if (archive && !isBroken(archive)) for (const tag of Lookup.tagsIn(archive, name, this.root).keys()) tags.add(tag);
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
      const stamps = await this.stamps(name, cached.stamps);
      const foldersUnchanged = sameStamps(stamps, cached.stamps);
      if (cached.path === undefined) {
        if (foldersUnchanged) {
          this.state.stats.hits++;
          return { problems: [], nameExists: cached.nameExists };
        }
      } else {
        const archive = await this.store.open(cached.path);
        // The same archive object is the same unchanged file: what it held, it still holds.
        const value = archive && archive === cached.value?.archive ? cached.value : archive && !isBroken(archive) ? holds(archive) : undefined;
        if (value) {
          this.state.stats.hits++;
          if (foldersUnchanged) {
            // The archive was indexed again (changed in place): remember the new one, which `manifestNow` compares with.
            if (value !== cached.value) Object.assign(cached, { info: archive!.info, value });
            return value;
          }
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
    this.state.stats.misses++;
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
    // Candidates for a reference are candidates for the name, and the name has some only if
    // some exist for any reference (see candidates()).
    const nameExists = paths.length > 0;
    // Misses in folders with broken files are not cached: the file may be mid-copy.
    if (problems.length === 0) this.remember(key, { stamps, nameExists });
    return { problems, nameExists };
  }

  private remember(key: string, hit: CachedHit<unknown>): void {
    this.hits.delete(key);
    if (this.hits.size >= this.maxCached) this.hits.delete(this.hits.keys().next().value!);
    this.hits.set(key, hit);
  }
}
