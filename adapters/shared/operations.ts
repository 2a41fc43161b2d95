/**
 * The registry options of issue 6 (auth, `?ns=` folders, operational endpoints, first scan)
 * from the parsed flags, for any runtime adapter: it passes `fsAt(folder)`, its `FileSystem`
 * rooted at a folder. Runtime-free.
 */
import { parseHtpasswd } from "../../core/auth.ts";
import type { FileSystem } from "../../core/fs.ts";
import type { RegistryOptions } from "../../core/registry.ts";
import type { ServerOptions } from "./options.ts";
import { readWhole, splitPath } from "./watch.ts";

export const DEFAULT_WATCH_INTERVAL_MS = 5000;

export function operationsOptions(options: ServerOptions, fsAt: (folder: string) => FileSystem): Partial<RegistryOptions> {
  const htpasswd = options.htpasswd === undefined ? undefined : splitPath(options.htpasswd);
  return {
    htpasswd: htpasswd && {
      fs: fsAt(htpasswd[0]),
      path: htpasswd[1],
      realm: options.authRealm,
      checkIntervalMs: options.watchIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS,
    },
    nsDirs: options.nsDirs ?? false,
    operationsOnMainPort: options.metricsPort === undefined,
    initialScan: true,
  };
}

/**
 * The htpasswd file checked at start, so a typo in the path fails the start with a reason
 * instead of refusing every pull: a one-line reason, or `undefined` when fine.
 */
export async function checkHtpasswdFile(options: ServerOptions, fsAt: (folder: string) => FileSystem): Promise<string | undefined> {
  if (options.htpasswd === undefined) return undefined;
  const [folder, name] = splitPath(options.htpasswd);
  let text: string;
  try {
    text = new TextDecoder().decode(await readWhole({ fs: fsAt(folder), path: name }, 16 << 20));
  } catch (e) {
    return `--htpasswd ${options.htpasswd}: ${(e as Error).message}`;
  }
  if (parseHtpasswd(text).users.size === 0) return `--htpasswd ${options.htpasswd}: no bcrypt entries (make them with htpasswd -B)`;
  return undefined;
}
