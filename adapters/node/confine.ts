/**
 * Symlink confinement for the Node FileSystem (the rule is stated in core/fs.ts): a path is
 * served only if its real path (every symlink resolved) is inside the root, or inside one of
 * the extra allowed roots (`--allow-symlink-root`, for NFS layouts that link across mounts).
 * A path that resolves elsewhere is "not there" (`undefined`), and is reported once.
 *
 * Cheap on the hot path: a path's verdict is remembered with the identity (dev:ino) it resolved
 * to, which the caller has anyway from its stat or open. The same path with the same identity is
 * not checked again; a retargeted symlink resolves to another identity and is checked afresh.
 */
import { realpathSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { resolve, sep } from "node:path";

export interface ConfinementOptions {
  /** Folders outside the root that symlinks may point into. */
  allowedRoots?: string[];
  /** Called once per refused path with where it leads. */
  onRefused?: (path: string, realPath: string) => void;
}

export interface Confinement {
  /** Whether `full` (an absolute path under the root) may be used; `id` its current identity, if known. */
  allows(full: string, id?: string): Promise<boolean>;
}

const MAX_REMEMBERED = 50_000;

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

export function confinement(root: string, options: ConfinementOptions = {}): Confinement {
  const roots = [real(root), ...(options.allowedRoots ?? []).map(real)];
  const inside = (p: string) => roots.some((r) => p === r || p.startsWith(r.endsWith(sep) ? r : r + sep));
  const verified = new Map<string, string>();
  const reported = new Set<string>();
  return {
    async allows(full, id) {
      if (id !== undefined && verified.get(full) === id) return true;
      let target: string;
      try {
        target = await realpath(full);
      } catch {
        // Vanished (or dangling) between the caller's stat/open and now: nothing to serve from it
        // anyway, and the caller's own answer stands.
        return true;
      }
      if (inside(target)) {
        if (id !== undefined) {
          if (verified.size >= MAX_REMEMBERED) verified.clear();
          verified.set(full, id);
        }
        return true;
      }
      if (!reported.has(full)) {
        if (reported.size >= MAX_REMEMBERED) reported.clear();
        reported.add(full);
        options.onRefused?.(full, target);
      }
      return false;
    },
  };
}
