/**
 * Flags for limits and symlink confinement (issue 5), shared by the Node and Deno adapters.
 * `options.ts` spreads LIMIT_FLAGS into its table and `limitOptions()` into its result.
 * Runtime-free.
 */
import { defaultArchiveLimits, type ArchiveLimits } from "../../core/archives.ts";
import { defaultServingLimits, type ServingLimits } from "../../core/limits.ts";

export interface LimitOptions {
  /** Passed to `createRegistry({ limits })`. */
  limits?: Partial<ArchiveLimits & ServingLimits>;
  /** Folders outside --dir that symlinks inside it may point into (`--allow-symlink-root`). */
  allowSymlinkRoots?: string[];
}

const GiB = 2 ** 30;
const MiB = 2 ** 20;

export const LIMIT_FLAGS = {
  "max-entries": {
    env: "SIMPLE_OCI_REGISTRY_MAX_ENTRIES",
    default: String(defaultArchiveLimits.maxEntries),
    help: "an archive with more tar entries is unusable",
  },
  "max-json-size": {
    env: "SIMPLE_OCI_REGISTRY_MAX_JSON_SIZE",
    default: `${defaultArchiveLimits.maxIndexJsonBytes / MiB}m`,
    help: "largest index.json (and other layout JSON) read from an archive (manifests: 4m)",
  },
  "max-decompressed-size": {
    env: "SIMPLE_OCI_REGISTRY_MAX_DECOMPRESSED_SIZE",
    default: `${defaultArchiveLimits.maxDecompressedBytes / GiB}g`,
    help: "a gzipped archive that unpacks to more is unusable",
  },
  "max-gzip-ratio": {
    env: "SIMPLE_OCI_REGISTRY_MAX_GZIP_RATIO",
    default: String(defaultArchiveLimits.maxGzipRatio),
    help: "past its first GiB, a gzipped archive may unpack to at most this many times its size (gzip bombs; 0 = no limit)",
  },
  "max-cache-size": {
    env: "SIMPLE_OCI_REGISTRY_MAX_CACHE_SIZE",
    default: `${defaultServingLimits.maxCacheBytes / GiB}g`,
    help: "total size of --cache-dir; gzipped archives that would pass it are unusable until space frees (0 = no limit)",
  },
  "max-open-blobs": {
    env: "SIMPLE_OCI_REGISTRY_MAX_OPEN_BLOBS",
    default: String(defaultServingLimits.maxOpenBlobs),
    help: "blob downloads streamed at once (each holds an open file); more wait in a queue",
  },
  "max-queued-blobs": {
    env: "SIMPLE_OCI_REGISTRY_MAX_QUEUED_BLOBS",
    default: String(defaultServingLimits.maxQueuedBlobs),
    help: "blob downloads waiting for a slot (up to 30s); past it: 429 TOOMANYREQUESTS",
  },
  "allow-symlink-root": {
    env: "SIMPLE_OCI_REGISTRY_ALLOW_SYMLINK_ROOT",
    help: "comma-separated folders outside --dir that symlinks inside it may point into (default: none)",
  },
};

/** `1048576`, `512k`, `16m`, `64g`, `1t` (powers of 1024). */
export function parseSize(value: string, flag: string, usage: (message: string) => Error): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(value.trim());
  if (!m) throw usage(`--${flag}: "${value}" is not a size (use e.g. 16m, 64g)`);
  const unit = { "": 1, k: 2 ** 10, m: MiB, g: GiB, t: 2 ** 40 }[m[2].toLowerCase() as "" | "k" | "m" | "g" | "t"];
  const n = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n)) throw usage(`--${flag}: "${value}" is too large`);
  return n;
}

function parseCount(value: string, flag: string, usage: (message: string) => Error): number {
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) throw usage(`--${flag}: "${value}" is not a whole number`);
  return Number(value);
}

/** Reads the limit flags through options.ts's `get` (flag, then environment, then default). */
export function limitOptions(get: (name: string) => string | undefined, usage: (message: string) => Error): Required<LimitOptions> {
  const size = (flag: string) => parseSize(get(flag)!, flag, usage);
  const count = (flag: string) => parseCount(get(flag)!, flag, usage);
  const maxEntries = count("max-entries");
  if (maxEntries < 1) throw usage("--max-entries must be at least 1");
  const maxOpenBlobs = count("max-open-blobs");
  if (maxOpenBlobs < 1) throw usage("--max-open-blobs must be at least 1");
  const maxIndexJsonBytes = size("max-json-size");
  if (maxIndexJsonBytes < 1024) throw usage("--max-json-size must be at least 1k");
  return {
    limits: {
      maxEntries,
      maxIndexJsonBytes,
      maxDecompressedBytes: size("max-decompressed-size"),
      maxGzipRatio: count("max-gzip-ratio"),
      maxCacheBytes: size("max-cache-size"),
      maxOpenBlobs,
      maxQueuedBlobs: count("max-queued-blobs"),
    },
    allowSymlinkRoots: (get("allow-symlink-root") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== ""),
  };
}
