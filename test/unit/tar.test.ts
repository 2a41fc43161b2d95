import { describe, expect, it } from "vitest";
import { ArchiveError } from "../../core/errors.ts";
import { indexTar, normalizeEntryName, type ReadAt, type TarEntry } from "../../core/tar.ts";
import {
  END_OF_ARCHIVE,
  blob,
  bytesOf,
  concat,
  gzip,
  image,
  imageIndex,
  layout,
  packTar,
  paxRecords,
  ref,
  tarEntry,
  tarHeader,
} from "../fixtures/oci.ts";

/** A ReadAt over bytes that counts what it hands out. */
function reader(bytes: Uint8Array) {
  const stats = { calls: 0, bytes: 0 };
  const readAt: ReadAt = async (offset, length) => {
    stats.calls++;
    const out = bytes.slice(offset, offset + length);
    stats.bytes += out.length;
    return out;
  };
  return { readAt, stats };
}

const index = (bytes: Uint8Array, limits?: Parameters<typeof indexTar>[2]) => indexTar(reader(bytes).readAt, bytes.length, limits);

/** name -> bytes at each file entry's offset and size. */
function contents(archive: Uint8Array, entries: TarEntry[]): Map<string, Uint8Array> {
  return new Map(entries.filter((e) => e.type === "file").map((e) => [e.name, archive.slice(e.offset, e.offset + e.size)]));
}

async function rejects(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ArchiveError);
  expect((err as Error).message).toMatch(message);
}

const app = image({ layers: [{ "app.txt": "app" }] });
const multi = imageIndex([
  image({ platform: { architecture: "amd64", os: "linux" } }),
  image({ platform: { architecture: "arm64", os: "linux", variant: "v8" } }),
]);
const files = layout([{ image: app, annotations: ref("v1") }, { index: multi, annotations: ref("multi") }]);

describe("indexTar", () => {
  it.each([
    ["no prefix", {}],
    ["./ prefix", { prefix: "./" as const }],
    ["./ prefix and folders", { prefix: "./" as const, folders: true }],
    ["blobs first", { order: "blobs-first" as const }],
    ["index first", { order: "index-first" as const, prefix: "./" as const }],
    ["forced pax headers", { pax: true }],
    ["GNU headers", { gnuLongNames: true, folders: true }],
  ])("finds every file at its exact offset (%s)", async (_, options) => {
    const archive = await packTar(files, options);
    const entries = await index(archive);
    expect(contents(archive, entries)).toEqual(files);
    for (const e of entries) expect(e.offset % 512).toBe(0);
  });

  it("keeps the archive's order", async () => {
    const archive = await packTar(files, { order: "blobs-first" });
    const names = (await index(archive)).map((e) => e.name);
    expect(names.slice(-2)).toEqual(["oci-layout", "index.json"]);
    expect(names[0]).toMatch(/^blobs\/sha256\/[0-9a-f]{64}$/);
  });

  it("reports folders without their trailing slash, and the root as an empty name", async () => {
    const archive = await packTar(new Map([["blobs/sha256/x", bytesOf("x")]]), { prefix: "./", folders: true });
    expect((await index(archive)).map((e) => [e.name, e.type])).toEqual([
      ["", "directory"],
      ["blobs", "directory"],
      ["blobs/sha256", "directory"],
      ["blobs/sha256/x", "file"],
    ]);
  });

  it("reads long names from pax records, ustar prefixes and GNU L/K records", async () => {
    const long = `deep/${"d".repeat(120)}/file.txt`; // a 120-byte segment: tar-stream must use pax
    const prefixed = `${"a".repeat(60)}/${"b".repeat(60)}/c.txt`; // fits the ustar prefix field
    const target = `${"t".repeat(150)}/target`;
    const input = new Map([
      [long, bytesOf("long")],
      [prefixed, bytesOf("prefixed")],
    ]);
    const extra = [{ name: "link", type: "symlink" as const, linkname: target }];
    for (const options of [{ extra }, { extra, gnuLongNames: true }]) {
      const archive = await packTar(input, options);
      const entries = await index(archive);
      expect(contents(archive, entries)).toEqual(input);
      expect(entries.at(-1)).toMatchObject({ name: "link", type: "symlink", linkName: target, size: 0 });
    }
  });

  it("reports hard links with a normalised target", async () => {
    const archive = await packTar(new Map([["a", bytesOf("a")]]), { prefix: "./", extra: [{ name: "./b", type: "link", linkname: "./a" }] });
    expect((await index(archive))[1]).toMatchObject({ name: "b", type: "hardlink", linkName: "a", size: 0 });
  });

  it("applies pax size and path, and skips pax global headers", async () => {
    const data = bytesOf("z".repeat(1000));
    const archive = concat(
      tarEntry({ name: "pax_global_header", type: "g" }, paxRecords({ comment: "skip me", path: "not/this" })),
      tarEntry({ name: "PaxHeader", type: "x" }, paxRecords({ path: "./blobs/sha256/ü-long", size: "1000" })),
      tarHeader({ name: "short", size: 0 }), // the pax size wins over the header's
      data,
      new Uint8Array(24),
      tarEntry({ name: "next" }, "n"),
      END_OF_ARCHIVE,
    );
    const entries = await index(archive);
    expect(entries.map(({ name, offset, size }) => ({ name, offset, size }))).toEqual([
      { name: "blobs/sha256/ü-long", offset: 2560, size: 1000 },
      { name: "next", offset: 4096, size: 1 },
    ]);
  });

  it("reads base-256 sizes", async () => {
    const data = bytesOf("q".repeat(777));
    const archive = concat(tarEntry({ name: "big", base256Size: true }, data), END_OF_ARCHIVE);
    expect(archive[124]).toBe(0x80);
    const entries = await index(archive);
    expect(entries).toEqual([{ name: "big", type: "file", offset: 512, size: 777 }]);
  });

  it("accepts old-style signed checksums and v7 headers", async () => {
    const archive = concat(
      tarEntry({ name: "é-signed", checksum: "signed" }, "s"),
      tarEntry({ name: "v7", format: "v7" }, "v"),
      END_OF_ARCHIVE,
    );
    expect((await index(archive)).map((e) => e.name)).toEqual(["é-signed", "v7"]);
  });

  it("rejects a bad header checksum with its offset", async () => {
    const archive = concat(tarEntry({ name: "ok" }, "x"), tarEntry({ name: "bad", checksum: "wrong" }, "y"), END_OF_ARCHIVE);
    await rejects(index(archive), /^bad tar header checksum at offset 1024$/);
  });

  it("says so when handed a gzip file", async () => {
    await rejects(index(gzip(await packTar(files))), /bad tar header checksum at offset 0 \(the file is gzip-compressed\)/);
  });

  it("rejects a truncated archive", async () => {
    const archive = concat(tarEntry({ name: "a" }, "a"), tarEntry({ name: "blob" }, "b".repeat(2000)), END_OF_ARCHIVE);
    await rejects(index(archive.slice(0, 2000)), /^truncated: entry blob needs 3536 bytes, archive has 2000$/);
    await rejects(index(archive.slice(0, 1200)), /^truncated: header at offset 1024 needs 1536 bytes, archive has 1200$/);
    // Cut after a pax header: its entry is missing.
    const pax = tarEntry({ name: "PaxHeader", type: "x" }, paxRecords({ path: "x" }));
    await rejects(index(pax), /^truncated: tar header at offset 0 has no entry after it$/);
  });

  it("ends at two zero blocks, one zero block, or the end of the file", async () => {
    const body = concat(tarEntry({ name: "a" }, "a"), tarEntry({ name: "b" }, "b"));
    const garbage = bytesOf("not a header".repeat(100));
    for (const archive of [
      concat(body, END_OF_ARCHIVE, garbage),
      concat(body, new Uint8Array(512), garbage),
      body,
      concat(body, new Uint8Array(100)), // a short zero tail
    ]) {
      expect((await index(archive)).map((e) => e.name)).toEqual(["a", "b"]);
    }
    expect(await index(new Uint8Array(0))).toEqual([]);
    // An empty last file, no end blocks: its data offset is the end of the archive.
    const empty = concat(body, tarEntry({ name: "empty" }));
    expect((await index(empty)).at(-1)).toEqual({ name: "empty", type: "file", offset: empty.length, size: 0 });
  });

  it("enforces the entry limit", async () => {
    const archive = await packTar(new Map(["a", "b", "c"].map((n) => [n, bytesOf(n)])), { folders: false });
    await expect(index(archive, { maxEntries: 3 })).resolves.toHaveLength(3);
    await rejects(index(archive, { maxEntries: 2 }), /^more than 2 entries$/);
  });

  it("enforces the pax record limit", async () => {
    const archive = concat(tarEntry({ name: "PaxHeader", type: "x" }, paxRecords({ path: "p".repeat(3000) })), tarEntry({ name: "x" }), END_OF_ARCHIVE);
    await expect(index(archive)).resolves.toMatchObject([{ name: "p".repeat(3000) }]);
    await rejects(index(archive, { maxPaxSize: 1024 }), /larger than 1024 bytes/);
  });

  it("rejects malformed pax records", async () => {
    const archive = concat(tarEntry({ name: "PaxHeader", type: "x" }, "99 path=x\n"), tarEntry({ name: "x" }), END_OF_ARCHIVE);
    await rejects(index(archive), /^bad pax record at offset 512$/);
  });

  it("reads a few KiB of an archive with a 50 MiB entry", async () => {
    const big = 50 * 1024 * 1024;
    const head = concat(tarEntry({ name: "oci-layout" }, '{"imageLayoutVersion":"1.0.0"}'), tarHeader({ name: "blobs/sha256/big", size: big }));
    const tail = concat(tarEntry({ name: "index.json" }, "{}"), END_OF_ARCHIVE);
    const tailAt = head.length + big;
    const size = tailAt + tail.length;
    // Sparse: the 50 MiB of data is never materialised, and reading it would be counted.
    const stats = { calls: 0, bytes: 0 };
    const readAt: ReadAt = async (offset, length) => {
      stats.calls++;
      const out = new Uint8Array(Math.max(0, Math.min(length, size - offset)));
      for (const [at, part] of [[0, head], [tailAt, tail]] as const) {
        for (let i = Math.max(offset, at); i < Math.min(offset + out.length, at + part.length); i++) out[i - offset] = part[i - at];
      }
      stats.bytes += out.length;
      return out;
    };
    const entries = await indexTar(readAt, size);
    expect(entries.map((e) => [e.name, e.offset, e.size])).toEqual([
      ["oci-layout", 512, 30],
      ["blobs/sha256/big", 1536, big],
      ["index.json", tailAt + 512, 2],
    ]);
    expect(stats.bytes).toBeLessThanOrEqual(8 * 1024);
    expect(stats.calls).toBeLessThanOrEqual(2);
  });

  it("reads many tiny entries in few reads", async () => {
    const many = new Map(Array.from({ length: 2000 }, (_, i) => [`blobs/sha256/${i}`, bytesOf(String(i))]));
    const archive = await packTar(many);
    const { readAt, stats } = reader(archive);
    const entries = await indexTar(readAt, archive.length);
    expect(entries).toHaveLength(2000);
    expect(contents(archive, entries)).toEqual(many);
    expect(stats.calls).toBeLessThan(50); // 2 MiB of archive, reads growing to 64 KiB
  });

  it("does not read past the end of the archive", async () => {
    const archive = await packTar(new Map([["a", blob("a").bytes]]));
    const { readAt } = reader(archive);
    const guarded: ReadAt = (offset, length) => {
      expect(offset + length).toBeLessThanOrEqual(archive.length);
      return readAt(offset, length);
    };
    await expect(indexTar(guarded, archive.length)).resolves.toHaveLength(1);
  });
});

describe("normalizeEntryName", () => {
  it.each([
    ["./index.json", "index.json"],
    ["././blobs//sha256/abc", "blobs/sha256/abc"],
    [".//x", "x"],
    ["blobs/", "blobs"],
    ["./", ""],
    [".", ""],
    ["a/./b", "a/b"],
    // Kept for the layout layer to reject:
    ["../etc/passwd", "../etc/passwd"],
    ["/abs//path/", "/abs/path"],
  ])("%s -> %s", (input, output) => {
    expect(normalizeEntryName(input)).toBe(output);
  });
});
