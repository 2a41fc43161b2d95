// Medians, the results table and the targets of issue 4.

/** The value a metric reports over its trials: the median, or the maximum for peaks. */
export function aggregate(metric, values) {
  if (metric.aggregate !== "max") return median(values);
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x));
  return v.length ? Math.max(...v) : null;
}

export function median(values) {
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Every measurement the bench records; `servers` says which columns it has. */
export const METRICS = [
  { key: "blob_1_client_mbps", label: "blob GET, 1 client (MB/s)", better: "higher", servers: "all" },
  { key: "blob_8_clients_mbps", label: "blob GET, 8 clients (MB/s)", better: "higher", servers: "all" },
  { key: "manifest_get_rps", label: "manifest GET by tag (req/s)", better: "higher", servers: "all" },
  { key: "manifest_get_p50_ms", label: "manifest GET p50 (ms)", better: "lower", servers: "all" },
  { key: "manifest_get_p99_ms", label: "manifest GET p99 (ms)", better: "lower", servers: "all" },
  { key: "manifest_head_rps", label: "manifest HEAD by tag (req/s)", better: "higher", servers: "all" },
  { key: "manifest_head_p50_ms", label: "manifest HEAD p50 (ms)", better: "lower", servers: "all" },
  { key: "manifest_head_p99_ms", label: "manifest HEAD p99 (ms)", better: "lower", servers: "all" },
  { key: "small_blob_rps", label: "small blob GET (req/s)", better: "higher", servers: "all" },
  { key: "small_blob_p50_ms", label: "small blob GET p50 (ms)", better: "lower", servers: "all" },
  { key: "small_blob_p99_ms", label: "small blob GET p99 (ms)", better: "lower", servers: "all" },
  { key: "cpu_us_per_manifest", label: "server CPU per manifest GET (µs)", better: "lower", servers: "all" },
  { key: "cpu_s_per_gib", label: "server CPU per GiB served (s)", better: "lower", servers: "all" },
  { key: "cold_start_manifest_ms", label: "cold start to 1st manifest, 1 GiB archive (ms)", better: "lower", servers: "all" },
  { key: "cold_start_empty_ms", label: "cold start to /v2/, empty folder (ms)", better: "lower", servers: "registry" },
  { key: "cold_start_read_bytes", label: "bytes read for the 1st manifest (rchar)", better: "lower", servers: "registry" },
  { key: "peak_rss_mib", label: "peak RSS, 8 clients on the blob (MiB, max)", better: "lower", servers: "all", aggregate: "max" },
  { key: "lookup_few_p50_us", label: "lookup p50, 10 archives (µs)", better: "lower", servers: "registry" },
  { key: "lookup_many_p50_us", label: "lookup p50, 10,000 archives (µs)", better: "lower", servers: "registry" },
  { key: "notfound_tag_p50_us", label: "404 unknown tag p50, 10,000 archives (µs)", better: "lower", servers: "registry" },
  { key: "notfound_name_p50_us", label: "404 unknown name p50, 10,000 archives (µs)", better: "lower", servers: "registry" },
  { key: "first_pull_plain_ms", label: "first pull, plain archive (ms)", better: "lower", servers: "registry" },
  { key: "first_pull_gzip_ms", label: "first pull, gzip archive (ms)", better: "lower", servers: "registry" },
];

export const REFERENCE_SERVERS = ["nginx", "distribution"];

const MIB = 2 ** 20;

/** The targets of issue 4 for one runtime's medians (`m[key][server]`). */
export function evaluateTargets(m, runtime) {
  const v = (key, server = runtime) => m[key]?.[server] ?? null;
  const ratio = (a, b) => (a === null || b === null || b === 0 ? null : a / b);
  const t = [];
  const add = (id, text, value, limit, cmp, detail) => t.push({ runtime, id, text, value, limit, met: value === null ? null : cmp === ">=" ? value >= limit : value <= limit, detail });
  add("blob_1", "blob 1 client ≥ 0.9× nginx", ratio(v("blob_1_client_mbps"), v("blob_1_client_mbps", "nginx")), 0.9, ">=");
  add("blob_8", "blob 8 clients ≥ 0.9× nginx", ratio(v("blob_8_clients_mbps"), v("blob_8_clients_mbps", "nginx")), 0.9, ">=");
  add("manifest_get", "manifest GET ≥ 0.5× nginx req/s", ratio(v("manifest_get_rps"), v("manifest_get_rps", "nginx")), 0.5, ">=");
  add("manifest_head", "manifest HEAD ≥ 0.5× nginx req/s", ratio(v("manifest_head_rps"), v("manifest_head_rps", "nginx")), 0.5, ">=");
  add("manifest_vs_distribution", "manifest GET ≥ 15× distribution req/s", ratio(v("manifest_get_rps"), v("manifest_get_rps", "distribution")), 15, ">=");
  add("manifest_get_p99", "manifest GET p99 ≤ 3× nginx", ratio(v("manifest_get_p99_ms"), v("manifest_get_p99_ms", "nginx")), 3, "<=");
  add("manifest_head_p99", "manifest HEAD p99 ≤ 3× nginx", ratio(v("manifest_head_p99_ms"), v("manifest_head_p99_ms", "nginx")), 3, "<=");
  const read = v("cold_start_read_bytes");
  add("cold_read", "cold start reads ≤ 64 KiB (KiB)", read === null ? null : read / 1024, 64, "<=");
  add("cold_time", "cold start ≤ 1.5× /v2/ on an empty folder", ratio(v("cold_start_manifest_ms"), v("cold_start_empty_ms")), 1.5, "<=");
  add("rss", "peak RSS ≤ 100 MiB (MiB)", v("peak_rss_mib"), 100, "<=");
  add("lookup", "lookup p50: 10,000 archives ≤ 1.2× 10 archives", ratio(v("lookup_many_p50_us"), v("lookup_few_p50_us")), 1.2, "<=");
  add("notfound_tag", "404 (unknown tag) p50 ≤ hit p50", ratio(v("notfound_tag_p50_us"), v("lookup_many_p50_us")), 1, "<=");
  add("notfound_name", "404 (unknown name) p50 ≤ hit p50", ratio(v("notfound_name_p50_us"), v("lookup_many_p50_us")), 1, "<=");
  return t;
}

function fmt(x) {
  if (x === null || x === undefined) return "–";
  if (typeof x === "string") return x;
  const a = Math.abs(x);
  if (a >= 100_000) return x.toExponential(2);
  if (a >= 1000) return Math.round(x).toString();
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join("  ");
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

/** The table of medians with ratios against nginx and distribution, and the targets. */
/** One row per measurement: its label, each server's median, then each registry's ratios to nginx and distribution. */
function metricRows(results) {
  const runtimes = results.registries ?? [];
  return METRICS.map((metric) => {
    const med = results.metrics[metric.key]?.median ?? {};
    const row = [metric.label, ...results.servers.map((s) => fmt(med[s] ?? null))];
    for (const r of runtimes) {
      for (const ref of REFERENCE_SERVERS) {
        const a = med[r];
        const b = med[ref];
        row.push(a == null || b == null || b === 0 ? "" : `${fmt(a / b)}×`);
      }
    }
    return row;
  });
}

export function renderReport(results) {
  const servers = results.servers;
  const runtimes = results.registries ?? [];
  const header = ["measurement (median)", ...servers];
  for (const r of runtimes) header.push(`${r}/nginx`, `${r}/distr.`);
  const rows = [header, ...metricRows(results)];
  const out = [];
  const load = results.loadAverageAtStart?.[0];
  if (load > 0.5) out.push(`note: 1-minute load average was ${load.toFixed(2)} at the start: other processes shared the CPUs, so absolute numbers are low; trials alternate, so ratios hold better.`, "");
  out.push(table(rows));
  const m = Object.fromEntries(Object.entries(results.metrics).map(([k, x]) => [k, x.median]));
  const extra = [];
  for (const r of runtimes) {
    const few = m.lookup_few_p50_us?.[r];
    const many = m.lookup_many_p50_us?.[r];
    const plain = m.first_pull_plain_ms?.[r];
    const gz = m.first_pull_gzip_ms?.[r];
    if (few && many) extra.push(`${r}: lookup p50 10,000 / 10 archives = ${fmt(many / few)}×`);
    if (plain && gz) extra.push(`${r}: first pull gzip / plain = ${fmt(gz / plain)}×`);
  }
  if (extra.length) out.push("", ...extra);
  out.push("", "Targets (issue 4):");
  for (const t of results.targets) {
    const mark = t.met === null ? "n/a " : t.met ? "MET " : "MISS";
    out.push(`  [${mark}] ${t.runtime}: ${t.text}: ${t.value === null ? "not measured" : fmt(t.value)}${t.detail ? ` (${t.detail})` : ""}`);
  }
  if (results.skipped && Object.keys(results.skipped).length) {
    out.push("", ...Object.entries(results.skipped).map(([s, why]) => `${s}: not run (${why})`));
  }
  return out.join("\n");
}

export { MIB };

/** The same table as Markdown (for BENCHMARKS.md), with the targets as a list. */
export function renderMarkdown(results) {
  const servers = results.servers;
  const runtimes = results.registries ?? [];
  const header = ["measurement (median of trials)", ...servers];
  for (const r of runtimes) header.push(`${r} / nginx`, `${r} / distribution`);
  const lines = [`| ${header.join(" | ")} |`, `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`];
  for (const row of metricRows(results)) lines.push(`| ${row.join(" | ")} |`);
  lines.push("");
  for (const t of results.targets) {
    const mark = t.met === null ? "n/a" : t.met ? "**met**" : "**not met**";
    lines.push(`- ${t.runtime}: ${t.text}: ${t.value === null ? "not measured" : fmt(t.value)} (${mark})`);
  }
  return lines.join("\n");
}
