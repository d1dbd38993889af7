/**
 * The one API client module. It owns:
 * - the two client factories: `platformClient()` never sends `x-merchant-id`; `merchantClient(id)` always does;
 * - unwrapping the `{code, message, data}` envelope into data or an `ApiError`;
 * - error display (the aria-live region) and "key rejected (40101) → back to sign in".
 */
import createClient, { type Client, type Middleware } from 'openapi-fetch';
import type { components, paths } from './schema';
import { apiKey, lockSession, pushError } from '../state';

export type Schemas = components['schemas'];
export type Merchant = Schemas['Merchant'];
export type ApiKey = Schemas['ApiKey'];
export type Entry = Schemas['Entry'];
export type RuleVersion = Schemas['RuleVersion'];
export type AuditRecord = Schemas['AuditRecord'];
export type Calculation = Schemas['Calculation'];
export type MutationResult = Schemas['MutationResult'];
export type Hold = Schemas['Hold'];
export type HoldResult = Schemas['HoldResult'];
export type Scope = Schemas['Scope'];
export type ApiClient = Client<paths>;

/** SPEC §8 codes the app treats specially. */
export const CODE = {
  INVALID_ARGUMENT: 40001,
  UNAUTHENTICATED: 40101,
  PERMISSION_DENIED: 40301,
  NOT_FOUND: 40401,
  ALREADY_EXISTS: 40901,
  IDEMPOTENCY_CONFLICT: 40902,
  INSUFFICIENT_POINTS: 42201,
  NO_APPLICABLE_RULE: 42202,
  HOLD_NOT_ACTIVE: 42203,
  RATE_LIMITED: 42901,
  UNAVAILABLE: 50301,
} as const;

/** An error answered by the API (with its SPEC code) or a transport failure (code 0). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** A human explanation of an error, with the extra context some codes need. */
export function describeError(error: unknown): { code: number; message: string; hint?: string } {
  if (!(error instanceof ApiError)) {
    return { code: 0, message: error instanceof Error ? error.message : String(error) };
  }
  switch (error.code) {
    case CODE.INSUFFICIENT_POINTS:
      // The server's message carries the balance (e.g. "insufficient points: balance 40, requested 100").
      return { code: error.code, message: error.message, hint: 'Not enough available points (the balance less the points held): the figures are in the message above.' };
    case CODE.IDEMPOTENCY_CONFLICT:
      return {
        code: error.code,
        message: error.message,
        hint:
          'This idempotency key was already used for a different request. Nothing changed. ' +
          'Start a new operation (new idempotency key) to apply the changed request.',
      };
    case CODE.HOLD_NOT_ACTIVE:
      return { code: error.code, message: error.message, hint: 'The hold is no longer active (captured, voided or expired); reload to see it.' };
    case CODE.UNAUTHENTICATED:
      return { code: error.code, message: error.message, hint: 'The API key was rejected; sign in again.' };
    case CODE.RATE_LIMITED:
      return { code: error.code, message: error.message, hint: 'Too many requests; wait a moment and retry.' };
    default:
      return { code: error.code, message: error.message };
  }
}

const authMiddleware: Middleware = {
  onRequest({ request }) {
    const key = apiKey.value;
    if (key) request.headers.set('x-api-key', key);
    return request;
  },
};

function onBaseUrl(): string {
  return typeof window !== 'undefined' && window.location ? window.location.origin : 'http://localhost';
}

/** The platform client: an admin key acting as itself; it never sends `x-merchant-id`. */
export function platformClient(): ApiClient {
  const client = createClient<paths>({ baseUrl: onBaseUrl() });
  client.use(authMiddleware, {
    onRequest({ request }) {
      request.headers.delete('x-merchant-id');
      return request;
    },
  });
  return client;
}

/** A client acting for one merchant: every request carries `x-merchant-id`. */
export function merchantClient(merchantId: string): ApiClient {
  const client = createClient<paths>({ baseUrl: onBaseUrl() });
  client.use(authMiddleware, {
    onRequest({ request }) {
      request.headers.set('x-merchant-id', merchantId);
      return request;
    },
  });
  return client;
}

type Envelope<T> = { code: number; message: string; data: T };
type FetchResult<T> = { data?: Envelope<T>; error?: unknown; response: Response };

/**
 * Unwraps an openapi-fetch result: the envelope's `data` on code 0, else throws `ApiError` with the envelope's code.
 * Network failures become code 0 with a readable message.
 */
export async function unwrap<T>(pending: Promise<FetchResult<T>>): Promise<T> {
  let result: FetchResult<T>;
  try {
    result = await pending;
  } catch (cause) {
    throw new ApiError(0, `network error: ${cause instanceof Error ? cause.message : String(cause)}`, 0);
  }
  const { data, error, response } = result;
  if (data && typeof data === 'object' && data.code === 0) return data.data;
  const envelope = (error ?? data) as Partial<Envelope<unknown>> | undefined;
  if (envelope && typeof envelope === 'object' && typeof envelope.code === 'number') {
    throw new ApiError(envelope.code, String(envelope.message ?? 'error'), response.status);
  }
  throw new ApiError(0, `unexpected response: HTTP ${response.status}`, response.status);
}

/**
 * Shows an error in the app's aria-live region; a rejected key (40101) locks the session and returns to sign in.
 * Returns the description so forms can also show it inline.
 */
export function reportError(error: unknown): ReturnType<typeof describeError> {
  const described = describeError(error);
  if (described.code === CODE.UNAUTHENTICATED) {
    lockSession('The API key was rejected (40101). Sign in again.');
  } else {
    pushError(described);
  }
  return described;
}

/** Runs a call and reports its error; returns undefined on failure. */
export async function attempt<T>(run: () => Promise<T>): Promise<T | undefined> {
  try {
    return await run();
  } catch (error) {
    reportError(error);
    return undefined;
  }
}
