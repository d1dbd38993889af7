/** Audit-chain verification and the chain status shown by the badge. */
import { signal } from '@preact/signals';
import { type ApiClient, unwrap } from './client';

export interface ChainStatus {
  state: 'checking' | 'ok' | 'broken' | 'error';
  checked?: number;
  chainLength?: number;
  firstBadAuditId?: string | null;
  reason?: string | null;
  full?: boolean;
  verifiedAt: number;
  message?: string;
}

/** Chain status per chain: `platform` or a merchant id. */
export const chains = signal<Record<string, ChainStatus>>({});

function setChain(chain: string, status: ChainStatus): void {
  chains.value = { ...chains.value, [chain]: status };
}

/** Verifies a chain (incremental by default, `full` re-checks it all) and records the result for the badge. */
export async function verifyChain(client: ApiClient, chain: string, full: boolean): Promise<ChainStatus> {
  const previous = chains.value[chain];
  setChain(chain, { ...(previous ?? { verifiedAt: Date.now() }), state: 'checking' });
  try {
    const result = await unwrap(client.GET('/api/v1/audit-logs/verify', { params: { query: { full } } }));
    // An incremental check that passes does not clear a break found by a full check of the same chain.
    const stillBroken = !full && result.ok && previous?.state === 'broken';
    const status: ChainStatus = stillBroken
      ? { ...previous, verifiedAt: previous.verifiedAt }
      : {
          state: result.ok ? 'ok' : 'broken',
          checked: result.checked,
          chainLength: result.chain_length,
          firstBadAuditId: result.first_bad_audit_id ?? null,
          reason: result.reason ?? null,
          full,
          verifiedAt: Date.now(),
        };
    setChain(chain, status);
    return status;
  } catch (error) {
    const status: ChainStatus = { state: 'error', verifiedAt: Date.now(), message: error instanceof Error ? error.message : String(error) };
    setChain(chain, status);
    throw error;
  }
}
