/**
 * Writes a Web `Response` to a node:http `ServerResponse`, with the three guarantees a blob
 * download needs (and that @whatwg-node/server 0.11's own writer does not give):
 *
 * - a body stream that errors (an archive truncated or rewritten under a download, a layer whose
 *   bytes do not match its digest) destroys the socket, so the client sees a broken transfer
 *   and never a complete response with wrong bytes (whatwg-node leaves it hanging open);
 * - a client that goes away cancels the body stream, so its file handle is closed at once;
 * - backpressure: one chunk is read from the body only after the socket took the previous one,
 *   so a slow client never makes the server hold its blob in memory.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { Answer } from "../../core/answer.ts";
import type { Logger } from "../../core/log.ts";
import { releaseChunk } from "../shared/chunks.ts";

/**
 * The body as the handler gave it, when the Response keeps it (the CLI answers with
 * @whatwg-node's Response, see cli.ts): bytes are written as they are, a stream is read
 * without the Node-stream round trip that class's `body` getter adds. Otherwise `body`.
 */
function bodySource(response: Response): string | Uint8Array | ReadableStream<Uint8Array> | null {
  const init = (response as { bodyInit?: unknown }).bodyInit;
  if (typeof init === "string" || init instanceof Uint8Array || init instanceof ReadableStream) return init;
  return response.body;
}

/** Writes an answer given as plain data (registry.ts `quick`): status line, headers and body in one write. */
export function sendAnswer(res: ServerResponse, answer: Answer): void {
  if (res.destroyed || res.writableEnded) return;
  res.writeHead(answer.status, STATUS_CODES[answer.status], answer.headers);
  res.end(answer.body ?? undefined);
}

export async function sendResponse(req: IncomingMessage, res: ServerResponse, response: Response, logger: Logger): Promise<void> {
  if (res.destroyed || res.writableEnded) {
    await response.body?.cancel().catch(() => {});
    return;
  }
  // setHeader, not writeHead's object: the access log reads Content-Length back with getHeader.
  response.headers.forEach((value, key) => res.setHeader(key, value));
  res.writeHead(response.status, response.statusText || undefined);
  const source = bodySource(response);
  // Bytes or text (manifests, errors, JSON lists): one write with the headers.
  if (typeof source === "string" || source instanceof Uint8Array) {
    res.end(req.method === "HEAD" ? undefined : source);
    return;
  }
  const body = source;
  if (!body || req.method === "HEAD") {
    await body?.cancel().catch(() => {});
    res.end();
    return;
  }
  const reader = body.getReader();
  let closed = false;
  let wake: (() => void) | undefined;
  const onClose = () => {
    closed = true;
    wake?.();
    // The client went away (or the socket failed): release the file now, not at the next read.
    reader.cancel().catch(() => {});
  };
  res.once("close", onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (closed) return;
      if (done) break;
      // Once the socket has taken the chunk, its buffer may serve the next read (chunks.ts).
      if (!res.write(value, () => releaseChunk(value))) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          res.once("drain", resolve);
        });
        res.off("drain", wake!);
        wake = undefined;
        if (closed) return;
      }
    }
    res.off("close", onClose);
    res.end();
  } catch (err) {
    // Headers (and a Content-Length) are out: the only honest answer left is a broken transfer.
    logger.warn("response aborted", { path: req.url, error: (err as Error)?.message ?? String(err) });
    res.off("close", onClose);
    // A reset rather than a clean close, so that no client can take the short body as complete.
    const socket = res.socket as (NonNullable<ServerResponse["socket"]> & { resetAndDestroy?: () => void }) | null;
    if (socket?.resetAndDestroy) socket.resetAndDestroy();
    else res.destroy();
  }
}
