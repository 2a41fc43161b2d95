#!/usr/bin/env node
// Writes examples/hello.oci: the image `hello:latest` that `npm start` serves out of the box.
//
// An OCI image layout in a plain tar: an image index (linux/amd64 and linux/arm64/v8) tagged
// `latest`, each image one uncompressed layer holding `/hello.txt` ("Hello from
// simple-oci-registry") and `/hello`, a tiny static ELF program that prints the same line, so
// `podman run` / `ctr run` work too. Everything is deterministic (fixed mtimes, uid 0, sorted
// JSON written by hand, no compression), so running this again gives the same bytes.
//
//   node scripts/make-example.mjs            write examples/hello.oci
//   node scripts/make-example.mjs --check    exit 1 if examples/hello.oci differs
//   node scripts/make-example.mjs --out F    write somewhere else
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const MESSAGE = "Hello from simple-oci-registry\n";
const MTIME = 1704067200; // 2024-01-01T00:00:00Z
const CREATED = "2024-01-01T00:00:00Z";

const sha256 = (bytes) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

// --- tar (ustar) ------------------------------------------------------------------------------

function tarHeader(name, size, mode, type) {
  const block = Buffer.alloc(512);
  if (Buffer.byteLength(name) > 100) throw new Error(`name too long: ${name}`);
  block.write(name, 0, "utf8");
  const octal = (value, length, offset) => block.write(value.toString(8).padStart(length - 1, "0") + "\0", offset, "ascii");
  octal(mode, 8, 100);
  octal(0, 8, 108); // uid
  octal(0, 8, 116); // gid
  octal(size, 12, 124);
  octal(MTIME, 12, 136);
  block.fill(" ", 148, 156);
  block.write(type, 156, "ascii");
  block.write("ustar\0", 257, "ascii");
  block.write("00", 263, "ascii");
  block.write("root", 265, "ascii");
  block.write("root", 297, "ascii");
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "ascii");
  return block;
}

/** entries: [{ name, data: Buffer, mode }] → a tar with two zero blocks at the end. */
export function tar(entries) {
  const parts = [];
  for (const { name, data, mode = 0o644 } of entries) {
    parts.push(tarHeader(name, data.length, mode, "0"), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

// --- a static "hello" program per architecture ------------------------------------------------

const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };

/** A minimal ELF64 executable: header, one PT_LOAD segment (R+X) mapping the whole file. */
function elf(machine, align, code) {
  const base = 0x400000;
  const headerSize = 64 + 56;
  const size = headerSize + code.length;
  const header = Buffer.concat([
    Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // ELF64, LE, SysV
    u16(2), // ET_EXEC
    u16(machine),
    u32(1), // EV_CURRENT
    u64(base + headerSize), // entry
    u64(64), // program headers right after this header
    u64(0), // no section headers
    u32(0), // flags
    u16(64), // header size
    u16(56), // program header size
    u16(1), // one program header
    u16(64), // section header size
    u16(0),
    u16(0),
  ]);
  const program = Buffer.concat([
    u32(1), // PT_LOAD
    u32(5), // R + X
    u64(0), // offset
    u64(base), // vaddr
    u64(base), // paddr
    u64(size), // filesz
    u64(size), // memsz
    u64(align),
  ]);
  return Buffer.concat([header, program, code]);
}

function helloAmd64() {
  const msg = Buffer.from(MESSAGE);
  const code = Buffer.concat([
    Buffer.from([0xb8, 1, 0, 0, 0]), // mov eax, 1 (write)
    Buffer.from([0xbf, 1, 0, 0, 0]), // mov edi, 1 (stdout)
    Buffer.from([0x48, 0x8d, 0x35]), u32(16), // lea rsi, [rip + 16] (msg, 16 bytes after this instruction)
    Buffer.from([0xba]), u32(msg.length), // mov edx, len
    Buffer.from([0x0f, 0x05]), // syscall
    Buffer.from([0xb8, 60, 0, 0, 0]), // mov eax, 60 (exit)
    Buffer.from([0x31, 0xff]), // xor edi, edi
    Buffer.from([0x0f, 0x05]), // syscall
    msg,
  ]);
  return elf(0x3e, 0x1000, code);
}

function helloArm64() {
  const msg = Buffer.from(MESSAGE);
  const movz = (reg, value) => 0xd2800000 | (value << 5) | reg;
  const adr = (reg, offset) => 0x10000000 | ((offset & 3) << 29) | ((offset >> 2) << 5) | reg;
  const words = [
    movz(0, 1), // mov x0, #1 (stdout)
    adr(1, 28), // adr x1, msg (28 bytes ahead: 8 instructions start at 0, msg at 32)
    movz(2, msg.length), // mov x2, #len
    movz(8, 64), // mov x8, #64 (write)
    0xd4000001, // svc #0
    movz(0, 0), // mov x0, #0
    movz(8, 93), // mov x8, #93 (exit)
    0xd4000001, // svc #0
  ];
  return elf(0xb7, 0x10000, Buffer.concat([...words.map((w) => u32(w >>> 0)), msg]));
}

// --- the image layout -------------------------------------------------------------------------

const json = (value) => Buffer.from(JSON.stringify(value));

export function buildExample() {
  const blobs = new Map();
  const put = (bytes) => {
    const digest = sha256(bytes);
    blobs.set(digest, bytes);
    return { digest, size: bytes.length };
  };
  const platforms = [
    { platform: { architecture: "amd64", os: "linux" }, program: helloAmd64() },
    { platform: { architecture: "arm64", os: "linux", variant: "v8" }, program: helloArm64() },
  ];
  const children = [];
  for (const { platform, program } of platforms) {
    const layer = tar([
      { name: "hello", data: program, mode: 0o755 },
      { name: "hello.txt", data: Buffer.from(MESSAGE), mode: 0o644 },
    ]);
    const layerRef = put(layer);
    const config = put(
      json({
        created: CREATED,
        architecture: platform.architecture,
        ...(platform.variant ? { variant: platform.variant } : {}),
        os: platform.os,
        config: { Cmd: ["/hello"] },
        rootfs: { type: "layers", diff_ids: [layerRef.digest] },
        history: [{ created: CREATED, created_by: "scripts/make-example.mjs" }],
      }),
    );
    const manifest = put(
      json({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layerRef }],
      }),
    );
    children.push({ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest, platform });
  }
  const index = put(json({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: children }));
  const indexJson = json({
    schemaVersion: 2,
    manifests: [{ mediaType: "application/vnd.oci.image.index.v1+json", ...index, annotations: { "org.opencontainers.image.ref.name": "latest" } }],
  });
  const entries = [
    { name: "oci-layout", data: json({ imageLayoutVersion: "1.0.0" }) },
    { name: "index.json", data: indexJson },
    ...[...blobs.keys()].sort().map((digest) => ({ name: `blobs/${digest.replace(":", "/")}`, data: blobs.get(digest) })),
  ];
  return { archive: tar(entries), indexDigest: index.digest, manifests: children };
}

// --- command line -----------------------------------------------------------------------------

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_OUT = resolve(here, "../examples/hello.oci");

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const outIndex = args.indexOf("--out");
  const out = outIndex >= 0 ? resolve(args[outIndex + 1]) : DEFAULT_OUT;
  const { archive, indexDigest } = buildExample();
  if (args.includes("--check")) {
    const same = existsSync(out) && readFileSync(out).equals(archive);
    console.log(same ? `${out} is up to date (${indexDigest})` : `${out} differs from what scripts/make-example.mjs writes; run it again`);
    process.exit(same ? 0 : 1);
  }
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, archive);
  console.log(`wrote ${join(out)} (${archive.length} bytes), hello:latest = ${indexDigest}`);
}
