/** Test utilities: a fetch mock that answers envelopes and records requests. */
import { vi } from 'vitest';

export interface Recorded {
  method: string;
  url: string;
  headers: Headers;
  body: unknown;
}

export type Responder = (request: Recorded) => { status: number; body: unknown } | Promise<{ status: number; body: unknown }>;

export function ok<T>(data: T, status = 200) {
  return { status, body: { code: 0, message: 'OK', data } };
}
export function fail(code: number, message: string, status: number) {
  return { status, body: { code, message, data: null } };
}

/** Stubs global fetch with `responders` answered in order (the last one repeats). */
export function mockFetch(...responders: Responder[]) {
  const calls: Recorded[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(String(input), init);
    const text = request.body ? await request.clone().text() : '';
    const recorded: Recorded = {
      method: request.method,
      url: request.url,
      headers: request.headers,
      body: text ? JSON.parse(text) : undefined,
    };
    calls.push(recorded);
    const responder = responders[Math.min(calls.length - 1, responders.length - 1)];
    const answer = await responder(recorded);
    return new Response(JSON.stringify(answer.body), { status: answer.status, headers: { 'content-type': 'application/json' } });
  });
  vi.stubGlobal('fetch', fetchMock);
  return { calls, fetchMock };
}

export const sampleEntry = {
  entry_id: '101',
  uid: 'alice',
  kind: 'spend',
  delta: -30,
  balance_after: 70,
  idempotency_key: 'k',
  metadata: {},
};
