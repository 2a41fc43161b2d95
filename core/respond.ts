const encoder = new TextEncoder();

/** A JSON response with its Content-Length, as distribution sends one (clients and logs use it). */
export function jsonResponse(value: unknown, headers: Record<string, string> = {}, contentType = "application/json"): Response {
  const body = encoder.encode(JSON.stringify(value));
  return new Response(body, {
    status: 200,
    headers: { ...headers, "Content-Type": contentType, "Content-Length": String(body.byteLength) },
  });
}
