/** Stops the server started by global setup (by its pid) and drops the e2e database. */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readState, STATE_FILE } from './env';

export default async function globalTeardown(): Promise<void> {
  if (!existsSync(STATE_FILE)) return;
  const state = readState();
  if (state.serverPid) {
    try {
      process.kill(state.serverPid, 'SIGTERM');
    } catch {
      // already gone
    }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        process.kill(state.serverPid, 0);
        await new Promise((r) => setTimeout(r, 100));
      } catch {
        break;
      }
    }
  }
  if (process.env.E2E_KEEP_DATABASE) return;
  const adminUrl = state.databaseUrl.replace(/\/[^/]+$/, '/postgres');
  execFileSync('psql', [adminUrl, '-v', 'ON_ERROR_STOP=1', '-c', `DROP DATABASE IF EXISTS "${state.databaseName}" WITH (FORCE)`], { stdio: 'pipe' });
}
