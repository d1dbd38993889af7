/** A tiny REST client for seeding and checking through the real API (envelopes unwrapped, errors thrown). */

export async function api<T = unknown>(
  baseUrl: string,
  key: string,
  method: string,
  path: string,
  body?: unknown,
  merchantId?: string,
): Promise<T> {
  const headers: Record<string, string> = { 'x-api-key': key };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (merchantId) headers['x-merchant-id'] = merchantId;
  const response = await fetch(`${baseUrl}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const envelope = (await response.json()) as { code: number; message: string; data: T };
  if (envelope.code !== 0) throw new Error(`${method} ${path} → ${response.status} ${envelope.code} ${envelope.message}`);
  return envelope.data;
}

let counter = 0;
export function idem(label: string): string {
  counter += 1;
  return `e2e-${label}-${Date.now()}-${counter}`;
}
