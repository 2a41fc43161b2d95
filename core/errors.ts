/**
 * One catalogue of error codes, as distribution's errcode/register.go: each code with its HTTP
 * status and message. Call sites throw `OciError`; `errorResponse` writes the envelope
 * `{"errors":[{"code","message","detail"}]}`.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
 */
import { type Answer, toResponse } from "./answer.ts";

export const errorCodes = {
  BLOB_UNKNOWN: { status: 404, message: "blob unknown to registry" },
  BLOB_UPLOAD_INVALID: { status: 404, message: "blob upload invalid" },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: "blob upload unknown to registry" },
  DIGEST_INVALID: { status: 400, message: "provided digest did not match uploaded content" },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: "manifest references a manifest or blob unknown to registry" },
  MANIFEST_INVALID: { status: 400, message: "manifest invalid" },
  MANIFEST_UNKNOWN: { status: 404, message: "manifest unknown to registry" },
  NAME_INVALID: { status: 400, message: "invalid repository name" },
  NAME_UNKNOWN: { status: 404, message: "repository name not known to registry" },
  SIZE_INVALID: { status: 400, message: "provided length did not match content length" },
  UNAUTHORIZED: { status: 401, message: "authentication required" },
  DENIED: { status: 403, message: "requested access to the resource is denied" },
  UNSUPPORTED: { status: 405, message: "the operation is unsupported" },
  TOOMANYREQUESTS: { status: 429, message: "too many requests" },
  PAGINATION_NUMBER_INVALID: { status: 400, message: "invalid number of results requested" },
  RANGE_INVALID: { status: 416, message: "requested range not satisfiable" },
  NOT_FOUND: { status: 404, message: "not found" },
  UNKNOWN: { status: 500, message: "unknown error" },
  UNAVAILABLE: { status: 503, message: "service unavailable" },
} as const;

export type ErrorCode = keyof typeof errorCodes;

export class OciError extends Error {
  readonly code: ErrorCode;
  readonly detail: unknown;
  readonly headers: Record<string, string>;
  constructor(code: ErrorCode, detail?: unknown, headers: Record<string, string> = {}) {
    // An answer, not a bug: no stack trace (capturing one is most of what a 404 costs more
    // than a hit). Errors that are bugs are not OciErrors and keep theirs.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`${code}: ${errorCodes[code].message}`);
    Error.stackTraceLimit = limit;
    this.name = "OciError";
    this.code = code;
    this.detail = detail ?? null;
    this.headers = headers;
  }
  get status(): number {
    return errorCodes[this.code].status;
  }
}

export function errorBody(code: ErrorCode, detail: unknown = null, message: string = errorCodes[code].message): string {
  return JSON.stringify({ errors: [{ code, message, detail }] });
}

const encoder = new TextEncoder();
/** Bytes of a string in UTF-8 (ASCII, the usual case, without encoding it). */
const utf8Length = (s: string) => (/^[\x00-\x7f]*$/.test(s) ? s.length : encoder.encode(s).byteLength);

/** The spec envelope for an error. `HEAD` gets the same status and headers, and no body. */
export function errorResponse(err: OciError, method = "GET"): Response {
  return toResponse(errorAnswer(err, method));
}

/** `errorResponse` as plain data (see answer.ts). */
export function errorAnswer(err: OciError, method = "GET"): Answer {
  const body = errorBody(err.code, err.detail);
  const headers: Record<string, string> = { ...err.headers, "Content-Type": "application/json; charset=utf-8", "Content-Length": String(utf8Length(body)) };
  return { status: err.status, headers, body: method === "HEAD" ? null : body };
}

/** Archive-level problem: the file is broken. Affects only the images in that file. */
export class ArchiveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ArchiveError";
  }
}
