/**
 * Runs inside Deno: serves `denoFileSystem` (and `denoHasher`) as JSON lines on stdin/stdout,
 * so that the FileSystem contract suite, which runs in vitest under Node, can drive the real
 * Deno implementation through `test/deno/fs-bridge.ts`. Bytes travel as base64.
 *
 * Node -> Deno: `{id, op, ...args}`; Deno answers `{id, result}` or `{id, error}`.
 * Deno -> Node: `{call, op: "sourcePull", wid}` (the next chunk of a `write` source), answered
 * `{reply, result}` or `{reply, error}`; and `{op: "sourceCancel", wid}`.
 * Requests are handled concurrently: a `write` waits on source pulls answered by Node.
 */
import { Buffer } from "node:buffer";
import type { FileInfo, WritableFileSystem } from "../../../core/fs.ts";
import { denoFileSystem } from "../../../adapters/deno/fs.ts";
import { denoHasher } from "../../../adapters/deno/hash.ts";

type Message = Record<string, unknown> & { id?: number; reply?: number; op?: string };

const encode = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
const decode = (text: string) => new Uint8Array(Buffer.from(text, "base64"));

const out = Deno.stdout.writable.getWriter();
const encoder = new TextEncoder();
const send = (message: unknown) => void out.write(encoder.encode(`${JSON.stringify(message)}\n`));

const systems = new Map<number, WritableFileSystem>();
const refusals = new Map<number, string[]>();
const streams = new Map<number, ReadableStreamDefaultReader<Uint8Array>>();
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
let nextId = 0;

function callNode(op: string, args: Record<string, unknown>): Promise<unknown> {
  const call = ++nextId;
  return new Promise((resolve, reject) => {
    pending.set(call, { resolve, reject });
    send({ call, op, ...args });
  });
}

/** A stream whose chunks are pulled, one by one, from the Node-side source `wid`. */
function sourceFromNode(wid: number): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const r = (await callNode("sourcePull", { wid })) as { done?: boolean; chunk?: string };
        if (r.done) controller.close();
        else controller.enqueue(decode(r.chunk!));
      },
      cancel: () => send({ op: "sourceCancel", wid }),
    },
    { highWaterMark: 0 },
  );
}

const fsOf = (m: Message) => {
  const fs = systems.get(m.fs as number);
  if (!fs) throw new Error(`no file system ${m.fs}`);
  return fs;
};

async function handle(m: Message): Promise<unknown> {
  switch (m.op) {
    case "open": {
      const id = ++nextId;
      const refused: string[] = [];
      refusals.set(id, refused);
      const symlinks = { allowedRoots: m.allowedRoots as string[] | undefined, onRefused: (path: string) => void refused.push(path) };
      systems.set(id, denoFileSystem(m.root as string, { writable: m.writable as boolean, chunkSize: m.chunkSize as number | undefined, symlinks }));
      return id;
    }
    case "refused":
      return refusals.get(m.fs as number) ?? [];
    case "close":
      systems.delete(m.fs as number);
      refusals.delete(m.fs as number);
      return null;
    case "list":
      return (await fsOf(m).list(m.path as string)) ?? null;
    case "stat":
      return (await fsOf(m).stat(m.path as string)) ?? null;
    case "statNow": {
      // Three answers to carry: an info, undefined (not there) and null (ask stat).
      const info = fsOf(m).statNow?.(m.path as string);
      return { info: info ?? null, later: info === null };
    }
    case "read": {
      const bytes = await fsOf(m).read(m.path as string, m.offset as number, m.length as number);
      return bytes ? encode(bytes) : null;
    }
    case "stream": {
      const expect = (m.expect ?? undefined) as FileInfo | undefined;
      const stream = await fsOf(m).stream(m.path as string, m.start as number, m.end as number, expect ? { expect } : {});
      if (!stream) return null;
      const sid = ++nextId;
      streams.set(sid, stream.getReader());
      return sid;
    }
    case "pull": {
      const reader = streams.get(m.sid as number)!;
      try {
        const r = await reader.read();
        if (r.done) streams.delete(m.sid as number);
        return r.done ? { done: true } : { chunk: encode(r.value) };
      } catch (e) {
        streams.delete(m.sid as number);
        throw e;
      }
    }
    case "cancel": {
      const reader = streams.get(m.sid as number);
      streams.delete(m.sid as number);
      await reader?.cancel();
      return null;
    }
    case "write":
      await fsOf(m).write(m.path as string, sourceFromNode(m.wid as number));
      return null;
    case "remove":
      await fsOf(m).remove(m.path as string);
      return null;
    case "hash": {
      const h = denoHasher(m.algorithm as string);
      if (!h) return null;
      for (const chunk of m.chunks as string[]) h.update(decode(chunk));
      return h.digest();
    }
    default:
      throw new Error(`unknown op ${m.op}`);
  }
}

function onMessage(m: Message): void {
  if (m.reply !== undefined) {
    const p = pending.get(m.reply);
    pending.delete(m.reply);
    if (m.error) p?.reject(Object.assign(new Error((m.error as { message: string }).message), { name: "SourceError" }));
    else p?.resolve(m.result);
    return;
  }
  handle(m).then(
    (result) => send({ id: m.id, result }),
    (e: Error) => send({ id: m.id, error: { name: e?.name, message: e?.message ?? String(e), code: (e as { code?: string })?.code } }),
  );
}

let buffered = "";
for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  buffered += text;
  for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    if (line) onMessage(JSON.parse(line));
  }
}
