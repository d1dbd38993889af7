/** Hold states as the admin sees them: an active hold past `expires_at` already counts as expired (SPEC §12). */
import type { Hold } from '../api/client';
import { formatPoints, parsePointsInput } from './points';

export type HoldStatus = 'active' | 'captured' | 'voided' | 'expired';

/** The hold's status now: the server's, except that an active hold whose expiry has passed reads as expired at once. */
export function holdStatus(hold: Pick<Hold, 'status' | 'expires_at'>, now: number): HoldStatus | string {
  if (hold.status === 'active' && hold.expires_at && Date.parse(hold.expires_at) <= now) return 'expired';
  return hold.status;
}

/** The badge class of a status (unknown statuses stay neutral). */
export function holdBadge(status: string): string {
  switch (status) {
    case 'active':
      return 'badge-info';
    case 'captured':
      return 'badge-ok';
    case 'expired':
      return 'badge-warn';
    default:
      return 'badge-neutral';
  }
}

/** A partial capture typed by the admin: a whole number from 1 to the hold's points, else an error message. */
export function captureAmount(text: string, holdPoints: number): { points: number } | { error: string } {
  const value = parsePointsInput(text);
  if (value === null) return { error: 'The points to capture must be a whole number greater than 0.' };
  if (value > holdPoints) return { error: `At most the ${formatPoints(holdPoints)} held points can be captured.` };
  return { points: value };
}
