// The Node side of test/deno/in-deno/fs-server.ts: a WritableFileSystem whose every call runs in
// a Deno subprocess on `denoFileSystem`, so the FileSystem contract suite (vitest, Node) tests
// the real Deno implementation. Streams are pulled chunk by chunk (no read-ahead), cancels and
// errors travel both ways, and a `write` source lives here and is pulled from Deno, so the
// contract's checks on source errors and cancellation see what the Deno code did.
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { FileInfo, StreamOptions, WritableFileSystem } from "../../core/fs.ts";
import { REPO_ROOT } from "../helpers/server.ts";
import { DENO, OFFLINE_ENV } from "./deno.ts";

type Message = Record<string, unknown> & { id?: number; call?: number; op?: string };
interface Source {
  reader: ReadableStreamDefaultReader<Uint8Array>;
  failure?: { error: unknown };
}

const encode = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
const decode = (text: string) => new Uint8Array(Buffer.from(text, "base64"));

export class DenoBridge {
  private child: ChildProcess;
  private nextId = 0;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private sources = new Map<number, Source>();
  private stderr = "";
  private exited = false;

  /** Starts `deno run` with read and write access to the OS temp folder only. */
  constructor(allow = tmpdir()) {
    const script = join(REPO_ROOT, "test/deno/in-deno/fs-server.ts");
    this.child = spawn(DENO, ["run", `--allow-read=${allow}`, `--allow-write=${allow}`, script], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...OFFLINE_ENV },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stderr!.setEncoding("utf8").on("data", (d: string) => (this.stderr += d));
    this.child.once("exit", (code, signal) => {
      this.exited = true;
      const error = new Error(`Deno file-system bridge exited (${code ?? signal}): ${this.stderr}`);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    });
    createInterface({ input: this.child.stdout! }).on("line", (line) => this.onMessage(JSON.parse(line) as Message));
  }

  call<T>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`Deno file-system bridge is not running: ${this.stderr}`));
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    });
  }

  private send(message: unknown): void {
    if (!this.exited) this.child.stdin!.write(`${JSON.stringify(message)}\n`);
  }

  private onMessage(m: Message): void {
    if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      const e = m.error as { name?: string; message: string; code?: string } | undefined;
      if (e) p?.reject(Object.assign(new Error(e.message), { name: e.name ?? "Error", code: e.code }));
      else p?.resolve(m.result);
    } else if (m.op === "sourcePull") {
      const source = this.sources.get(m.wid as number)!;
      source.reader.read().then(
        (r) => this.send({ reply: m.call, result: r.done ? { done: true } : { chunk: encode(r.value) } }),
        (error: unknown) => {
          source.failure = { error };
          this.send({ reply: m.call, error: { message: String((error as Error)?.message ?? error) } });
        },
      );
    } else if (m.op === "sourceCancel") {
      void this.sources.get(m.wid as number)?.reader.cancel(new Error("cancelled by the Deno file system")).catch(() => {});
    }
  }

  /** A `denoFileSystem(root, options)` living in the Deno process. */
  async fileSystem(
    root: string,
    options: { writable?: boolean; chunkSize?: number; allowedRoots?: string[] } = {},
  ): Promise<WritableFileSystem & { close(): Promise<void>; refused(): Promise<string[]>; statNowThere(path: string): Promise<FileInfo | undefined | null> }> {
    const fs = await this.call<number>("open", { root, ...options });
    const orUndefined = <T>(v: T | null) => (v === null ? undefined : v);
    return {
      list: async (path) => orUndefined(await this.call<string[] | null>("list", { fs, path })),
      stat: async (path) => orUndefined(await this.call<FileInfo | null>("stat", { fs, path })),
      statNowThere: async (path) => {
        const { info, later } = await this.call<{ info: FileInfo | null; later: boolean }>("statNow", { fs, path });
        return later ? null : orUndefined(info);
      },
      read: async (path, offset, length) => {
        const bytes = await this.call<string | null>("read", { fs, path, offset, length });
        return bytes === null ? undefined : decode(bytes);
      },
      stream: async (path, start, end, options: StreamOptions = {}) => {
        const sid = await this.call<number | null>("stream", { fs, path, start, end, expect: options.expect ?? null });
        if (sid === null) return undefined;
        return new ReadableStream<Uint8Array>(
          {
            pull: async (controller) => {
              const r = await this.call<{ done?: boolean; chunk?: string }>("pull", { sid });
              if (r.done) controller.close();
              else controller.enqueue(decode(r.chunk!));
            },
            cancel: () => this.call("cancel", { sid }),
          },
          { highWaterMark: 0 },
        );
      },
      write: async (path, data) => {
        const wid = ++this.nextId;
        const source: Source = { reader: data.getReader() };
        this.sources.set(wid, source);
        try {
          await this.call("write", { fs, path, wid });
        } catch (error) {
          // The source's own error, as the contract expects it rethrown unchanged.
          throw source.failure ? source.failure.error : error;
        } finally {
          this.sources.delete(wid);
        }
      },
      remove: async (path) => void (await this.call("remove", { fs, path })),
      close: async () => void (await this.call("close", { fs })),
      /** Paths the symlink confinement refused, as reported to `onRefused`. */
      refused: () => this.call<string[]>("refused", { fs }),
    };
  }

  /** Open file descriptors of the Deno process (Linux; Deno itself may not read /proc/self). */
  openFds(): number {
    return readdirSync(`/proc/${this.child.pid}/fd`).length;
  }

  /** `denoHasher(algorithm)` over the chunks: lowercase hex, or undefined when unsupported. */
  async hash(algorithm: string, chunks: Uint8Array[]): Promise<string | undefined> {
    return (await this.call<string | null>("hash", { algorithm, chunks: chunks.map(encode) })) ?? undefined;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}
