/**
 * Symlink confinement for the Deno FileSystem, the rule of core/fs.ts as adapters/node/confine.ts
 * applies it: a path is served only if its real path (every symlink resolved) is inside the
 * root or inside an allowed root (`--allow-symlink-root`); elsewhere it is "not there", reported
 * once. Deno's permissions do not contain this: `--allow-read=DIR` is checked against the path
 * given, not against where its links lead.
 *
 * A verdict is remembered with the identity (dev:ino) the path resolved to, so a cached
 * request costs no realPath; a retargeted link has another identity and is checked afresh.
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
}

const MAX_REMEMBERED = 50_000;

function real(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path; // not there (yet), or not readable: compare as given
  }
}

export function confinement(root: string, options: ConfinementOptions = {}): Confinement {
  const roots = [real(root), ...(options.allowedRoots ?? []).map(real)].map((r) => r.replace(/[\\/]+$/, ""));
  const inside = (p: string) => roots.some((r) => p === r || r === "" || p.startsWith(`${r}/`) || p.startsWith(`${r}\\`));
  const verified = new Map<string, string>();
  const reported = new Set<string>();
  return {
    async allows(full, id) {
      if (id !== undefined && verified.get(full) === id) return true;
      let target: string;
      try {
        target = await Deno.realPath(full);
      } catch {
        // Vanished (or dangling) since the caller's stat or open: the caller's answer stands.
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
