/**
 * Symlink confinement (adapters/shared/confine.ts) with Deno's realPath. Deno's permissions do
 * not contain this: `--allow-read=DIR` is checked against the path given, not against where
 * its links lead.
 */
import { type Confinement, type ConfinementOptions, confinement as confineWith } from "../shared/confine.ts";

export type { Confinement, ConfinementOptions };

const denoRealPath = {
  sync(path: string): string {
    try {
      return Deno.realPathSync(path);
    } catch {
      return path; // not there (yet), or not readable: compare as given
    }
  },
  resolve: (path: string) => Deno.realPath(path),
};

export function confinement(root: string, options: ConfinementOptions = {}): Confinement {
  return confineWith(root, denoRealPath, options);
}
