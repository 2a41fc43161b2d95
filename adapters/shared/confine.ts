/**
 * Symlink confinement for disk FileSystems (the rule is stated in core/fs.ts): a path is
 * served only if its real path (every symlink resolved) is inside the root, or inside one of
 * the extra allowed roots (`--allow-symlink-root`, for NFS layouts that link across mounts).
 * A path that resolves elsewhere is "not there" (`undefined`), and is reported once.
 * Runtime-free: each adapter passes its runtime's realpath.
 *
 * Cheap on the hot path: a path's verdict is remembered with the identity (dev:ino) it resolved
 * to, which the caller has anyway from its stat or open. The same path with the same identity is
 * not checked again; a retargeted symlink resolves to another identity and is checked afresh.
 */
export interface ConfinementOptions {
  /** Folders outside the root that symlinks may point into. */
  allowedRoots?: string[];
  /** Called once per refused path with where it leads. */
  onRefused?: (path: string, realPath: string) => void;
}

export interface Confinement {
  /** Whether `full` (a path under the root) may be used; `id` its current identity, if known. */
  allows(full: string, id?: string): Promise<boolean>;
  /** Whether this path with this identity was already found inside (no promise: the per-request stat's usual answer). */
  known(full: string, id: string): boolean;
}

export interface RealPath {
  /** The real path of a root at start; the path itself (made absolute) when it cannot be resolved. */
  sync(path: string): string;
  /** Rejects when the path does not exist (any more). */
  resolve(path: string): Promise<string>;
}

const MAX_REMEMBERED = 50_000;

export function confinement(root: string, realPath: RealPath, options: ConfinementOptions = {}): Confinement {
  const roots = [realPath.sync(root), ...(options.allowedRoots ?? []).map(realPath.sync)].map((r) => r.replace(/[\\/]+$/, ""));
  const inside = (p: string) => roots.some((r) => p === r || r === "" || p.startsWith(`${r}/`) || p.startsWith(`${r}\\`));
  const verified = new Map<string, string>();
  const reported = new Set<string>();
  return {
    known: (full, id) => verified.get(full) === id,
    async allows(full, id) {
      if (id !== undefined && verified.get(full) === id) return true;
      let target: string;
      try {
        target = await realPath.resolve(full);
      } catch {
        // Vanished (or dangling) since the caller's stat or open: nothing to serve from it
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
