/** Symlink confinement (adapters/shared/confine.ts) with Node's realpath. */
import { realpathSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { resolve } from "node:path";
import { type Confinement, type ConfinementOptions, confinement as confineWith } from "../shared/confine.ts";

export type { Confinement, ConfinementOptions };

const nodeRealPath = {
  sync(path: string): string {
    try {
      return realpathSync(path);
    } catch {
      return resolve(path);
    }
  },
  resolve: (path: string) => realpath(path),
};

export function confinement(root: string, options: ConfinementOptions = {}): Confinement {
  return confineWith(root, nodeRealPath, options);
}
