/**
 * The whole image folder at once: every archive in it, and the repository names the lookup
 * rules (see lookup.ts) let each one serve. Used for the first scan at start (so /readyz can
 * wait for it and the first pulls find archives already indexed) and by the folder checker.
 */
import type { ArchiveStore } from "./archives.ts";
import { isValidName } from "./grammar.ts";
import type { FileInfo, FileSystem } from "./fs.ts";
import { joinPath } from "./fs.ts";
import type { Logger } from "./log.ts";

export interface FolderListing {
  /**
   * Relative paths of every `.oci` file and unpacked layout folder, sorted. Names starting
   * with `.` are skipped.
   */
  archives: string[];
  /** Folders that could not be read, or were too deep. */
  problems: string[];
}

export const MAX_SCAN_DEPTH = 16;

/**
 * Walks the folder (at most `maxDepth` levels, so a symlink loop ends). `onFolder` sees every
 * sub-folder walked into, with its stat (the catalog keeps them to know when to walk again).
 */
export async function listArchives(fs: FileSystem, maxDepth = MAX_SCAN_DEPTH, onFolder?: (path: string, info: FileInfo) => void): Promise<FolderListing> {
  const archives: string[] = [];
  const problems: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let names: string[] | undefined;
    try {
      names = await fs.list(dir === "" ? "." : dir);
    } catch (e) {
      problems.push(`${dir || "."}: cannot list: ${(e as Error).message}`);
      return;
    }
    if (names === undefined) {
      if (dir === "") problems.push(".: the folder does not exist");
      return;
    }
    for (const name of names.sort()) {
      if (name.startsWith(".")) continue;
      const path = joinPath(dir, name);
      let info;
      try {
        info = await fs.stat(path);
      } catch (e) {
        problems.push(`${path}: cannot stat: ${(e as Error).message}`);
        continue;
      }
      if (!info) continue;
      if (info.kind === "directory") {
        // An unpacked image layout (a folder with index.json) is served like an archive.
        const index = await fs.stat(joinPath(path, "index.json")).catch(() => undefined);
        if (index?.kind === "file") archives.push(path);
        else if (depth >= maxDepth) problems.push(`${path}: deeper than ${maxDepth} folders, not scanned`);
        else {
          onFolder?.(path, info);
          await walk(path, depth + 1);
        }
      } else if (info.kind === "file" && name.endsWith(".oci")) archives.push(path);
    }
  };
  await walk("", 0);
  return { archives: archives.sort(), problems };
}

/**
 * The repository names whose candidates may include `path`, by the lookup rules:
 * `<name>/<reference>.oci` and `<name>/*.oci` give the folder's path as a name,
 * `<name>:<reference>.oci`, `<name>:*.oci` and `<name>.oci` the file's own stem.
 * Only names valid in the distribution grammar count.
 */
export function namesServedBy(path: string): string[] {
  const slash = path.lastIndexOf("/");
  const folder = slash < 0 ? "" : path.slice(0, slash);
  // A layout folder stands where its `.oci` counterpart would.
  const file = path.slice(slash + 1, path.endsWith(".oci") ? -".oci".length : undefined);
  const colon = file.indexOf(":");
  const stem = colon < 0 ? file : file.slice(0, colon);
  const names = [joinPath(folder, stem)];
  if (folder !== "") names.push(folder);
  return [...new Set(names)].filter(isValidName);
}

/**
 * The first scan: indexes every archive in the folder, one at a time (a plain tar costs a few
 * header reads; a gzipped one is unpacked into the cache). Broken archives are logged by the
 * store and counted in the metrics; the scan itself never fails.
 */
export async function scanFolder(fs: FileSystem, store: ArchiveStore, logger: Logger): Promise<FolderListing> {
  const started = Date.now();
  const listing = await listArchives(fs);
  for (const problem of listing.problems) logger.warn("scan problem", { problem });
  for (const path of listing.archives) {
    try {
      await store.open(path);
    } catch (e) {
      logger.error("archive unusable", { file: path, problem: (e as Error).message });
    }
  }
  logger.info("first scan done", { archives: listing.archives.length, ms: Date.now() - started });
  return listing;
}
