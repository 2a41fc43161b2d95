/** A registry over in-memory file systems, with fixtures packed into `.oci` archives. */
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { createRegistry, type Registry, type RegistryOptions } from "../../core/registry.ts";
import type { Logger } from "../../core/log.ts";
import { layout, type LayoutEntry, MEDIA, packTar, type PackOptions } from "../fixtures/oci.ts";

export const ACCEPT_ALL = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList].join(", ");

export interface MemoryRegistry {
  images: MemoryFileSystem;
  cache: MemoryFileSystem;
  registry: Registry;
  logs: Array<{ level: string; msg: string; fields?: Record<string, unknown> }>;
  /** Packs a layout into an archive at `path`. */
  put(path: string, entries: LayoutEntry[], options?: PackOptions): Promise<Uint8Array>;
  get(path: string, init?: RequestInit): Promise<Response>;
}

export function memoryRegistry(options: Partial<RegistryOptions> = {}): MemoryRegistry {
  const images = new MemoryFileSystem();
  const cache = new MemoryFileSystem();
  const logs: MemoryRegistry["logs"] = [];
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) => void logs.push({ level, msg, fields });
  const logger: Logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  const registry = createRegistry({ images, cache, logger, rescanIntervalMs: 0, ...options });
  return {
    images,
    cache,
    registry,
    logs,
    async put(path, entries, packOptions) {
      const bytes = await packTar(layout(entries), packOptions);
      images.set(path, bytes);
      return bytes;
    },
    get: (path, init) => {
      // Like containerd and skopeo, accept every manifest type unless a test says otherwise.
      const headers = new Headers(init?.headers);
      if (!headers.has("Accept")) headers.set("Accept", ACCEPT_ALL);
      return registry.fetch(new Request(`http://registry.test${path}`, { ...init, headers }));
    },
  };
}
