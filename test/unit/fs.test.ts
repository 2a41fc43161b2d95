import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import * as nodefs from "node:fs/promises";
import os from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryFileSystem } from "../../core/memory-fs.ts";
import { digestOf } from "../../core/hash.ts";
import { nodeFileSystem } from "../../adapters/node/fs.ts";
import { nodeHasher } from "../../adapters/node/hash.ts";
import { collect, describeFileSystemContract, expectBytes, patterned } from "../contract/fs-contract.ts";

const text = (s: string) => new TextEncoder().encode(s);
const MiB = 1024 * 1024;

// ---- the contract, against every implementation ----

describeFileSystemContract("MemoryFileSystem", async () => {
  const fs = new MemoryFileSystem();
  const current = async (path: string) => (await fs.read(path, 0, Number.MAX_SAFE_INTEGER))!;
  return {
    fs,
    put: async (path, bytes) => fs.set(path, bytes),
    replaceByRename: async (path, bytes) => {
      fs.set(`${path}.tmp`, bytes);
      fs.rename(`${path}.tmp`, path);
    },
    overwriteInPlace: async (path, bytes) => fs.set(path, bytes),
    truncate: async (path, size) => fs.set(path, (await current(path)).subarray(0, size)),
    remove: async (path) => void fs.delete(path),
    mkdir: async (path) => fs.mkdir(path),
    cleanup: async () => {},
  };
});

async function tempRoot(): Promise<string> {
  return nodefs.mkdtemp(join(os.tmpdir(), "fs-test-"));
}

describeFileSystemContract("nodeFileSystem", async () => {
  const root = await tempRoot();
  const at = (path: string) => join(root, path);
  return {
    fs: nodeFileSystem(root, { writable: true }),
    put: async (path, bytes) => {
      await nodefs.mkdir(dirname(at(path)), { recursive: true });
      await nodefs.writeFile(at(path), bytes);
    },
    replaceByRename: async (path, bytes) => {
      await nodefs.writeFile(`${at(path)}.tmp`, bytes);
      await nodefs.rename(`${at(path)}.tmp`, at(path));
    },
    overwriteInPlace: async (path, bytes) => {
      const handle = await nodefs.open(at(path), "r+");
      try {
        await handle.write(bytes, 0, bytes.length, 0);
        await handle.truncate(bytes.length);
      } finally {
        await handle.close();
      }
    },
    truncate: (path, size) => nodefs.truncate(at(path), size),
    remove: (path) => nodefs.rm(at(path), { force: true }),
    mkdir: async (path) => void (await nodefs.mkdir(at(path), { recursive: true })),
    cleanup: () => nodefs.rm(root, { recursive: true, force: true }),
  };
});

// ---- Node-specific ----

describe("nodeFileSystem", () => {
  let root: string;
  beforeEach(async () => {
    root = await tempRoot();
  });
  afterEach(async () => {
    await nodefs.rm(root, { recursive: true, force: true });
  });

  const hasProcFd = existsSync("/proc/self/fd");
  const openFds = () => readdirSync("/proc/self/fd").length;

  it.skipIf(!hasProcFd)("releases file descriptors however a stream or read ends", async () => {
    const fs = nodeFileSystem(root, { writable: true });
    await nodefs.writeFile(join(root, "big"), patterned(2 * MiB));
    await nodefs.writeFile(join(root, "small"), patterned(1000));
    const info = (await fs.stat("big"))!;

    // Node closes an unreachable FileHandle on garbage collection, and a finished stream drops
    // its source, so GC hides part of a leak: a leaky cancel showed +30 fds here, not +400.
    const open = async (path: string, start: number, end: number) => (await fs.stream(path, start, end))!;
    const round = async () => {
      await (await open("big", 0, 2 * MiB)).cancel(); // never read
      const reader = (await open("big", 0, 2 * MiB)).getReader();
      await reader.read();
      await reader.cancel(); // cancelled mid-way
      await collect(await open("small", 0, 1000)); // read to the end
      await collect(await open("small", 10, 10)); // empty range
      expect(await fs.stream("big", 0, 10, { expect: { ...info, size: 1 } })).toBeUndefined(); // mismatch
      await expect(collect(await open("small", 0, 1001))).rejects.toThrow(); // runs past the end
      await fs.read("small", 0, 100);
      await fs.read("small", 5000, 100);
      expect(await fs.read("", 0, 1)).toBeUndefined(); // a folder: opened, then refused
    };
    await round(); // warm up anything opened lazily
    const before = openFds();
    for (let i = 0; i < 200; i++) await round();
    expect(openFds()).toBeLessThanOrEqual(before + 2);
  });

  it("follows symlinks: kind, size and id come from the target", async () => {
    const fs = nodeFileSystem(root);
    await nodefs.mkdir(join(root, "real"));
    await nodefs.writeFile(join(root, "real/file"), text("target"));
    await nodefs.symlink("real/file", join(root, "link-file"));
    await nodefs.symlink("real", join(root, "link-dir"));
    await nodefs.symlink("nowhere", join(root, "dangling"));

    const target = (await fs.stat("real/file"))!;
    expect(await fs.stat("link-file")).toEqual(target);
    expect(await fs.stat("link-dir")).toMatchObject({ kind: "directory" });
    expect(await fs.list("link-dir")).toEqual(["file"]);
    expect(new TextDecoder().decode(await fs.read("link-file", 0, 100))).toBe("target");
    expect(await fs.stat("dangling")).toBeUndefined();
    expect(await fs.read("dangling", 0, 1)).toBeUndefined();
    expect(await fs.stream("dangling", 0, 1)).toBeUndefined();
  });

  it("answers undefined for a path through a file (ENOTDIR)", async () => {
    const fs = nodeFileSystem(root, { writable: true });
    await nodefs.writeFile(join(root, "f"), text("f"));
    expect(await fs.stat("f/x")).toBeUndefined();
    expect(await fs.list("f/x")).toBeUndefined();
    expect(await fs.read("f/x", 0, 1)).toBeUndefined();
    expect(await fs.stream("f/x", 0, 1)).toBeUndefined();
    await fs.remove("f/x");
  });

  it("propagates errors other than not-found", async () => {
    const fs = nodeFileSystem(root, { writable: true });
    await nodefs.writeFile(join(root, "f"), text("f"));
    // writing below a file cannot create the folder
    await expect(fs.write("f/x", new Blob([text("x")]).stream())).rejects.toMatchObject({ code: expect.stringMatching(/^(ENOTDIR|EEXIST)$/) });
    await nodefs.mkdir(join(root, "d"));
    await expect(fs.remove("d")).rejects.toThrow();
  });

  it("never hangs on a FIFO, and does not treat it as a file", { timeout: 5000 }, async (ctx) => {
    const fifo = join(root, "fifo");
    if (spawnSync("mkfifo", [fifo]).status !== 0) return ctx.skip();
    const fs = nodeFileSystem(root);
    expect(await fs.stat("fifo")).toMatchObject({ kind: "other" });
    expect(await fs.read("fifo", 0, 10)).toBeUndefined();
    expect(await fs.stream("fifo", 0, 10)).toBeUndefined();
  });

  it("is read-only unless created writable", async () => {
    await nodefs.writeFile(join(root, "f"), text("f"));
    const fs = nodeFileSystem(root);
    let cancelled = false;
    const source = new ReadableStream<Uint8Array>({ cancel: () => void (cancelled = true) });
    await expect(fs.write("g", source)).rejects.toMatchObject({ code: "EROFS" });
    expect(cancelled).toBe(true);
    await expect(fs.remove("f")).rejects.toMatchObject({ code: "EROFS" });
    expect(await fs.list("")).toEqual(["f"]);
  });

  it("streams in chunks of the configured size", async () => {
    await nodefs.writeFile(join(root, "f"), patterned(10_500));
    const fs = nodeFileSystem(root, { chunkSize: 1000 });
    const { bytes, chunks } = await collect((await fs.stream("f", 0, 10_500))!);
    expect(chunks).toEqual([...Array(10).fill(1000), 500]);
    expectBytes(bytes, patterned(10_500));
  });

  it("reads only when pulled", async () => {
    await nodefs.writeFile(join(root, "f"), patterned(3 * MiB));
    const fs = nodeFileSystem(root, { chunkSize: MiB });
    const reader = (await fs.stream("f", 0, 3 * MiB))!.getReader();
    await new Promise((r) => setTimeout(r, 20));
    await nodefs.truncate(join(root, "f"), 0); // nothing was read ahead, so the first read sees it
    await expect(reader.read()).rejects.toThrow(/truncated/);
  });

  it("resolves paths under the root only", async () => {
    await nodefs.mkdir(join(root, "inner"));
    await nodefs.writeFile(join(root, "outside"), text("o"));
    const fs = nodeFileSystem(join(root, "inner"));
    await expect(fs.stat("../outside")).rejects.toThrow(/\.\./);
    await expect(fs.stat(join(root, "outside"))).rejects.toThrow(/relative/);
    expect(await fs.stat("..x")).toBeUndefined(); // a name that starts with two dots is fine
  });
});

describe("nodeHasher", () => {
  it("hashes sha256 and sha512 like the pure-JS default", () => {
    const data = patterned(100_000);
    expect(digestOf(nodeHasher, "sha256", text("abc"))).toBe("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const h = nodeHasher("sha512")!;
    h.update(data.subarray(0, 10));
    h.update(data.subarray(10));
    expect(`sha512:${h.digest()}`).toBe(digestOf(nodeHasher, "sha512", data));
  });

  it("is undefined for other algorithms", () => {
    expect(nodeHasher("md5")).toBeUndefined();
    expect(nodeHasher("SHA256")).toBeUndefined();
  });
});

// ---- MemoryFileSystem test helpers ----

describe("MemoryFileSystem", () => {
  it("counts operations and bytes read", async () => {
    const fs = new MemoryFileSystem({ chunkSize: 100 });
    fs.set("a/f", patterned(250));
    expect(fs.stats).toEqual({ stat: 0, list: 0, read: 0, stream: 0, bytesRead: 0 }); // setup is not counted
    await fs.stat("a/f");
    await fs.stat("nope");
    await fs.list("a");
    await fs.read("a/f", 200, 100);
    await collect((await fs.stream("a/f", 0, 250))!);
    expect(fs.stats).toEqual({ stat: 2, list: 1, read: 1, stream: 1, bytesRead: 50 + 250 });
    fs.resetStats();
    expect(fs.stats).toEqual({ stat: 0, list: 0, read: 0, stream: 0, bytesRead: 0 });
  });

  it("counts only the bytes a cancelled stream handed out", async () => {
    const fs = new MemoryFileSystem({ chunkSize: 100 });
    fs.set("f", patterned(1000));
    const reader = (await fs.stream("f", 0, 1000))!.getReader();
    await reader.read();
    await reader.cancel();
    expect(fs.stats.bytesRead).toBe(100);
  });

  it("tracks open streams until they end, error or are cancelled", async () => {
    const fs = new MemoryFileSystem({ chunkSize: 10 });
    fs.set("f", patterned(100));
    const a = (await fs.stream("f", 0, 100))!;
    const b = (await fs.stream("f", 0, 100))!;
    await fs.stream("f", 5, 5);
    expect(fs.openStreams).toBe(2);
    await collect(a);
    expect(fs.openStreams).toBe(1);
    await b.cancel();
    expect(fs.openStreams).toBe(0);
    const c = (await fs.stream("f", 0, 100))!;
    fs.set("f", patterned(5));
    await expect(collect(c)).rejects.toThrow(/truncated/);
    expect(fs.openStreams).toBe(0);
  });

  it("fails the next operation on a path once with failNext", async () => {
    const fs = new MemoryFileSystem();
    fs.set("f", text("f"));
    const err = new Error("disk on fire");
    fs.failNext("f", "stat", err);
    fs.failNext("f", "read");
    await expect(fs.stat("f")).rejects.toBe(err);
    expect(await fs.stat("f")).toMatchObject({ size: 1 });
    await expect(fs.read("./f", 0, 1)).rejects.toThrow(/EIO/);
    expect(await fs.read("f", 0, 1)).toEqual(text("f"));
    expect(await fs.stat("f")).toBeDefined(); // other ops and paths unaffected
  });

  it("fails operations chosen by the faults hook, including a chunk mid-stream", async () => {
    const fs = new MemoryFileSystem({ chunkSize: 10 });
    fs.set("f", patterned(100));
    fs.set("g", text("g"));
    let pulls = 0;
    fs.faults = (op, path) => (op === "pull" && path === "f" && ++pulls === 3 ? new Error("EIO: bad sector") : undefined);
    const reader = (await fs.stream("f", 0, 100))!.getReader();
    expect((await reader.read()).value).toHaveLength(10);
    expect((await reader.read()).value).toHaveLength(10);
    await expect(reader.read()).rejects.toThrow(/bad sector/);
    expect(fs.openStreams).toBe(0);
    fs.faults = (op) => (op === "write" ? new Error("EROFS") : undefined);
    const source = new Blob([text("x")]).stream();
    await expect(fs.write("h", source)).rejects.toThrow(/EROFS/);
    expect(await fs.stat("h")).toBeUndefined();
  });

  it("keeps the id on set of an existing path and gives new paths new ids", async () => {
    const fs = new MemoryFileSystem();
    fs.set("f", text("one"));
    const first = (await fs.stat("f"))!;
    fs.set("f", text("three"));
    const second = (await fs.stat("f"))!;
    expect(second.id).toBe(first.id);
    expect(second.size).toBe(5);
    expect(second.mtimeMs).toBeGreaterThan(first.mtimeMs);
    fs.set("g", text("one"));
    expect((await fs.stat("g"))!.id).not.toBe(first.id);
  });

  it("moves the id and mtime with rename", async () => {
    const fs = new MemoryFileSystem();
    fs.set("a", text("a"), { mtimeMs: 1234 });
    fs.set("dir/b", text("b"));
    const a = (await fs.stat("a"))!;
    fs.rename("a", "dir/b");
    expect(await fs.stat("a")).toBeUndefined();
    expect(await fs.stat("dir/b")).toEqual(a);
    fs.rename("dir/b", "new/place/c"); // creates folders
    expect(await fs.stat("new/place/c")).toEqual(a);
    expect(() => fs.rename("missing", "x")).toThrow(/ENOENT/);
    expect(() => fs.rename("new", "x")).toThrow(/folder/);
  });

  it("makes mtimes strictly increase even with a stuck clock", async () => {
    const fs = new MemoryFileSystem({ clock: () => 1_000 });
    fs.set("a", text("a"));
    fs.set("b", text("b"));
    fs.set("a", text("A"));
    const [a, b] = [(await fs.stat("a"))!, (await fs.stat("b"))!];
    expect(b.mtimeMs).toBeGreaterThan(1_000);
    expect(a.mtimeMs).toBeGreaterThan(b.mtimeMs);
    fs.set("c", text("c"), { mtimeMs: 5 });
    expect((await fs.stat("c"))!.mtimeMs).toBe(5);
  });

  it("copies bytes in and out", async () => {
    const fs = new MemoryFileSystem();
    const source = text("abc");
    fs.set("f", source);
    source[0] = 0;
    const out = (await fs.read("f", 0, 3))!;
    out[1] = 0;
    expect(new TextDecoder().decode(await fs.read("f", 0, 3))).toBe("abc");
  });

  it("creates empty folders and deletes folders with their contents", async () => {
    const fs = new MemoryFileSystem();
    fs.mkdir("a/b/c");
    expect(await fs.list("a/b")).toEqual(["c"]);
    expect(await fs.list("a/b/c")).toEqual([]);
    fs.set("a/b/c/f", text("f"));
    expect(() => fs.set("a/b/c/f/g", text("g"))).toThrow(/ENOTDIR/);
    expect(() => fs.set("a/b", text("x"))).toThrow(/EISDIR/);
    expect(fs.delete("a/b")).toBe(true);
    expect(fs.delete("a/b")).toBe(false);
    expect(await fs.list("a")).toEqual([]);
    expect(await fs.stat("a/b/c/f")).toBeUndefined();
  });

  it("keeps streaming a deleted file, like an open descriptor", async () => {
    const fs = new MemoryFileSystem({ chunkSize: 10 });
    fs.set("f", patterned(100));
    const stream = (await fs.stream("f", 0, 100))!;
    fs.delete("f");
    expectBytes((await collect(stream)).bytes, patterned(100));
  });

  it("rejects invalid paths in the setup helpers too", () => {
    const fs = new MemoryFileSystem();
    expect(() => fs.set("../x", text("x"))).toThrow(/\.\./);
    expect(() => fs.set("/x", text("x"))).toThrow(/relative/);
    expect(() => fs.mkdir("a/../../b")).toThrow();
  });
});
