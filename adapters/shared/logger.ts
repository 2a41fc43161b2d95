/** JSON-lines logger shared by the adapters: one object per line, written by `write`. */
import type { LogFields, Logger } from "../../core/log.ts";
import { LOG_LEVELS, type LogLevel } from "./options.ts";

export function jsonLogger(level: LogLevel, write: (line: string) => void, now: () => Date = () => new Date()): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const emit = (lvl: LogLevel) => (msg: string, fields?: LogFields) => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    write(JSON.stringify({ time: now().toISOString(), level: lvl, msg, ...fields }));
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error"), enabled: (lvl) => LOG_LEVELS.indexOf(lvl) >= min };
}
