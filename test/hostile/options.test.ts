/** The limit and symlink flags: parsed from flags and environment, with defaults, refused when bad. */
import { describe, expect, it } from "vitest";
import { parseSize } from "../../adapters/shared/limit-options.ts";
import { helpText, parseArgs, UsageError } from "../../adapters/shared/options.ts";
import { defaultArchiveLimits } from "../../core/archives.ts";
import { defaultServingLimits } from "../../core/limits.ts";

const run = (argv: string[], env: Record<string, string> = {}) => {
  const parsed = parseArgs(["--dir", "x", ...argv], env);
  if (parsed.kind !== "run") throw new Error("expected run");
  return parsed.options;
};

describe("limit flags", () => {
  it("default to the core's defaults", () => {
    const { limits, allowSymlinkRoots } = run([]);
    expect(limits).toEqual({
      maxEntries: defaultArchiveLimits.maxEntries,
      maxIndexJsonBytes: defaultArchiveLimits.maxIndexJsonBytes,
      maxDecompressedBytes: defaultArchiveLimits.maxDecompressedBytes,
      maxGzipRatio: defaultArchiveLimits.maxGzipRatio,
      maxCacheBytes: defaultServingLimits.maxCacheBytes,
      maxOpenBlobs: defaultServingLimits.maxOpenBlobs,
      maxQueuedBlobs: defaultServingLimits.maxQueuedBlobs,
    });
    expect(allowSymlinkRoots).toEqual([]);
  });

  it("are read from flags, then the environment", () => {
    const o = run(
      ["--max-entries", "5000", "--max-json-size=1m", "--max-decompressed-size", "2g", "--max-cache-size", "0", "--max-open-blobs", "8", "--allow-symlink-root", "/nfs/a, /nfs/b"],
      { SIMPLE_OCI_REGISTRY_MAX_QUEUED_BLOBS: "0", SIMPLE_OCI_REGISTRY_MAX_GZIP_RATIO: "50", SIMPLE_OCI_REGISTRY_MAX_ENTRIES: "1" },
    );
    expect(o.limits).toEqual({
      maxEntries: 5000,
      maxIndexJsonBytes: 1 << 20,
      maxDecompressedBytes: 2 * 2 ** 30,
      maxGzipRatio: 50,
      maxCacheBytes: 0,
      maxOpenBlobs: 8,
      maxQueuedBlobs: 0,
    });
    expect(o.allowSymlinkRoots).toEqual(["/nfs/a", "/nfs/b"]);
  });

  it.each([
    ["--max-entries", "lots"],
    ["--max-entries", "0"],
    ["--max-open-blobs", "0"],
    ["--max-json-size", "12x"],
    ["--max-json-size", "10"],
    ["--max-cache-size", "-1g"],
    ["--max-gzip-ratio", "1.5"],
  ])("%s %s is a usage error", (flag, value) => {
    expect(() => run([flag, value])).toThrow(UsageError);
  });

  it("sizes take k, m, g, t", () => {
    const usage = (m: string) => new Error(m);
    expect(parseSize("512k", "x", usage)).toBe(512 * 1024);
    expect(parseSize("1.5g", "x", usage)).toBe(1.5 * 2 ** 30);
    expect(parseSize("2TiB", "x", usage)).toBe(2 * 2 ** 40);
    expect(parseSize("100", "x", usage)).toBe(100);
  });

  it("are listed in --help", () => {
    const help = helpText();
    for (const flag of ["--max-entries", "--max-json-size", "--max-decompressed-size", "--max-gzip-ratio", "--max-cache-size", "--max-open-blobs", "--max-queued-blobs", "--allow-symlink-root"]) {
      expect(help).toContain(flag);
    }
  });
});
