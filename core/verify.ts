/**
 * Layer digests, checked while a blob is served. A plain tar's layers are served in place and
 * never read at indexing time, so the first time a blob is streamed in full its digest is
 * computed on the way out. The last chunk is held back until the digest is known: on a
 * mismatch the stream errors instead, so the client sees a broken transfer (the adapter resets
 * the connection), never a complete response with wrong bytes. The blob is then marked bad for
 * that archive version and later requests get an error; a changed archive is a new version
 * (a new `Archive` object) and starts clean. A verified blob is not hashed again; ranges are
 * never hashed.
 *
 * Every stream (hashed or not) also stats the file once before its last chunk: the same file
 * (identity) with another size or mtime was written in place during the download, and the
 * response is aborted rather than completed with bytes that may be half old, half new.
 */
import type { FileSystem } from "./fs.ts";
import type { HasherFactory } from "./hash.ts";
import type { BlobLocation } from "./layout.ts";
import type { Logger } from "./log.ts";

/** Per archive version: digest -> "ok", or why it is bad. Weak, so it goes with the index. */
export class BlobVerifier {
  private readonly states = new WeakMap<object, Map<string, true | string>>();
  /** Blobs hashed in full (for tests and metrics). */
  hashed = 0;

  constructor(
    private readonly createHasher: HasherFactory,
    private readonly logger: Logger,
  ) {}

  private stateOf(archive: object): Map<string, true | string> {
    let m = this.states.get(archive);
    if (!m) this.states.set(archive, (m = new Map()));
    return m;
  }

  /** Why this blob of this archive version is known bad, or `undefined`. */
  badReason(archive: object, digest: string): string | undefined {
    const s = this.states.get(archive)?.get(digest);
    return typeof s === "string" ? s : undefined;
  }

  isVerified(archive: object, digest: string): boolean {
    return this.states.get(archive)?.get(digest) === true;
  }

  /**
   * Wraps a blob's byte stream. `full`: the stream is the whole blob (hash it unless already
   * verified). `file` names the archive in log lines. `onEnd` runs once when the stream ends,
   * errors or is cancelled.
   */
  guard(
    source: ReadableStream<Uint8Array>,
    options: { archive: object; file: string; digest: string; location: BlobLocation; start: number; end: number; full: boolean; onEnd?: () => void },
  ): ReadableStream<Uint8Array> {
    const { archive, file, digest, location, full } = options;
    const algorithm = digest.slice(0, digest.indexOf(":"));
    const hasher = full && !this.isVerified(archive, digest) ? this.createHasher(algorithm) : undefined;
    const length = options.end - options.start;
    const reader = source.getReader();
    let sent = 0;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      options.onEnd?.();
    };
    const fail = (controller: ReadableStreamDefaultController<Uint8Array>, error: Error) => {
      end();
      reader.cancel(error).catch(() => {});
      controller.error(error);
    };
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          if (length === 0) {
            if (hasher) this.settle(archive, file, digest, `${algorithm}:${hasher.digest()}`);
            end();
            reader.cancel().catch(() => {});
            controller.close();
          }
        },
        pull: async (controller) => {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (err) {
            end();
            controller.error(err);
            return;
          }
          if (chunk.done) return fail(controller, new Error(`${file}: blob ${digest} ended after ${sent} of ${length} bytes`));
          const bytes = chunk.value;
          if (sent + bytes.byteLength > length) return fail(controller, new Error(`${file}: blob ${digest} is longer than ${length} bytes`));
          hasher?.update(bytes);
          if (sent + bytes.byteLength < length) {
            sent += bytes.byteLength;
            controller.enqueue(bytes);
            return;
          }
          // The last chunk: held back until the bytes are known to be right.
          if (hasher) {
            const actual = `${algorithm}:${hasher.digest()}`;
            if (!this.settle(archive, file, digest, actual)) {
              return fail(controller, new Error(`${file}: blob ${digest} does not match its content (${actual}); download aborted`));
            }
          }
          const changed = await changedInPlace(location).catch((err: Error) => `cannot stat: ${err.message}`);
          if (changed) {
            this.logger.warn("download aborted", { file, digest, problem: changed });
            return fail(controller, new Error(`${file}: ${changed} during the download; aborted`));
          }
          sent += bytes.byteLength;
          controller.enqueue(bytes);
          end();
          controller.close();
        },
        cancel: (reason) => {
          end();
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
  }

  /** Records the outcome of a full hash; answers whether it matched. */
  private settle(archive: object, file: string, digest: string, actual: string): boolean {
    this.hashed++;
    const state = this.stateOf(archive);
    if (actual === digest) {
      state.set(digest, true);
      return true;
    }
    state.set(digest, `bytes in ${file} do not match digest ${digest} (they hash to ${actual})`);
    this.logger.error("blob digest mismatch", { file, digest, actual, problem: "layer bytes do not match their digest; served as unknown until the archive changes" });
    return false;
  }
}

/** The same file as at indexing (identity), but another size or mtime: written in place. */
async function changedInPlace(location: BlobLocation): Promise<string | undefined> {
  const expect = location.expect;
  if (!expect) return undefined;
  const now = await (location.fs as FileSystem).stat(location.path);
  // Gone or replaced by rename: the open handle still reads the old file, whose bytes are intact.
  if (!now || now.id !== expect.id) return undefined;
  if (now.size !== expect.size || now.mtimeMs !== expect.mtimeMs) return "archive changed in place";
  return undefined;
}
