import { type Context, requireName, type RouteRequest } from "./context.ts";
import { OciError } from "./errors.ts";
import { jsonResponse } from "./respond.ts";

/**
 * GET /v2/<name>/tags/list?n=&last=: sorted tags of every candidate file of the name.
 * https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-tags
 */
export async function listTags(request: RouteRequest, ctx: Context): Promise<Response> {
  const name = requireName(request.params.name);
  const all = await ctx.lookup.tags(name);
  if (all === undefined) throw new OciError("NAME_UNKNOWN", { name });
  const url = new URL(request.url);
  const { items, link } = paginate(all, url, `/v2/${name}/tags/list`);
  return jsonResponse({ name, tags: items }, link ? { Link: link } : {});
}

/** `n` and `last` pagination with a `Link: <...>; rel="next"` when more remain. */
export function paginate(all: string[], url: URL, path: string): { items: string[]; link?: string } {
  const last = url.searchParams.get("last");
  const nParam = url.searchParams.get("n");
  let items = last !== null ? all.filter((t) => t > last) : all;
  if (nParam === null || nParam === "") return { items };
  const n = Number(nParam);
  if (!Number.isSafeInteger(n) || n < 0) throw new OciError("PAGINATION_NUMBER_INVALID", { n: nParam });
  if (items.length <= n) return { items: items.slice(0, n) };
  items = items.slice(0, n);
  if (n === 0) return { items };
  const next = new URLSearchParams({ n: String(n), last: items[items.length - 1] });
  return { items, link: `<${path}?${next}>; rel="next"` };
}
