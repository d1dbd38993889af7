import { render, screen } from '@testing-library/preact';
import { afterEach, describe, expect, it } from 'vitest';
import { chains, verifyChain } from '../src/api/audit';
import { merchantClient } from '../src/api/client';
import { ChainBadge } from '../src/components/ChainBadge';
import { mockFetch, ok } from './helpers';

afterEach(() => (chains.value = {}));

describe('audit-chain badge', () => {
  it('says when the chain was not checked yet', () => {
    render(<ChainBadge chain="m1" auditPath="/m/m1/audit" />);
    expect(screen.getByTestId('chain-badge').dataset.state).toBe('unknown');
  });

  it('shows verified records and when they were checked', async () => {
    mockFetch(() => ok({ ok: true, checked: 12, chain_length: 1204, first_bad_audit_id: null, full: false }));
    await verifyChain(merchantClient('m1'), 'm1', false);
    render(<ChainBadge chain="m1" auditPath="/m/m1/audit" />);
    const badge = screen.getByTestId('chain-badge');
    expect(badge.dataset.state).toBe('ok');
    expect(badge.textContent).toMatch(/verified 1,204 records, checked 0 s ago/);
  });

  it('turns red and links to the first bad record', async () => {
    const { calls } = mockFetch(() => ok({ ok: false, checked: 5, chain_length: 9, first_bad_audit_id: '42', reason: 'record hash mismatch', full: true }));
    await verifyChain(merchantClient('m1'), 'm1', true);
    expect(new URL(calls[0].url).searchParams.get('full')).toBe('true');
    render(<ChainBadge chain="m1" auditPath="/m/m1/audit" />);
    const badge = screen.getByTestId('chain-badge');
    expect(badge.dataset.state).toBe('broken');
    expect(badge.textContent).toContain('broken at record #42');
    expect(badge.getAttribute('href')).toBe('/admin/m/m1/audit?verify=full&bad=42');
  });

  it('keeps a break found by a full check when a later incremental check passes', async () => {
    mockFetch(
      () => ok({ ok: false, checked: 5, first_bad_audit_id: '42', full: true }),
      () => ok({ ok: true, checked: 0, full: false }),
    );
    await verifyChain(merchantClient('m1'), 'm1', true);
    await verifyChain(merchantClient('m1'), 'm1', false);
    render(<ChainBadge chain="m1" auditPath="/m/m1/audit" />);
    expect(screen.getByTestId('chain-badge').dataset.state).toBe('broken');
  });

  it('reports a failed verification', async () => {
    mockFetch(() => ({ status: 403, body: { code: 40301, message: 'permission denied', data: null } }));
    await verifyChain(merchantClient('m1'), 'm1', false).catch(() => undefined);
    render(<ChainBadge chain="m1" auditPath="/m/m1/audit" />);
    expect(screen.getByTestId('chain-badge').textContent).toContain('could not verify (permission denied)');
  });
});
