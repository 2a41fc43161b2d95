/** Structured logger passed in by the adapter. Fields are merged into one JSON line by the adapter. */
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Whether lines of this level are written (lets a caller skip building fields nobody reads); assume true when absent. */
  enabled?(level: "debug" | "info" | "warn" | "error"): boolean;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
