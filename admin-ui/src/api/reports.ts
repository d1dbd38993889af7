/** The liability report (SPEC §13), typed from the OpenAPI snapshot. */
import { type ApiClient, type Schemas, unwrap } from './client';

export type LiabilityReport = Schemas['LiabilityReport'];
export type LiabilityQuery = { from?: string; to?: string; bucket?: Schemas['Bucket']; tz?: string };

export function fetchLiability(client: ApiClient, query: LiabilityQuery): Promise<LiabilityReport> {
  return unwrap(client.GET('/api/v1/reports/liability', { params: { query } }));
}
